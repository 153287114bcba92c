"""Safe table writers (CSV, Parquet, JSON lines) for the schema in pipelines/schema.py.

File names are attacker-controlled in forensic work: CSV cells that a spreadsheet would run
as a formula (starting with = + - @ or a tab/CR) are prefixed with a single quote.
Files are written atomically (inputs/atomic.py), so a crash never leaves a truncated
table that looks complete.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from muflow_cli.inputs.atomic import atomic_write

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """Make a cell inert for spreadsheets: '=cmd' -> \"'=cmd\"."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def format_of(path: Path) -> str:
    """Table format from a file name: .csv, .parquet (.pq) or .jsonl (.ndjson)."""
    suffix = Path(path).suffix.lower()
    formats = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
    if suffix not in formats:
        raise ValueError(f"{path}: choose a .csv, .parquet or .jsonl file name")
    return formats[suffix]


def write_table(df: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write ``df`` as csv, parquet or jsonl."""
    if fmt == "csv":
        safe = df.copy()
        for col in safe.columns:
            if safe[col].dtype == "string":
                safe[col] = safe[col].map(neutralise, na_action="ignore").astype("string")
        atomic_write(path, lambda p: safe.to_csv(p, index=False))
    elif fmt == "parquet":
        atomic_write(path, lambda p: df.to_parquet(p, index=False))
    elif fmt == "jsonl":
        atomic_write(path, lambda p: df.to_json(p, orient="records", lines=True, force_ascii=False))
    else:
        raise ValueError(f"unknown table format {fmt!r}")
