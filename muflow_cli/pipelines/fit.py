"""Fit a µFlow detector on a folder of real faces.

Stages (``fit_crops``, each a function of pipelines/fit_stages.py or fit_training.py): faces -> groups of
near-duplicates (face_groups) -> split (fit / held-out calibration: whole groups, or the later part of each
sequence when there are few groups: stats/splits.py) -> average faces of the fit part -> Gaussian target per
layer -> backbone features of single fit faces, cached once in float16 (in RAM, or memory-mapped on disk
when large: nn/feature_cache.py) -> flows trained many epochs on the cache -> calibration scores of
held-out reals -> the bundle. Calibration faces take no part in averages or training. With a checkpoint
(pipelines/fit_checkpoint.py) the faces, the split and targets, and each epoch are kept, and a resumed
fit goes on from them.

The crops (196 KiB a face at 256 px) are written to disk as they are collected — into the checkpoint
when there is one, else a nameless temporary file — and every stage reads them a batch at a time
(nn/row_store.py): the fit's memory does not grow with its faces; the system's page cache keeps what fits.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from muflow_cli.faces.face import FileFaces
from muflow_cli.faces.native import NATIVE_NOT_ON_RAY
from muflow_cli.faces.stage import FaceStage
from muflow_cli.inputs.images import iter_image_files
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.model.device import pick_device, training_precision
from muflow_cli.nn.config import MIN_INSIDE
from muflow_cli.nn.row_store import PackedMasks, RowStore
from muflow_cli.pipelines.fit_checkpoint import CROPS_FILE, MASKS_FILE, FitCheckpoint, SavedFaces, fit_settings
from muflow_cli.pipelines.fit_config import MIN_FACES, FitConfig, FitError, FitReport, default_epochs, detector_spec
from muflow_cli.pipelines.fit_stages import (
    Rows,
    add_strata,
    announce,
    cache_features,
    calibrate_model,
    check_faces,
    check_forward,
    count_native,
    fit_targets,
    hold_out,
    load_backbone,
    make_bundle,
    model_for,
    plan_fit,
    thumbnail,
    training_faces,
)
from muflow_cli.pipelines.fit_training import estimate_seconds, train_flows
from muflow_cli.pipelines.grouping import face_groups
from muflow_cli.progress import track
from muflow_cli.stats.near_duplicates import Fingerprints, fingerprint

if TYPE_CHECKING:  # Ray is an optional extra: imported when a fit asks for it
    from muflow_cli.pipelines.ray.collect import RayCollection

__all__ = [  # what the rest of muflow and the benchmarks import from here
    "MIN_FACES", "FitConfig", "FitError", "FitReport", "Rows", "cache_features", "collect_faces", "default_epochs",
    "estimate_seconds", "face_groups", "fit", "fit_crops", "model_for", "thumbnail", "train_flows",
]


def fit(
    paths: list[Path] | Path, config: FitConfig = FitConfig(), progress: bool = True, notify: Callable[[str], None] | None = None,
    checkpoint_dir: Path | None = None, resume: bool = False, keep_checkpoint: bool = False, ray_at: RayCollection | None = None,
) -> tuple[DeepfakeModel, FitReport]:
    """Fit on the real faces under ``paths``; returns the model and what happened.

    ``notify`` receives a line for the person waiting, once the faces are collected: how many will be
    fitted, what was skipped and why, and the time the rest will take, measured on this machine.
    ``checkpoint_dir``: keep each finished stage and epoch there (fit_checkpoint.py); with ``resume``, go on
    from what it holds (settings must match). It is removed when the fit returns, unless ``keep_checkpoint``
    (the CLI removes it once the bundle is written). ``ray_at``: find the faces on a Ray cluster
    (pipelines/ray/collect.py), the same crops as on this machine (None)."""
    config.check()
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = FitCheckpoint(checkpoint_dir, fit_settings(config, [str(p.resolve()) for p in paths]), resume)
    faces = checkpoint.load_faces() if checkpoint is not None else None
    if faces is None:
        faces = gather_faces(paths, config, progress, checkpoint.path if checkpoint is not None else "temporary", ray_at)
        if checkpoint is not None:
            checkpoint.save_faces(faces)
    report = FitReport(files=faces.files, skipped=faces.skipped, seconds={"faces": faces.seconds}, links=faces.links or {})
    try:
        result = fit_crops(faces.crops, faces.groups, config, progress, report, notify, checkpoint, faces.order, faces.valid,
                           faces.sources, faces.owner)
    finally:
        faces.close()
    if checkpoint is not None and not keep_checkpoint:
        checkpoint.remove()
    return result


def fit_crops(
    crops: np.ndarray | RowStore,
    group_ids: np.ndarray | None = None,
    config: FitConfig = FitConfig(),
    progress: bool = True,
    report: FitReport | None = None,
    notify: Callable[[str], None] | None = None,
    checkpoint: FitCheckpoint | None = None,
    order: np.ndarray | None = None,
    valid: np.ndarray | PackedMasks | None = None,
    sources: list[str] | None = None,
    owner: np.ndarray | None = None,
) -> tuple[DeepfakeModel, FitReport]:
    """Fit on aligned crops, in RAM (an array) or on disk (a RowStore, as fit() collects them; read a batch at
    a time, the same fit value for value) (``group_ids``: crops that share a photo or video;
    ``order``: each crop's place in time, for holding out the later part of sequences; None: as given;
    ``valid``: (N, S, S) the crop pixels inside each photo, ``Face.valid``; None: all of them;
    ``sources``: the file of each crop, re-processed for the calibration strata; None: the crops themselves;
    ``owner``: a native fit's face of each row, whose scores are pooled per face to calibrate; None: a row a face).

    ``checkpoint``: keeps the split, targets and epochs, and resumes from what it holds (fit() makes it)."""
    config.check()
    report = report or FitReport()
    group_ids = check_faces(len(crops), group_ids, config, report)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    report.precision = training_precision(config.precision, device)
    saved = checkpoint.load_split() if checkpoint is not None else None
    split = hold_out(crops, group_ids, order, config, rng, report, saved, valid)
    backbone = load_backbone(config, device)
    plan_fit(config, report)
    groups = report.split["groups"]
    if notify is not None:
        report.estimate = estimate_seconds(backbone, split.fit, report, config, device)
    if owner is not None:
        count_native(report, owner, split, group_ids)
    if notify is not None:
        notify(announce(report, config))
    averaged = fit_targets(backbone, split, config, report, rng, progress, saved, checkpoint)
    with cache_features(backbone, training_faces(split, config, report), config, progress, report) as cache:
        flows = train_flows(model_for(backbone, averaged.targets, config.flow, device), cache, config, report, rng,
                            device, progress, checkpoint)
    scorer, scores = calibrate_model(backbone, flows, split, config, report, device, None if owner is None else owner[split.mask])
    firsts = np.flatnonzero(split.mask)  # the calibration faces' groups and places in time, from their first rows
    if owner is not None:
        firsts = firsts[np.unique(owner[firsts], return_index=True)[1]]
    check_forward(scores, group_ids[firsts], None if order is None else np.asarray(order)[firsts], report)
    model = make_bundle(scorer, scores, split, averaged, groups, config, report)
    if config.strata and not (config.native and sources is None):  # native crops are no aligned faces to re-process
        model = add_strata(model, split, sources, config, report, progress)
    return model, report


def gather_faces(paths: list[Path], config: FitConfig, progress: bool, store: Path | Literal["temporary"] | None = None,
                 ray_at: RayCollection | None = None) -> SavedFaces:
    """collect_faces, timed, skip reasons that occurred only, grouped (face_groups): the record a checkpoint keeps.
    ``store``, ``ray_at``: where the crops go, and where they are found (collect_faces). A native fit's rows are
    its faces' native crops (faces/native.py): the groups are made of the faces and given to each of their crops."""
    t0 = time.perf_counter()
    got = _collect(paths, config, progress, store, ray_at)
    prints = (got.prints if config.native else fingerprint(got.crops)) if config.group_by == "auto" else None
    groups, order, links = face_groups(got.face_files, config.group_by, prints)
    if got.owner is not None:
        groups, order = groups[got.owner], order[got.owner]
    sources = [str(got.face_files[k]) for k in (got.owner if got.owner is not None else range(len(got.face_files)))]
    return SavedFaces(got.crops, groups, len(got.files), {k: v for k, v in got.skipped.items() if v}, time.perf_counter() - t0,
                      order, links, got.valid, sources, got.owner)


def collect_faces(
    paths: list[Path], config: FitConfig, progress: bool = True, store: Path | Literal["temporary"] | None = None,
    ray_at: RayCollection | None = None,
) -> tuple[np.ndarray | RowStore, list[Path], list[Path], Counter, np.ndarray | PackedMasks]:
    """Aligned crops (N, S, S, 3) of every usable face, the file of each, the files read, skips, and the
    crop pixels inside each photo (N, S, S). A masked fit passes over faces it could not score
    (``not_scored``: less than MIN_INSIDE of the crop inside the photo). A native fit (``config.native``)
    collects with gather_faces: its rows are native crops, several to a face."""
    if config.native:
        raise ValueError("collect_faces gives one aligned crop a face; a native fit collects with gather_faces")
    got = _collect(paths, config, progress, store, ray_at)
    return got.crops, got.face_files, got.files, got.skipped, got.valid


@dataclass
class _Collected:
    """What _collect gave: rows (aligned crops, or a native fit's native crops) and their masks, the file of each
    face, the files read, skips; for a native fit, the face of each row and the faces' fingerprints."""

    crops: np.ndarray | RowStore
    face_files: list[Path]
    files: list[Path]
    skipped: Counter
    valid: np.ndarray | PackedMasks
    owner: np.ndarray | None = None
    prints: Fingerprints | None = None


def _collect(
    paths: list[Path], config: FitConfig, progress: bool = True, store: Path | Literal["temporary"] | None = None,
    ray_at: RayCollection | None = None,
) -> _Collected:
    """collect_faces' work, for any fit (see there).

    ``store``: None keeps crops and masks in RAM, as arrays (small sets, the benchmarks); a folder: each file's
    faces are appended to files there as they are found (CROPS_FILE, MASKS_FILE: a checkpoint's), and come
    back as a RowStore and PackedMasks; "temporary": likewise, in nameless temporary files in ``config.cache_dir``.

    Files are read on the same worker pool as ``muflow scan`` (faces.FaceStage), or, given ``ray_at``, by
    actors of a Ray cluster (pipelines/ray/collect.py): the same results in the same order, kept and stored
    by the same code below."""
    if config.native and ray_at is not None:
        raise FitError(NATIVE_NOT_ON_RAY)
    files = list(iter_image_files(paths))
    crops, valid, face_files, skipped = [], [], [], Counter()
    per_face: list[int] = []  # rows of each face (a native fit's crops; otherwise 1)
    prints: list[Fingerprints] = []
    side = config.crop_size
    disk = None if store is None else (_rows(store, CROPS_FILE, (side, side, 3), config),
                                       _rows(store, MASKS_FILE, (side, (side + 7) // 8), config))
    with face_results(files, config, ray_at, progress) as found:
        for i, res in enumerate(track(found, "faces   ", total=len(files), enabled=progress)):
            if res.status != "ok":
                skipped[res.status] += 1
                continue
            kept = [f for f in res.faces if f.size_px >= config.min_face_px]
            skipped["small_face"] += len(res.faces) - len(kept)
            if config.masked:
                scored = [f for f in kept if f.inside >= MIN_INSIDE]
                skipped["not_scored"] += len(kept) - len(scored)
                kept = scored
            face_files += [files[i]] * len(kept)
            if not kept:
                continue
            if config.native:
                rows = [r for f in kept for r in f.native.crops]
                masks = [m for f in kept for m in f.native.valid]
                per_face += [len(f.native) for f in kept]
                if config.group_by == "auto":
                    prints.append(fingerprint(np.stack([f.crop for f in kept])))
            else:
                rows, masks = [f.crop for f in kept], [f.mask for f in kept]
            if disk is not None:
                disk[0].append(np.stack(rows))
                disk[1].append(PackedMasks.pack(np.stack(masks)))
            else:
                crops += rows
                valid += masks
    owner = np.repeat(np.arange(len(per_face)), per_face) if config.native else None
    found = Fingerprints.concat(prints) if prints else None
    if disk is not None:
        return _Collected(disk[0], face_files, files, skipped, PackedMasks(disk[1], side), owner, found)
    empty = np.zeros((0, config.crop_size, config.crop_size, 3), np.uint8)
    return _Collected(_stack(crops, empty), face_files, files, skipped, _stack(valid, np.zeros(empty.shape[:3], bool)), owner, found)


@contextmanager
def face_results(files: list[Path], config: FitConfig, ray_at: RayCollection | None, progress: bool
                  ) -> Iterator[Iterator[FileFaces]]:
    """Each file's FileFaces, in order: from a local FaceStage (closed on leaving), or from Ray actors."""
    if ray_at is not None:
        from muflow_cli.pipelines.ray.collect import ray_face_results  # Ray is an optional extra

        found = ray_face_results(files, config, ray_at, quiet=not progress)
        try:
            yield found
        finally:
            found.close()  # an interrupted collection still disconnects
        return
    with FaceStage(config.faces, detector_spec(config).factory(config.faces), config.crop_size, config.context,
                   native=config.native) as stage:
        yield stage.map(files)


def _rows(store: Path | str, name: str, row_shape: tuple[int, ...], config: FitConfig) -> RowStore:
    """A new uint8 RowStore for collect_faces: ``name`` in the folder ``store``, or a temporary one."""
    if store == "temporary":
        return RowStore.temporary(row_shape, np.uint8, directory=config.cache_dir)
    return RowStore.create(Path(store) / name, row_shape, np.uint8)


def _stack(crops: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    """np.stack without holding the list and the array at once (10k crops are 1.9 GB each way)."""
    if not crops:
        return empty
    out = np.empty((len(crops), *crops[0].shape), crops[0].dtype)
    for i in range(len(crops)):
        out[i], crops[i] = crops[i], None
    return out
