"""Where a scan writes its table and report, and whether it goes on from an interrupted run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from muflow_cli.errors import UsageError


@dataclass(frozen=True)
class ScanOutputs:
    """Tables by format (any of them), an HTML report, ``resume``: the journal lives beside the first table."""

    csv: Path | None = None
    parquet: Path | str | None = None  # with --ray: a folder of parts, local or a URI
    jsonl: Path | None = None
    html: Path | None = None
    resume: bool = False

    def tables(self) -> list[tuple[Path, str]]:
        """(path, format) of each table asked for, in a fixed order: csv, parquet, jsonl."""
        given = ((self.csv, "csv"), (self.parquet, "parquet"), (self.jsonl, "jsonl"))
        return [(Path(p), fmt) for p, fmt in given if p is not None]

    def check(self) -> None:
        if self.resume and not self.tables():
            raise UsageError("--resume needs an output file (--csv, --parquet or --jsonl): the scan's journal lives beside it")
