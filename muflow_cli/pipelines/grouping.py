"""The groups a calibration split keeps together, for a fit's faces or a calibration's: by file, by folder,
or (``auto``) near-duplicates by what the faces show and when their files were taken."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from muflow_cli.inputs.capture import capture_order, capture_places
from muflow_cli.inputs.files import group_keys
from muflow_cli.stats.near_duplicates import Fingerprints, near_duplicate_groups


def face_groups(face_files: list[Path | str], by: str = "auto", prints: Fingerprints | None = None
                ) -> tuple[np.ndarray, np.ndarray, dict[str, int] | None]:
    """The group index of each face, its file's capture order, and (``auto``) how the groups were linked.

    ``face_files``: the file of each face. ``file`` / ``folder``: the file's or folder's key
    (inputs/files.py group_keys). ``auto``: each file alone, then near-duplicates joined by content
    (``prints``, stats/near_duplicates.py) and time (inputs/capture.py)."""
    if not len(face_files):
        return np.zeros(0, int), np.zeros(0, int), None
    unique = list(dict.fromkeys(face_files))
    index = {f: i for i, f in enumerate(unique)}
    file_of = np.asarray([index[f] for f in face_files])
    places = capture_places(unique, read_exif=True)
    order = np.asarray(capture_order(places, unique))[file_of]
    base = np.unique(np.asarray(group_keys(unique, "file" if by == "auto" else by)), return_inverse=True)[1][file_of]
    if by != "auto":
        return base, order, None
    if prints is None or len(prints) != len(face_files):
        raise ValueError("group_by auto needs the fingerprint of every face")
    sequence = np.unique(np.asarray([p.sequence for p in places]), return_inverse=True)[1][file_of]
    rank = np.asarray([p.rank for p in places])[file_of]
    when = np.asarray([np.nan if p.time is None else p.time for p in places])[file_of]
    groups, links = near_duplicate_groups(prints, base, sequence, rank, when)
    return groups, order, asdict(links)
