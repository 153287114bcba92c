"""When each file was taken, as far as the file says: EXIF capture time, and its place in a numbered sequence.

Grouping near-duplicate faces (stats/near_duplicates.py) and holding out the later part of each sequence
(stats/splits.py) both need an order in time. A name alone never makes two files one group — every camera
numbers its photos (IMG_0001.jpg…), so consecutive numbers say "taken one after the other", not "the
same shot"; what the faces show decides that.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

EXIF_IFD = 0x8769  # the Exif sub-IFD, where cameras put DateTimeOriginal
DATE_TIME_ORIGINAL, DATE_TIME = 36867, 306


@dataclass(frozen=True)
class CapturePlace:
    """Where a file sits in time: its numbered sequence, its rank there, its EXIF time (None: not given)."""

    sequence: str  # folder and name with digit runs replaced (frame_#.png): files of one numbered sequence share it
    rank: int  # position among the files of its sequence, by the numbers in their names
    time: float | None  # EXIF capture time, seconds since the epoch (camera clock, no time zone)


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: frame_9.png before frame_10.png."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower()))


def capture_time(path: Path | str) -> float | None:
    """The EXIF DateTimeOriginal (or DateTime) of an image, None when it has none or cannot be read.

    Pillow reads only the header here (no pixels are decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            exif = im.getexif()
            text = exif.get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL) or exif.get(DATE_TIME)
    except Exception:  # any unreadable or malformed header: no time, never an error
        return None
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text.strip().rstrip("\x00"), "%Y:%m:%d %H:%M:%S").timestamp()
    except ValueError:
        return None


def capture_places(paths: list[Path | str], read_exif: bool = True) -> list[CapturePlace]:
    """A :class:`CapturePlace` per path, in the order given."""
    paths = [Path(p) for p in paths]
    sequences = [f"{p.parent}/{re.sub(r'[0-9]+', '#', p.name.lower())}" for p in paths]
    members: dict[str, list[int]] = defaultdict(list)
    for i, seq in enumerate(sequences):
        members[seq].append(i)
    ranks = [0] * len(paths)
    for idx in members.values():
        for rank, i in enumerate(sorted(idx, key=lambda i: natural_key(paths[i].name))):
            ranks[i] = rank
    times = [capture_time(p) if read_exif else None for p in paths]
    return [CapturePlace(s, r, t) for s, r, t in zip(sequences, ranks, times)]


def capture_order(places: list[CapturePlace], paths: list[Path | str]) -> list[int]:
    """Rank of each file in time: by EXIF time where every file of the set has one, else by folder and
    natural name order (frame numbers, camera counters)."""
    keys = [natural_key(str(p)) for p in paths]
    if places and all(pl.time is not None for pl in places):
        order = sorted(range(len(places)), key=lambda i: (places[i].time, keys[i]))
    else:
        order = sorted(range(len(places)), key=lambda i: keys[i])
    rank = [0] * len(order)
    for r, i in enumerate(order):
        rank[i] = r
    return rank
