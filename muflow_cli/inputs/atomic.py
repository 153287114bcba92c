"""One atomic write for every file muflow leaves behind: tables, reports, caches, checkpoints.

A crash never leaves a truncated file that looks complete: write to a temporary name beside the
target, then rename it into place. That holds when the process dies; when the machine does (power
cut, kernel panic), the rename may reach the disk before the data unless the data is flushed first:
``fsync=True`` does that, for files a later run trusts and reads back (the fit's checkpoint).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[str], object], fsync: bool = False) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    ``fsync``: flush the file to disk before the rename, and the folder after it (where the system
    allows), so that once this returns the new file survives a machine crash whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the user's usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows cannot open a folder, and needs no such step)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``atomic_write`` for bytes already in memory."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
