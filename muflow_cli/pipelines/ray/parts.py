"""Parts: the unit of work of a Ray scan, and what OUT holds of them.

A part is ``config.chunk_files`` consecutive files of the sorted listing; its file is
``part-<index>-<digest>.parquet``, where the digest covers the scan's settings and the part's file
names, and the file's Parquet metadata records the settings, the identity (path, size, mtime) of each
file as read, and the part's counts. ``--resume`` keeps a part whose recorded files are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from muflow_cli.errors import UsageError
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.identity import run_settings
from muflow_cli.pipelines.journal import ResumeError
from muflow_cli.pipelines.ray.storage import filesystem, identity
from muflow_cli.pipelines.scan import ScanConfig

FORMAT = "muflow-ray-part/1"
META_KEY = b"muflow"
PART_PREFIX = "part-"
# A part as it enters the pipeline: one row.
PART_ROW_SCHEMA = pa.schema([("part", pa.int64()), ("name", pa.string()), ("paths", pa.list_(pa.binary())),
                             ("shown", pa.list_(pa.string()))])


@dataclass
class Part:
    """``files`` consecutive files of the listing, scanned, scored and written together."""

    index: int
    paths: list[str]  # where workers read them (str; undecodable bytes of local names as surrogates)
    shown: list[str]  # the table's names
    digest: str

    def row(self) -> dict:
        return {"part": self.index, "name": self.name, "paths": [os.fsencode(p) for p in self.paths], "shown": self.shown}

    @property
    def name(self) -> str:
        return f"{PART_PREFIX}{self.index:08d}-{self.digest}.parquet"


def settings_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def make_parts(files: list[tuple[str, str]], per_part: int, settings: str) -> list[Part]:
    """Parts of ``per_part`` files; the digest ties a part's file name to the settings and its file names.
    No files: one empty part, so OUT still reads as a table (with no rows)."""
    parts = []
    for index, start in enumerate(range(0, max(len(files), 1), per_part)):
        chunk = files[start : start + per_part]
        h = hashlib.sha256(settings.encode())
        for _, shown in chunk:
            h.update(b"\0" + shown.encode("utf-8", "surrogatepass"))
        parts.append(Part(index, [p for p, _ in chunk], [n for _, n in chunk], h.hexdigest()[:16]))
    return parts


def ray_settings(model: DeepfakeModel, config: ScanConfig) -> dict:
    """What makes two Ray scans the same scan (identity.run_settings's one rule); the file list is in each
    part's digest, not here."""
    return run_settings("ray-scan", model.tensors_sha256, config, [])


def encode_part(df: pd.DataFrame, schema: pa.Schema, index: int, settings: str, counts: dict, files: list) -> bytes:
    """One part's rows as a Parquet file's bytes, with the metadata :func:`part_metadata` reads back."""
    meta = {"format": FORMAT, "part": index, "settings": settings, "counts": counts, "files": files}
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def is_cut_short(base: str) -> bool:
    """A temporary file of a write that was cut short (a writer killed before its rename)."""
    return base.startswith(".") and base.endswith(".tmp")


def part_metadata(fs: pafs.FileSystem, path: str) -> dict | None:
    """The muflow metadata of a written part; None when the file is not one (or is unreadable)."""
    try:
        with fs.open_input_file(path) as fh:
            meta = pq.read_schema(fh).metadata or {}
        doc = json.loads(meta[META_KEY])
        return doc if doc.get("format") == FORMAT else None
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None


@dataclass
class OutputState:
    """What OUT holds before the run: the parts to keep (with their counts) and the files to remove."""

    done: dict[int, dict[str, int]] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)


def inspect_output(out: str, parts: list[Part], settings: str, resume: bool) -> OutputState:
    """Check OUT: a folder holding only muflow parts (or nothing). With ``resume``, a part is kept when its
    name matches the plan and its files are unchanged; every other part file is removed (so nothing is
    doubled). Without ``resume``, all earlier part files are removed, as a local scan replaces its table."""
    fs, root = filesystem(out)
    info = fs.get_file_info(root)
    state = OutputState()
    if info.type == pafs.FileType.NotFound:
        return state
    if info.type != pafs.FileType.Directory:
        raise UsageError(f"{out} is a file; with --ray, --parquet names a folder of Parquet parts")
    by_name = {p.name: p for p in parts}
    for entry in fs.get_file_info(pafs.FileSelector(root)):
        base = entry.base_name
        if is_cut_short(base):
            state.stale.append(entry.path)
            continue
        if base.startswith((".", "_")):  # hidden: pyarrow and pandas do not read these
            continue
        meta = part_metadata(fs, entry.path) if base.startswith(PART_PREFIX) and base.endswith(".parquet") else None
        if meta is None:
            raise UsageError(f"{out} holds {base}, which is not a muflow part; give an empty or new folder")
        if not resume:
            state.stale.append(entry.path)
            continue
        if meta.get("settings") != settings:
            raise ResumeError(f"{out} was written by a scan with other settings; rerun with the same arguments, "
                              "or without --resume to start over")
        part = by_name.get(base)
        if part is None or meta.get("files") != [identity(p, n) for p, n in zip(part.paths, part.shown)]:
            state.stale.append(entry.path)  # another listing, or a file changed since: scanned again
        else:
            state.done[part.index] = meta["counts"]
    return state
