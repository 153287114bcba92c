"""Scale a scan out on Ray Data: ``muflow scan PATH… --ray local|auto|ADDRESS --parquet OUT``.

The stages are Ray Data operators, and no image passes through the driver:

    list files (driver: names only)
    → read bytes       (actors, I/O; local files, or any URI pyarrow.fs reads: s3://, gs://, …)
    → find faces       (actors, each holding one single-threaded face detector; CPU)
    → score            (actors, each holding the model, loaded once; a GPU each on GPU nodes)
      (a cluster without GPUs: one actor per CPU does both, ScanParts; see ``plan``)
    → write a part     (actors, I/O: one Parquet file per part, written under a temporary name and renamed)

The unit of work is a *part*: ``config.chunk_files`` consecutive files of the sorted listing. A
part travels the pipeline as one row, so it is scored together and written as one file whatever
Ray does with blocks, and Ray's retries (a killed actor is restarted and its task run again)
rewrite the same file with the same rows: every file is in the result exactly once.

A part's file is ``part-<index>-<digest>.parquet``; the digest covers the scan's settings and the
part's file names, and the file's Parquet metadata records the settings, the identity (path, size,
mtime) of each file as read, and the part's counts. ``--resume`` keeps a part whose recorded files
are unchanged, like the local scan's journal (journal.py), so a resumed table equals an
uninterrupted one. Rows come from the local scan's own code (faces.faces_in_file, scan.score_chunk,
tables.to_frame): same columns, types, statuses and messages.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import stat
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
import ray.data

from .card import ModelCard
from .deepfake_model import DeepfakeModel
from .errors import MuflowError, UsageError
from .faces import Face, FileFaces, faces_in_file
from .files import shown_path
from .images import IMAGE_SUFFIXES, iter_image_files
from .journal import ResumeError, file_identity, run_settings
from .scan import ScanConfig, score_chunk
from .tables import arrow_schema, summarize, to_frame

FORMAT = "muflow-ray-part/1"
META_KEY = b"muflow"
PART_PREFIX = "part-"
# Bytes above which a file is not fetched into memory: a local one is decoded from disk (which refuses
# a decompression bomb from its header), a remote one gets a too_large row.
MAX_FILE_BYTES = 512 * 2**20
DEFAULT_PART_FILES = 128  # files per part with --ray (10 million images: 78,125 parts)
IO_FANOUT = 8  # face actors served by one reading and one writing actor
COUNTS = ("files", "faces", "flagged", "no_face", "errors")
log = logging.getLogger(__name__)


class RayScanError(MuflowError):
    """The Ray cluster could not be reached or the job failed as a whole (never for one bad file)."""


# -- where things are -------------------------------------------------------------------------


def is_uri(path: str) -> bool:
    """``s3://bucket/key``, ``gs://…``, ``file:///…``: read through pyarrow.fs; anything else is a local path."""
    return "://" in path


_FILESYSTEMS: dict[str, tuple[pafs.FileSystem, int]] = {}


def filesystem(target: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for ``target`` and the path within it (one filesystem object per bucket and
    process: building an S3 one resolves credentials)."""
    if not is_uri(target):
        return pafs.LocalFileSystem(), os.path.abspath(target)
    scheme, rest = target.split("://", 1)
    key = f"{scheme}://{rest.split('/', 1)[0]}"
    if key not in _FILESYSTEMS:
        fs, inner = pafs.FileSystem.from_uri(target)
        at = target.find(inner) if inner else -1
        _FILESYSTEMS[key] = (fs, at if at >= 0 else len(scheme) + 3)  # where the inner path starts in a URI of this bucket
    fs, start = _FILESYSTEMS[key]
    return fs, target[start:].rstrip("/") or "/"


def _uri_files(uri: str) -> Iterator[str]:
    """Image files under a URI, sorted (a URI that names a file, or nothing, is yielded as given: it gets a row)."""
    uri = uri.rstrip("/") if not uri.endswith("://") else uri
    fs, inner = filesystem(uri)
    if fs.get_file_info(inner).type != pafs.FileType.Directory:
        yield uri
        return
    base = uri[: len(uri) - len(inner)]
    found = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    yield from sorted(base + i.path for i in found if i.type == pafs.FileType.File and Path(i.path).suffix.lower() in IMAGE_SUFFIXES)


def list_files(paths: Iterable[str], files_from: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(path to read, name for the table) of every file to scan, in the table's order: local folders walked
    as the local scan walks them (names as given, read by their absolute path, since workers run elsewhere),
    URIs listed through pyarrow.fs; lines of ``--files-from`` are taken as named (URIs: no listing, no stat)."""
    files: list[tuple[str, str]] = []

    def local(p: str) -> list[tuple[str, str]]:
        return [(os.path.abspath(os.fsdecode(f)), shown_path(f)) for f in iter_image_files([Path(p)])]

    for p in paths:
        files += [(u, u) for u in _uri_files(p)] if is_uri(p) else local(p)
    for line in files_from:
        files += [(line, line)] if is_uri(line) else local(line)
    return files


def identity(path: str, shown: str, info: pafs.FileInfo | None = None) -> list[Any]:
    """What ``--resume`` compares: shown path, size and mtime (ns), as the local journal does; -1 when missing."""
    if not is_uri(path):
        return file_identity(Path(path), shown)
    if info is None:
        fs, inner = filesystem(path)
        info = fs.get_file_info(inner)
    if info.type != pafs.FileType.File:
        return [shown, -1, -1]
    return [shown, info.size, info.mtime_ns if info.mtime_ns is not None else -1]


# -- parts ------------------------------------------------------------------------------------


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
    """What makes two Ray scans the same scan (the file list is in each part's digest); the number of
    actors or workers does not change a row, and the report's visuals are not made here."""
    settings = run_settings("ray-scan", model.tensors_sha256, config, [])
    for k in ("workers", "visuals", "paths"):
        settings.pop(k, None)
    return settings


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
        if base.startswith(".") and base.endswith(".tmp"):  # a write cut short
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


def read_p_values(out: str) -> np.ndarray:
    """The p-values of every face in the finished output (one column read, on the driver: 8 bytes a face),
    for the domain check a local scan makes on its table."""
    fs, root = filesystem(out)
    table = pq.read_table(root, columns=["p_value"], filesystem=fs)
    p = table.column("p_value").to_numpy(zero_copy_only=False).astype(float)
    return p[~np.isnan(p)]


# -- the stages (each runs in Ray workers) ------------------------------------------------------


def _read_one(path: str, shown: str) -> tuple[bytes | None, str | None, list[Any]]:
    """(bytes, error, identity) of one file. Bytes are None where the local reader should see the file
    itself (not a plain non-empty file, too big, or an OSError): it then says what the file is, word for
    word as a local scan does."""
    if not is_uri(path):
        try:
            st = os.stat(path)
            if stat.S_ISREG(st.st_mode) and 0 < st.st_size <= MAX_FILE_BYTES:
                with open(path, "rb") as fh:
                    return fh.read(), None, [shown, st.st_size, st.st_mtime_ns]
        except OSError:
            pass
        return None, None, identity(path, shown)
    fs, inner = filesystem(path)
    try:
        info = fs.get_file_info(inner)
        ident = identity(path, shown, info)
        if info.type == pafs.FileType.NotFound:
            return None, "file not found", ident
        if info.type != pafs.FileType.File:
            return None, "not a file", ident
        if info.size is not None and info.size > MAX_FILE_BYTES:
            return None, f"too_large:file of {info.size:,} bytes is above the limit of {MAX_FILE_BYTES:,}", ident
        with fs.open_input_stream(inner) as fh:
            return fh.read(), None, ident
    except (OSError, pa.ArrowException) as exc:
        return None, f"cannot read: {exc}", [shown, -1, -1]


class ReadParts:
    """Stage 2 (a few actors, no CPU reserved): the bytes of every file of each part, ``threads`` files at
    a time (I/O only; an object store answers each request after a round trip).

    Actors, not tasks: Ray keeps no more idle worker processes than a node has CPUs, and the actors
    that find faces hold those, so a short read task's worker was stopped once idle and a new one
    started (interpreter and imports, ~1.3 s of CPU) for a later read: 14 of them in a 200-photo
    scan on 2 CPUs, a third of its wall time (docs/performance.md, Benchmark 5)."""

    def __init__(self, threads: int = 16) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="muflow-read")

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for row in batch.to_pylist():
            read = list(self.pool.map(lambda pn: _read_one(os.fsdecode(pn[0]), pn[1]), zip(row["paths"], row["shown"])))
            out.append({**row, "data": [r[0] for r in read], "error": [r[1] for r in read],
                        "identities": json.dumps([r[2] for r in read])})
        return pa.Table.from_pylist(out, schema=_READ_SCHEMA)


_PARTS_SCHEMA = pa.schema([("part", pa.int64()), ("name", pa.string()), ("paths", pa.list_(pa.binary())), ("shown", pa.list_(pa.string()))])
_READ_SCHEMA = _PARTS_SCHEMA.append(pa.field("data", pa.list_(pa.large_binary()))).append(
    pa.field("error", pa.list_(pa.string()))).append(pa.field("identities", pa.large_string()))
_FACES_SCHEMA = _PARTS_SCHEMA.append(pa.field("identities", pa.large_string())).append(pa.field("faces", pa.large_binary()))
_SCORED_SCHEMA = pa.schema([("part", pa.int64()), ("name", pa.string()), ("counts", pa.string()), ("parquet", pa.large_binary())])
_WRITTEN_SCHEMA = pa.schema([("part", pa.int64()), ("name", pa.string()), ("counts", pa.string())])


def pack_faces(results: list[FileFaces]) -> bytes:
    """A part's face-finding results as safetensors bytes: arrays for the faces, JSON for the rest.

    Ray would pickle the objects between stages; muflow unpickles nothing, its own data included."""
    from safetensors.numpy import save

    faces = [f for r in results for f in (r.faces or [])]
    size = results and next((f.crop.shape[0] for f in faces), 0) or 0
    files = [{"path": str(r.path), "status": r.status, "message": r.message, "size": list(r.image_size) if r.image_size else None,
              "faces": len(r.faces or [])} for r in results]
    arrays = {
        "crops": np.stack([f.crop for f in faces]) if faces else np.zeros((0, size, size, 3), np.uint8),
        "boxes": np.array([f.box for f in faces], np.float64).reshape(-1, 4),
        "landmarks": np.array([f.landmarks for f in faces], np.float64).reshape(-1, 5, 2),
        "det_scores": np.array([f.det_score for f in faces], np.float64),
        "scales": np.array([f.scale for f in faces], np.float64),
    }
    return save(arrays, metadata={"files": json.dumps(files)})


def unpack_faces(blob: bytes) -> list[FileFaces]:
    """The inverse of :func:`pack_faces`."""
    from safetensors.numpy import load

    arrays = load(blob)
    header_len = int.from_bytes(blob[:8], "little")  # safetensors: an 8-byte length, then the JSON header
    files = json.loads(json.loads(blob[8 : 8 + header_len])["__metadata__"]["files"])
    out, k = [], 0
    for f in files:
        faces = [Face(arrays["boxes"][i], float(arrays["det_scores"][i]), arrays["landmarks"][i], arrays["crops"][i],
                      float(arrays["scales"][i])) for i in range(k, k + f["faces"])]
        k += f["faces"]
        out.append(FileFaces(f["path"], f["status"], f["message"], faces if f["status"] == "ok" or faces else
                             ([] if f["status"] == "no_face" else None), tuple(f["size"]) if f["size"] else None))
    return out


class FindFaces:
    """Stage 3 (an actor): decode, detect and align each part's files with one single-threaded detector.
    faces.faces_in_file does the work, so statuses and messages are the local scan's."""

    def __init__(self, card: ModelCard, config: ScanConfig) -> None:
        self.detector = None if config.aligned else card.face_detector.build(
            config.face_detector, config.det_threshold, threads=1, min_face=config.min_face)  # as scan.iter_scan builds it
        self.args = (card.crop.size, card.crop.context, config.max_faces, None, False, config.aligned)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = [{"part": row["part"], "name": row["name"], "paths": row["paths"], "shown": row["shown"], "identities": row["identities"],
                "faces": pack_faces(self.find(row))} for row in batch.to_pylist()]
        return pa.Table.from_pylist(out, schema=_FACES_SCHEMA)

    def find(self, row: dict) -> list[FileFaces]:
        """The face-finding results of one part's files, in order."""
        return [self._one(os.fsdecode(p), n, d, e) for p, n, d, e in zip(row["paths"], row["shown"], row["data"], row["error"])]

    def _one(self, path: str, shown: str, data: bytes | None, error: str | None) -> FileFaces:
        if error is not None:
            status, _, message = error.partition(":") if error.startswith("too_large:") else ("unreadable", "", error)
            return FileFaces(shown, status, message)
        source = io.BytesIO(data) if data is not None else Path(path)
        res = faces_in_file(source, self.detector, *self.args)
        res.path, res.image = path, None
        return res


def load_scoring_model(model: str | None, backbone_weights: str | None, device: str, engine: str, threads: int) -> DeepfakeModel:
    """The model as a scoring actor holds it, loaded once. ``threads``: the CPU engine's intra-op threads
    (through ``OMP_NUM_THREADS``, which both ONNX Runtime's and torch's pools read), so an actor uses the
    CPUs Ray gave it and no more; a cached graph then loads without importing torch."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
    loaded = DeepfakeModel.load(model, backbone_weights=backbone_weights).to(device).use_engine(engine)
    loaded.engine.set_spinning(False)  # other actors share this node's cores (torch's engine: nothing to set)
    return loaded


def score_part(row: dict, results: list[FileFaces], model: DeepfakeModel, config: ScanConfig, settings: str,
               schema: pa.Schema) -> dict:
    """One part's rows (scan.score_chunk: the local scan's), as one Parquet file's bytes with the part's metadata."""
    chunk = score_chunk(row["part"], results, row["shown"], model, config)
    df = to_frame(chunk.rows, model.layer_names)
    counts = summarize(df)  # summed over the parts at the end
    meta = {"format": FORMAT, "part": row["part"], "settings": settings, "counts": counts, "files": json.loads(row["identities"])}
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return {"part": row["part"], "name": row["name"], "counts": json.dumps(counts), "parquet": sink.getvalue().to_pybytes()}


class ScoreParts:
    """Stage 4 (an actor): the model, loaded once, scores each part's faces into one Parquet file's bytes."""

    def __init__(self, model: str | None, backbone_weights: str | None, device: str, engine: str, config: ScanConfig,
                 settings: str, threads: int) -> None:
        self.model = load_scoring_model(model, backbone_weights, device, engine, threads)
        self.config, self.settings = config, settings
        self.schema = arrow_schema(self.model.layer_names)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = [score_part(row, unpack_faces(row["faces"]), self.model, self.config, self.settings, self.schema)
               for row in batch.to_pylist()]
        return pa.Table.from_pylist(out, schema=_SCORED_SCHEMA)


class ScanParts(FindFaces):
    """Stages 3 and 4 in one actor, for CPU-only clusters: find the faces of a part, then score them with
    the model this actor holds (one single-threaded engine beside one single-threaded detector).

    Both stages need the same resource there, a CPU, and their shares of the work move with the data
    (3.5 faces a photo in a crowd folder, 1 in a folder of dataset crops, none in landscapes): actors
    that do both balance themselves, as the local scan's threads do, where a fixed split of the CPUs
    between two actor pools leaves one pool waiting (Benchmark 5). The crops also stay in the process,
    instead of crossing the object store."""

    def __init__(self, card: ModelCard, model: str | None, backbone_weights: str | None, engine: str, config: ScanConfig,
                 settings: str) -> None:
        super().__init__(card, config)
        self.model = load_scoring_model(model, backbone_weights, "cpu", engine, 1)
        self.config, self.settings = config, settings
        self.schema = arrow_schema(self.model.layer_names)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = [score_part(row, self.find(row), self.model, self.config, self.settings, self.schema) for row in batch.to_pylist()]
        return pa.Table.from_pylist(out, schema=_SCORED_SCHEMA)


class WriteParts:
    """Stage 5 (a few actors, no CPU reserved, for the reason given in ReadParts): each part's file,
    written under a hidden temporary name and renamed into place, so a reader never sees half a part
    and a retried write replaces the same file."""

    def __init__(self, out: str) -> None:
        self.fs, self.root = filesystem(out)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for row in batch.to_pylist():
            tmp = f"{self.root}/.{row['name']}.{uuid.uuid4().hex[:8]}.tmp"
            with self.fs.open_output_stream(tmp) as fh:
                fh.write(row["parquet"])
            self.fs.move(tmp, f"{self.root}/{row['name']}")
            rows.append({"part": row["part"], "name": row["name"], "counts": row["counts"]})
        return pa.Table.from_pylist(rows, schema=_WRITTEN_SCHEMA)


# -- the driver -------------------------------------------------------------------------------


@dataclass
class RayPlan:
    """Actors and the resources each asks Ray for. ``scorers == 0``: the face actors score too (ScanParts)."""

    face_actors: int
    face_cpus: float
    scorers: int
    score_cpus: float
    score_gpus: float
    score_threads: int

    @property
    def fused(self) -> bool:
        return self.scorers == 0

    def describe(self) -> str:
        if self.fused:
            return f"{_n(self.face_actors, 'actor')} finding and scoring faces ({self.face_cpus:g} CPU, 1 scoring thread each)"
        where = f"{self.score_gpus:g} GPU" if self.score_gpus else f"{self.score_cpus:g} CPU, {_n(self.score_threads, 'thread')}"
        return f"{_n(self.face_actors, 'face actor')} ({self.face_cpus:g} CPU each), {_n(self.scorers, 'scoring actor')} ({where} each)"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def plan(cpus: float, gpus: float, device: str = "auto", face_actors: int = 0, scorers: int = 0) -> RayPlan:
    """Actors and resources from the cluster's totals.

    GPUs (and ``device`` not cpu): one scoring actor per GPU (with a CPU to feed it); the other CPUs
    find faces. CPU only: one actor per CPU that finds and scores faces (ScanParts: scoring's share of the
    work moves with the faces per photo, 43 % at 3.52, 18 % at 1; docs/scale.md), unless ``scorers``
    asks for separate scoring actors (each then gets a CPU while they fit in half the CPUs). Asking for
    more actors than fit makes them share the CPUs (fractional requests), as the local scan's threads
    share the cores.
    """
    cpus = max(float(cpus), 1.0)
    on_gpu = gpus >= 1 and device != "cpu"
    if not on_gpu and not scorers:
        face = face_actors or max(1, int(cpus))
        return RayPlan(face, round(min(1.0, cpus / face), 4), 0, 0.0, 0.0, 1)
    n_score = scorers or int(gpus)
    score_cpus = 1.0 if n_score <= cpus / 2 else cpus / (2 * n_score)
    left = cpus - n_score * score_cpus
    face = face_actors or max(1, int(left))
    return RayPlan(face, round(min(1.0, left / face), 4), n_score, round(score_cpus, 4), 1.0 if on_gpu else 0.0, 0 if on_gpu else 1)


def connect(where: str, quiet: bool = False) -> None:
    """``local``: start a Ray cluster on this machine with its cores; ``auto``: join the cluster ``ray start``
    made here; anything else: the cluster at that address (``ray://host:10001`` or ``host:6379``).
    A process already connected (a notebook, the tests) keeps its cluster."""
    if ray.is_initialized():
        return
    opts: dict[str, Any] = {"logging_level": logging.ERROR if quiet else logging.WARNING, "log_to_driver": not quiet}
    try:
        if where == "local":
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            ray.init(num_cpus=cores, include_dashboard=False, **opts)
        else:
            ray.init(address=where, **opts)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayScanError(f"cannot reach the Ray cluster at {where!r}: {exc}") from None


@dataclass
class RayScanResult:
    counts: dict[str, int]
    parts: int
    parts_done_before: int
    plan: RayPlan


def ray_scan(
    paths: list[str],
    out: str,
    model_path: str | None = None,
    config: ScanConfig | None = None,
    *,
    files_from: list[str] = (),
    resume: bool = False,
    device: str = "auto",
    engine: str = "auto",
    backbone_weights: str | None = None,
    face_actors: int = 0,
    scorers: int = 0,
    progress: bool = True,
    model: DeepfakeModel | None = None,
) -> RayScanResult:
    """Scan on the connected Ray cluster (see :func:`connect`) into the folder ``out`` of Parquet parts.

    ``pandas.read_parquet(out)`` then reads the table a local scan writes (rows in file order). Paths and
    ``out`` may be local (the same path on every node: a shared file system) or URIs pyarrow.fs reads.
    ``model`` (optional) is the already loaded model, for its card and hash; actors load ``model_path``.
    """
    config = config or ScanConfig(chunk_files=DEFAULT_PART_FILES)
    config.check()
    if not ray.is_initialized():
        raise RayScanError("not connected to a Ray cluster (ray_scan.connect)")
    if model_path is not None:
        model_path = os.path.abspath(model_path)  # the same path on every node
    out = out if is_uri(out) else os.path.abspath(out)  # workers do not share the driver's working folder
    if model is None:
        model = DeepfakeModel.load(model_path, backbone_weights=backbone_weights)
    settings = settings_digest(ray_settings(model, config))
    files = list_files(paths, files_from)
    parts = make_parts(files, config.chunk_files, settings)
    state = inspect_output(out, parts, settings, resume)
    fs, root = filesystem(out)
    for path in state.stale:
        fs.delete_file(path)
    fs.create_dir(root, recursive=True)
    todo = [p for p in parts if p.index not in state.done]
    resources = ray.cluster_resources()
    chosen = plan(resources.get("CPU", 1), resources.get("GPU", 0), device, face_actors, scorers)
    chosen.face_actors = max(1, min(chosen.face_actors, len(todo)))  # no more actors than parts to give them
    chosen.scorers = min(chosen.scorers, max(1, len(todo)))
    if device.startswith("cuda") and not chosen.score_gpus:
        raise RayScanError(f"--device {device}, but the Ray cluster has no GPU (it has {resources.get('CPU', 0):g} CPUs)")
    log.info("muflow ray scan: %d files in %d parts (%d already written); %s", len(files), len(parts), len(state.done), chosen.describe())

    counts = dict.fromkeys(COUNTS, 0)
    for c in state.done.values():
        for k in COUNTS:
            counts[k] += int(c[k])
    if todo:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.print_on_execution_start = progress
        logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.ERROR)
        for row in build_dataset(todo, out, model_path, backbone_weights, model.card, config, settings, chosen, device, engine).iter_rows():
            for k, v in json.loads(row["counts"]).items():
                counts[k] += int(v)
    written = {e.base_name for e in fs.get_file_info(pafs.FileSelector(root)) if e.base_name.startswith(PART_PREFIX)}
    missing = {p.name for p in parts} - written
    if missing:
        raise RayScanError(f"{len(missing)} parts were not written (first: {sorted(missing)[0]}); run again with --resume")
    return RayScanResult(counts, len(parts), len(state.done), chosen)


def build_dataset(todo: list[Part], out: str, model_path: str | None, backbone_weights: str | None, card: ModelCard,
                  config: ScanConfig, settings: str, chosen: RayPlan, device: str, engine: str) -> ray.data.Dataset:
    """The pipeline of stages over the parts to do; nothing runs until it is iterated."""
    items = pa.Table.from_pylist([p.row() for p in todo], schema=_PARTS_SCHEMA)
    # One block per part (up to a few thousand), so every read task and actor call gets whole parts.
    blocks = [items.slice(i, 1) for i in range(len(todo))] if len(todo) <= 4096 else [
        items.slice(i, math.ceil(len(todo) / 4096)) for i in range(0, len(todo), math.ceil(len(todo) / 4096))]
    # One reading and one writing actor per IO_FANOUT face actors: a part of 128 local files is read in
    # tens of ms and finding its faces takes ~10 s, so one reader (16 threads) keeps many actors fed.
    io_actors = max(1, min(len(todo), math.ceil(chosen.face_actors / IO_FANOUT)))
    ds = ray.data.from_arrow(blocks).map_batches(ReadParts, batch_size=1, batch_format="pyarrow", num_cpus=0, concurrency=io_actors)
    if chosen.fused:
        ds = ds.map_batches(ScanParts, batch_size=1, batch_format="pyarrow",
                            fn_constructor_args=(card, model_path, backbone_weights, engine, config, settings),
                            num_cpus=chosen.face_cpus, concurrency=chosen.face_actors)
    else:
        ds = (ds.map_batches(FindFaces, batch_size=1, batch_format="pyarrow", fn_constructor_args=(card, config),
                             num_cpus=chosen.face_cpus, concurrency=chosen.face_actors)
              .map_batches(ScoreParts, batch_size=1, batch_format="pyarrow",
                           fn_constructor_args=(model_path, backbone_weights, device, engine, config, settings, chosen.score_threads),
                           num_cpus=chosen.score_cpus, num_gpus=chosen.score_gpus or None, concurrency=chosen.scorers))
    return ds.map_batches(WriteParts, batch_size=1, batch_format="pyarrow", fn_constructor_args=(out,), num_cpus=0,
                          concurrency=io_actors)
