"""Resumable scans: a journal of finished work, so a killed scan loses nothing and repeats nothing.

A scan works in *chunks* of consecutive files (in the sorted walk order). When a chunk is done,
its rows are appended to the journal as one JSON line, flushed and fsynced. A line cut short by
a crash does not parse and is ignored, so every line that parses is a whole chunk.

On ``--resume`` a chunk is reused when the journal holds the same chunk index with the same
files, each identified by path, size and modification time (nanoseconds). Path + size + mtime
is what rsync and make trust; hashing every file's content would double the reading on a
seized drive, and the files of a forensic image do not change under a scan. A changed file
makes its chunk be scanned again. Chunk boundaries depend only on the file list, and faces are
scored per chunk, so a resumed scan computes exactly the batches of an uninterrupted one: the
final table is identical, value for value.

The journal's first line records the scan's settings (model hash, fpr, tail, detector, …);
resuming with other settings is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from muflow_cli.errors import UsageError

FORMAT = "muflow-scan-journal/1"


class ResumeError(UsageError):
    """The journal on disk belongs to a scan with other settings."""


def journal_path(output: Path) -> Path:
    """Where the journal of a scan writing ``output`` lives: beside it, hidden."""
    output = Path(output)
    return output.with_name(f".{output.name}.muflow-journal")


def file_identity(path: Path, shown: str) -> list[Any]:
    try:
        st = os.stat(path)
        return [shown, st.st_size, st.st_mtime_ns]
    except OSError:
        return [shown, -1, -1]


class ScanJournal:
    """Append-only record of finished chunks."""

    def __init__(self, path: Path, settings: dict[str, Any], resume: bool) -> None:
        self.path = Path(path)
        self.settings = settings
        self.done: dict[int, tuple[list, Any]] = {}
        if resume and self.path.is_file():
            self._read()
            self._fh = open(self.path, "a", encoding="utf-8")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8")
            self._write({"format": FORMAT, "settings": settings})

    def _read(self) -> None:
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().split("\n")
        try:
            header = json.loads(lines[0])
        except (ValueError, IndexError):
            header = {}
        if header.get("format") != FORMAT:
            raise ResumeError(f"{self.path} is not a muflow scan journal; delete it or scan without --resume")
        if header.get("settings") != self.settings:
            changed = sorted(k for k in set(header.get("settings", {})) | set(self.settings)
                             if header.get("settings", {}).get(k) != self.settings.get(k))
            raise ResumeError(
                f"{self.path} was written by a scan with other settings ({', '.join(changed)}); "
                "rerun with the same arguments, or without --resume to start over"
            )
        for line in lines[1:]:
            try:
                entry = json.loads(line)
                self.done[int(entry["chunk"])] = (entry["files"], (entry["rows"], entry.get("extras")))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: that chunk is scanned again

    def _write(self, obj: dict) -> None:
        self._fh.write(json.dumps(obj, ensure_ascii=True, allow_nan=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    @property
    def files_done(self) -> int:
        """Files whose rows the journal holds (from this run and earlier ones)."""
        return sum(len(files) for files, _ in self.done.values())

    def lookup(self, index: int, files: list) -> tuple[Any, Any] | None:
        """(rows, extras) of a finished chunk if its files are unchanged; else None."""
        entry = self.done.get(index)
        return entry[1] if entry is not None and entry[0] == files else None

    def record(self, index: int, files: list, rows: Any, extras: Any = None) -> None:
        """Append a finished chunk: its rows, and what an observer kept for it (``extras``, JSON)."""
        entry = {"chunk": index, "files": files, "rows": rows}
        if extras is not None:
            entry["extras"] = extras
        self._write(entry)
        self.done[index] = (files, (rows, extras))

    def close(self, remove: bool = False) -> None:
        self._fh.close()
        if remove:
            self.path.unlink(missing_ok=True)
