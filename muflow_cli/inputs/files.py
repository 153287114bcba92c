"""Walking folders: one walker for images and videos, and how paths are shown in tables."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from muflow_cli.choices import GROUP_BY  # re-exported


def walk_files(paths: Iterable[Path], suffixes: Collection[str]) -> Iterator[Path]:
    """Files under ``paths`` (recursively, sorted, links followed once) whose suffix is in ``suffixes``.

    A path named explicitly is yielded whatever its suffix or kind, so the user gets a row for it.
    Directory symlink loops are cut: each directory (device, inode) is entered once per root.
    """
    for root in paths:
        root = Path(root)
        if not root.is_dir():
            yield root
            continue
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:  # a symlink loop
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames.sort()
            for name in sorted(filenames):
                if Path(name).suffix.lower() in suffixes:
                    yield Path(dirpath) / name


def shown_path(path: Path | str) -> str:
    """The path as text for tables: undecodable bytes of non-UTF-8 names become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def group_keys(paths: list[Path | str], by: str = "auto") -> list[str]:
    """One group key per file, for the calibration split and the held-out check: faces of files with the same
    key stay on one side.

    ``file``: each file alone (faces of one photo share its camera and compression). ``folder``: each
    folder (one folder per video, burst or person). ``auto`` starts from ``file`` here; near-duplicates are
    then joined by what the faces show (stats/near_duplicates.py), not by their names: every camera numbers
    its photos, so a numbered sequence of files is as likely independent photos as one burst."""
    if by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}")
    paths = [Path(p) for p in paths]
    if by == "folder":
        return [str(p.parent) for p in paths]
    return [str(p) for p in paths]


def read_file_list(path: Path) -> list[str]:
    """``--files-from``: one path (or URI) a line, for lists too long for a shell; blank lines are skipped.
    Names are kept byte for byte (undecodable bytes as surrogates, as os.fsdecode gives them)."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as fh:
        return [line.rstrip("\r\n") for line in fh if line.strip()]
