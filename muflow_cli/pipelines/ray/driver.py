"""Scale a scan out on Ray Data: ``muflow scan PATH… --ray local|auto|ADDRESS --parquet OUT``.

The stages are Ray Data operators (stages.py), and no image passes through the driver:

    list files (driver: names only; storage.py)
    → read bytes       (actors, I/O; local files, or any URI pyarrow.fs reads: s3://, gs://, …)
    → find faces       (actors, each holding one single-threaded face detector; CPU)
    → score            (actors, each holding the model, loaded once; a GPU each on GPU nodes)
      (a cluster without GPUs: one actor per CPU does both, ScanParts; see plan.py)
    → write a part     (actors, I/O: one Parquet file per part, written under a temporary name and renamed)

The unit of work is a *part* (parts.py): ``config.chunk_files`` consecutive files of the sorted
listing. A part travels the pipeline as one row, so it is scored together and written as one file
whatever Ray does with blocks, and Ray's retries (a killed actor is restarted and its task run again)
rewrite the same file with the same rows: every file is in the result exactly once. ``--resume``
keeps a part whose recorded files are unchanged, like the local scan's journal (journal.py), so a
resumed table equals an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
import ray.data

from muflow_cli.errors import MuflowError
from muflow_cli.faces.native import NATIVE_NOT_ON_RAY
from muflow_cli.model.card import ModelCard
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.ray.parts import PART_PREFIX, PART_ROW_SCHEMA, Part, inspect_output, is_cut_short, make_parts, ray_settings, settings_digest
from muflow_cli.pipelines.ray.plan import RayPlan, plan
from muflow_cli.pipelines.ray.stages import FindFaces, ReadParts, ScanParts, ScoreParts, WriteParts
from muflow_cli.pipelines.ray.storage import filesystem, is_uri, list_files
from muflow_cli.pipelines.scan import ScanConfig

DEFAULT_PART_FILES = 128  # files per part with --ray (10 million images: 78,125 parts)
IO_FANOUT = 8  # face actors served by one reading and one writing actor
COUNTS = ("files", "faces", "flagged", "no_face", "errors")
log = logging.getLogger(__name__)


class RayScanError(MuflowError):
    """The Ray cluster could not be reached or the job failed as a whole (never for one bad file)."""


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
    counts: dict[str, Any]  # schema.summarize's counts, and "provenance": files per provenance kind
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
        raise RayScanError("not connected to a Ray cluster (driver.connect)")
    if model_path is not None:
        model_path = os.path.abspath(model_path)  # the same path on every node
    out = out if is_uri(out) else os.path.abspath(out)  # workers do not share the driver's working folder
    if model is None:
        model = DeepfakeModel.load(model_path, backbone_weights=backbone_weights)
    if model.native:
        raise RayScanError(NATIVE_NOT_ON_RAY)
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

    counts: dict[str, Any] = {**dict.fromkeys(COUNTS, 0), "provenance": {}}
    for c in state.done.values():
        add_counts(counts, c)
    if todo:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.print_on_execution_start = progress
        logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.ERROR)
        for row in build_dataset(todo, out, model_path, backbone_weights, model.card, config, settings, chosen, device, engine).iter_rows():
            add_counts(counts, json.loads(row["counts"]))
    entries = fs.get_file_info(pafs.FileSelector(root))
    for e in entries:  # a writer killed between its write and its rename leaves its temporary file behind
        if is_cut_short(e.base_name):
            fs.delete_file(e.path)
    written = {e.base_name for e in entries if e.base_name.startswith(PART_PREFIX)}
    missing = {p.name for p in parts} - written
    if missing:
        raise RayScanError(f"{len(missing)} parts were not written (first: {sorted(missing)[0]}); run again with --resume")
    return RayScanResult(counts, len(parts), len(state.done), chosen)


def add_counts(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Add one part's counts (schema.summarize's, and files per provenance kind) to ``total``."""
    for k in COUNTS:
        total[k] += int(part.get(k, 0))
    for kind, n in (part.get("provenance") or {}).items():
        total["provenance"][kind] = total["provenance"].get(kind, 0) + int(n)


def read_parts(todo: list[Part], face_actors: int) -> tuple[ray.data.Dataset, int]:
    """The first stages of a Ray scan or fit: the parts as rows, and their files' bytes read by reading actors;
    and how many reading (and, for a scan, writing) actors serve ``face_actors`` actors."""
    items = pa.Table.from_pylist([p.row() for p in todo], schema=PART_ROW_SCHEMA)
    # One block per part (up to a few thousand), so every read task and actor call gets whole parts.
    step = max(1, math.ceil(len(todo) / 4096))
    blocks = [items.slice(i, step) for i in range(0, len(todo), step)]
    # One reading and one writing actor per IO_FANOUT face actors: a part of 128 local files is read in
    # tens of ms and finding its faces takes ~10 s, so one reader (16 threads) keeps many actors fed.
    io_actors = max(1, min(len(todo), math.ceil(face_actors / IO_FANOUT)))
    ds = ray.data.from_arrow(blocks).map_batches(ReadParts, batch_size=1, batch_format="pyarrow", num_cpus=0, concurrency=io_actors)
    return ds, io_actors


def build_dataset(todo: list[Part], out: str, model_path: str | None, backbone_weights: str | None, card: ModelCard,
                  config: ScanConfig, settings: str, chosen: RayPlan, device: str, engine: str) -> ray.data.Dataset:
    """The pipeline of stages over the parts to do; nothing runs until it is iterated."""
    ds, io_actors = read_parts(todo, chosen.face_actors)
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


def read_p_values(out: str) -> np.ndarray:
    """The p-values of every face in the finished output (one column read, on the driver: 8 bytes a face),
    for the domain check a local scan makes on its table."""
    fs, root = filesystem(out)
    table = pq.read_table(root, columns=["p_value"], filesystem=fs)
    p = table.column("p_value").to_numpy(zero_copy_only=False).astype(float)
    return p[~np.isnan(p)]
