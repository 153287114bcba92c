"""A fit's face collection on Ray Data: ``muflow fit PATH… --ray local|auto|ADDRESS``.

Reading, detecting and aligning are most of a large fit's first hour (a 70k-face folder: 30 min on two
cores, benchmarks/fit_time.py), and they parallelise over files; training the flows does not
spread over machines the same way, so the fit itself stays on the driver. The stages are the scan's
(pipelines/ray/stages.py):

    parts of FIT_PART_FILES consecutive files of the listing (the local fit's listing, in its order)
    → read bytes   (ReadParts: a few I/O actors; driver.read_parts, as a scan reads)
    → find faces   (FindFitFaces: one actor per CPU, each one single-threaded detector, the fit's crop)
    → the driver   (each part's faces as safetensors bytes, packing.py; in listing order)

The driver gets the parts back in order (Ray Data's ``preserve_order``) and hands every file's result to
fit.collect_faces, which keeps, skips and stores faces exactly as it does for the local stage: the
crops on disk are byte for byte those of a local collection, in the same order, so the split, the
groups and the model are the same. Crops cross the object store once, to the machine the fit runs on
(where they must end up); workers read the files by the same path, so on a cluster the folder is on
a shared file system.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ray
import ray.data

from muflow_cli.faces.face import FileFaces
from muflow_cli.pipelines.fit_config import FitConfig
from muflow_cli.pipelines.ray.driver import RayScanError, connect, read_parts
from muflow_cli.pipelines.ray.packing import unpack_faces
from muflow_cli.pipelines.ray.parts import make_parts
from muflow_cli.pipelines.ray.plan import plan
from muflow_cli.pipelines.ray.stages import FindFitFaces
from muflow_cli.pipelines.ray.storage import local_entries

# Files per part. Smaller than a scan's 128: the fit gets each part back in order, so a part is what the
# driver waits for at once (32 photos: ~3 s of one actor's work), and a part's crops (196 KiB a face at
# 256 px) are what one row carries through the object store.
FIT_PART_FILES = 32
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayCollection:
    """Where a fit finds its faces: the Ray cluster ``where`` (driver.connect: local, auto or an address) with
    ``actors`` face-finding actors (0: one per CPU of the cluster)."""

    where: str = "local"
    actors: int = 0


def ray_face_results(files: list[Path], config: FitConfig, ray_at: RayCollection = RayCollection(),
                     quiet: bool = True) -> Iterator[FileFaces]:
    """The face-finding result of every file of ``files``, in that order, found on a Ray cluster: what
    faces.FaceStage.map gives the local fit. A process already connected keeps its cluster; otherwise this
    connects, and disconnects once the faces are in (a ``local`` cluster is stopped, its memory and
    daemons given back before the training starts). Ray's progress bars stay off: the fit shows one bar
    over files, fed by this iterator."""
    if not files:
        return
    started = not ray.is_initialized()
    connect(ray_at.where, quiet)
    try:
        yield from _found(files, config, ray_at.actors)
    finally:
        if started:
            ray.shutdown()


def _found(files: list[Path], config: FitConfig, face_actors: int) -> Iterator[FileFaces]:
    parts = make_parts(local_entries(files), FIT_PART_FILES, "fit")
    chosen = plan(ray.cluster_resources().get("CPU", 1), 0, "cpu", face_actors)  # the scan's CPU plan: an actor per CPU
    actors = max(1, min(chosen.face_actors, len(parts)))  # no more actors than parts to give them
    log.info("muflow fit --ray: %d files in %d parts, %d face actors", len(files), len(parts), actors)
    ctx, ray_log = ray.data.DataContext.get_current(), logging.getLogger("ray.data")
    was = ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start, ray_log.level
    ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start = True, False, False
    ray_log.setLevel(logging.ERROR)  # its notes on progress bars and finished datasets: the fit says what it does
    expected = 0
    try:
        ds, _ = read_parts(parts, actors)
        ds = ds.map_batches(FindFitFaces, batch_size=1, batch_format="pyarrow", fn_constructor_args=(config,),
                            num_cpus=chosen.face_cpus, concurrency=actors)
        for row in ds.iter_rows():
            if row["part"] != expected:  # preserve_order promises this; a fit's crops must not be shuffled
                raise RayScanError(f"Ray returned part {row['part']} where part {expected} was due")
            expected += 1
            yield from unpack_faces(row["faces"])
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start, level = was
        ray_log.setLevel(level)
    if expected != len(parts):
        raise RayScanError(f"Ray returned {expected} of {len(parts)} parts")
