"""Walking folders: one walker for images and videos, and how paths are shown in tables."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path


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
