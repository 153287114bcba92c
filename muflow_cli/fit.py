"""Fit a µFlow detector on a folder of real faces.

Stages: faces -> split (fit / held-out calibration, by file, seeded) -> average faces of the
fit part -> Gaussian target per layer -> backbone features of single fit faces, cached once
in float16 (in RAM, or memory-mapped on disk when large: cache.py) -> flows trained many
epochs on the cache -> calibration scores of held-out reals. Calibration faces take no part
in averages or training.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .augment import AugmentedRows
from .averages import average_faces, default_average_plan
from .cache import CACHE_PLACES, FeatureCache
from .calibration import Calibration, check_tail
from .card import CalibrationInfo, CropSpec, FaceDetectorSpec, TrainingInfo
from .choices import PRECISIONS
from .deepfake_model import DeepfakeModel, new_card
from .device import pick_device, training_precision
from .errors import ConfigError, MuflowError
from .faces import FaceDetector, FaceStage, check_face_finding
from .features import create_feature_extractor
from .files import GROUP_BY, group_keys
from .fitcheck import FitCheckpoint, fit_settings
from .images import iter_image_files
from .model import FlowConfig, MuFlowModel
from .progress import track
from .target import GaussianTarget

MIN_FACES = 20
SAMPLE, SAMPLE_PX = 16, 64  # average faces and fit faces kept in the bundle for `muflow info --html`


class FitError(MuflowError):
    """The data cannot give a model (too few faces, training diverged)."""


@dataclass
class FitConfig:
    crop_size: int = 256
    context: float = 1.5
    face_detector: str = "scrfd"
    det_threshold: float = 0.5
    min_face_px: float = 24.0  # smaller faces carry too little detail to learn from
    max_faces_per_image: int = 0
    backbone: str = "mobilenetv2_100"
    backbone_weights: Path | None = None
    download_backbone: bool = False
    taps: tuple[int, ...] | None = None
    flow: FlowConfig = field(default_factory=FlowConfig)
    k: int | None = None
    averages: int | None = None
    calibration_fraction: float = 0.2
    group_by: str = "auto"  # faces that share a group stay on one side of the calibration split (files.group_keys)
    epochs: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-5
    precision: str = "auto"  # flows' training: fp32, bf16 autocast, or auto (bf16 where native: device.training_precision)
    seed: int = 0
    tail: str = "two"
    cache: str = "auto"  # where the feature cache lives: auto (RAM while it needs <= half the free memory), memory, disk
    cache_dir: Path | None = None  # folder for an on-disk cache (default: the system's temporary folder)
    device: str = "auto"
    aligned: str | None = None  # each image is one aligned face in this convention (faces.ALIGNED_CONVENTIONS)
    min_face: float = 0.0  # smallest face (px) to look for in large images, by tiles; 0: off
    augment: int = 0  # degraded copies of each fit face in flow training (augment.py); 0: none
    data_note: str = ""  # free text about the fit data, kept in the card

    def check(self) -> None:
        """Every rule on the settings, checked before a single face is collected."""
        if self.crop_size < 64 or self.crop_size % 16:
            raise ConfigError("crop size must be a multiple of 16, at least 64 (the backbone's stride is 16)")
        check_face_finding(self.face_detector, self.aligned, self.min_face)
        if self.group_by not in GROUP_BY:
            raise ConfigError(f"group_by must be one of {', '.join(GROUP_BY)}")
        if not 0.05 <= self.calibration_fraction <= 0.5:
            raise ConfigError("calibration fraction must lie in [0.05, 0.5]")
        if self.cache not in CACHE_PLACES:
            raise ConfigError(f"cache must be one of {', '.join(CACHE_PLACES)}")
        check_tail(self.tail)
        if self.batch_size < 2 or self.lr <= 0 or (self.epochs is not None and self.epochs < 1):
            raise ConfigError("batch size must be at least 2, lr positive and epochs at least 1")
        if not 0 <= self.augment <= 8:
            raise ConfigError("augment must lie in [0, 8] copies per face")
        if self.context < 1:
            raise ConfigError("context must be at least 1 (the template's own framing)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}")


@dataclass
class FitReport:
    files: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    faces: int = 0
    fit_faces: int = 0
    training_faces: int = 0  # fit faces and their augmented copies (what the flows train on)
    precision: str = "fp32"  # what the flows were trained in (FitConfig.precision resolved for the device)
    calibration_faces: int = 0
    k: int = 0
    averages: int = 0
    epochs: int = 0
    losses: list[float] = field(default_factory=list)
    calibration_mean: float = float("nan")
    seconds: dict[str, float] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # where the feature cache lived, and its size
    warnings: list[str] = field(default_factory=list)  # for the person who ran the fit (the CLI prints them)
    estimate: dict[str, float] = field(default_factory=dict)  # seconds per remaining stage, measured before it ran

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_epochs(n_fit: int) -> int:
    """About 6,000 face presentations (~375 Adam steps at batch 16), within [8, 60] epochs.

    Checked on held-out reals only (benchmarks/fit_epochs.py): on a 24-face fit their NLL
    still falls up to the 60-epoch cap (by 0.024 nats/dim from 32 to 60, the smallest
    step); a 120-face fit still falls steeply between 8 and 16 of its 50 epochs.
    """
    return int(min(60, max(8, math.ceil(6000 / max(n_fit, 1)))))


def split_by_group(group_ids: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of calibration faces: whole groups go to calibration until it holds ``fraction``.

    Faces of one photo (or one video or burst: files.group_keys) share camera, compression and
    often identity; if they straddled the split, calibration scores would be optimistic and
    new real sources would be flagged more often than the stated FPR. Groups are taken in
    random order; a group that would overshoot the target by half is passed over (if every
    group is that large, the smallest one is held out).
    """
    groups, sizes = np.unique(group_ids, return_counts=True)
    order = rng.permutation(len(groups))
    target = max(1, int(round(fraction * len(group_ids))))
    cal = np.zeros(len(group_ids), bool)
    held = 0
    for g in order:
        if held >= target:
            break
        if held + sizes[g] > 1.5 * target:
            continue
        cal |= group_ids == groups[g]
        held += sizes[g]
    if held == 0:
        cal |= group_ids == groups[int(np.argmin(sizes))]
    return cal


def collect_faces(
    paths: list[Path], config: FitConfig, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, int, Counter]:
    """Aligned crops (N, S, S, 3) of every usable face, the group index of each, file count, skips.

    Files are read on the same worker pool as ``muflow scan`` (faces.FaceStage)."""
    files = list(iter_image_files(paths))
    keys = group_keys(files, config.group_by)
    crops, ids, skipped = [], [], Counter()
    make = lambda: FaceDetector(config.face_detector, config.det_threshold, threads=1, min_face=config.min_face)  # noqa: E731
    with FaceStage(make, config.crop_size, config.context, config.max_faces_per_image, aligned=config.aligned) as stage:
        results = track(stage.map(files), "faces   ", total=len(files), enabled=progress)
        for i, (path, res) in enumerate(zip(files, results)):
            if res.status != "ok":
                skipped[res.status] += 1
                continue
            kept = [f for f in res.faces if f.size_px >= config.min_face_px]
            skipped["small_face"] += len(res.faces) - len(kept)
            crops += [f.crop for f in kept]
            ids += [keys[i]] * len(kept)
    empty = np.zeros((0, config.crop_size, config.crop_size, 3), np.uint8)
    groups = np.unique(np.asarray([str(g) for g in ids]), return_inverse=True)[1] if ids else np.zeros(0, int)
    return _stack(crops, empty), groups, len(files), skipped


def _stack(crops: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    """np.stack without holding the list and the array at once (10k crops are 1.9 GB each way)."""
    if not crops:
        return empty
    out = np.empty((len(crops), *crops[0].shape), crops[0].dtype)
    for i in range(len(crops)):
        out[i], crops[i] = crops[i], None
    return out


class Rows:
    """Rows ``index`` of an array, read on demand: the fit part of 10k crops would be a 1.5 GB copy."""

    def __init__(self, array: np.ndarray, index: np.ndarray) -> None:
        self.array, self.index = array, np.asarray(index)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.array.shape[1:])

    def __getitem__(self, i) -> np.ndarray:
        return self.array[self.index[i]]


def fit(
    paths: list[Path] | Path, config: FitConfig = FitConfig(), progress: bool = True, notify: Callable[[str], None] | None = None,
    checkpoint_dir: Path | None = None, resume: bool = False, keep_checkpoint: bool = False,
) -> tuple[DeepfakeModel, FitReport]:
    """Fit on the real faces under ``paths``; returns the model and what happened.

    ``notify`` receives a line for the person waiting, once the faces are collected: how many will be
    fitted, what was skipped and why, and the time the rest will take, measured on this machine.
    ``checkpoint_dir``: keep each finished stage and epoch there (fitcheck.py); with ``resume``, go on
    from what it holds (settings must match). It is removed when the fit returns, unless ``keep_checkpoint``
    (the CLI removes it once the bundle is written)."""
    config.check()
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    report = FitReport()
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = FitCheckpoint(checkpoint_dir, fit_settings(config, [str(p.resolve()) for p in paths]), resume)
    kept = checkpoint.load_faces() if checkpoint is not None else None
    if kept is not None:
        crops, ids, report.files, report.skipped, report.seconds["faces"] = kept
    else:
        t0 = time.perf_counter()
        crops, ids, report.files, skipped = collect_faces(paths, config, progress)
        report.skipped = {k: v for k, v in skipped.items() if v}
        report.seconds["faces"] = time.perf_counter() - t0
        if checkpoint is not None:
            checkpoint.save_faces(crops, ids, report.files, report.skipped, report.seconds["faces"])
    result = fit_crops(crops, ids, config, progress, report, notify, checkpoint)
    if checkpoint is not None and not keep_checkpoint:
        checkpoint.remove()
    return result


def fit_crops(
    crops: np.ndarray,
    group_ids: np.ndarray | None = None,
    config: FitConfig = FitConfig(),
    progress: bool = True,
    report: FitReport | None = None,
    notify: Callable[[str], None] | None = None,
    checkpoint: FitCheckpoint | None = None,
) -> tuple[DeepfakeModel, FitReport]:
    """Fit on aligned crops already in memory (``group_ids``: crops that share a photo or video).

    ``checkpoint``: keeps the split, targets and epochs, and resumes from what it holds (fit() makes it)."""
    config.check()
    report = report or FitReport()
    n = len(crops)
    report.faces = n
    if n < MIN_FACES:
        raise FitError(
            f"found {n} usable faces; fitting needs at least {MIN_FACES} (hundreds are better). "
            f"Skipped files: {report.skipped or 'none'}"
        )
    group_ids = np.arange(n) if group_ids is None else np.asarray(group_ids)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    report.precision = training_precision(config.precision, device)

    if len(np.unique(group_ids)) < 2:
        raise FitError(
            f"all {n} faces are in one group (--group-by {config.group_by}), so none can be held out to calibrate; "
            "give more photos or videos, or --group-by file if the files are independent photos"
        )
    kept = checkpoint.load_split(GaussianTarget) if checkpoint is not None else None
    cal_mask = kept[0] if kept is not None else split_by_group(group_ids, config.calibration_fraction, rng)
    fit_crops_, cal_crops = Rows(crops, np.flatnonzero(~cal_mask)), crops[cal_mask]
    report.fit_faces, report.calibration_faces = len(fit_crops_), len(cal_crops)
    if report.fit_faces < MIN_FACES // 2:
        raise FitError(f"only {report.fit_faces} faces left to fit after holding out calibration; add more faces")

    backbone = create_feature_extractor(
        config.backbone, config.backbone_weights, config.taps, config.download_backbone
    ).to(device)
    report.k, report.averages = default_average_plan(report.fit_faces, config.k, config.averages)
    report.epochs = config.epochs or default_epochs(report.fit_faces)
    if notify is not None:
        report.estimate = estimate_seconds(backbone, fit_crops_, report, config, device)
        skipped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.skipped.items()) or "nothing"
        parts = ", ".join(f"{k} {_duration(v)}" for k, v in report.estimate.items() if k != "total")
        notify(f"fitting on {report.fit_faces} faces, {report.calibration_faces} held out to calibrate "
               f"({len(np.unique(group_ids))} groups by {config.group_by}); skipped: {skipped}. "
               f"Estimated time for the rest, measured on this machine: {_duration(report.estimate['total'])} ({parts})")

    # Averages -> Gaussian target per layer.
    if kept is not None:
        _, targets, average_sample, rng.bit_generator.state, report.seconds["averages"] = kept
    else:
        t = time.perf_counter()
        pooled: list[list[np.ndarray]] = [[] for _ in backbone.channels]
        samples: list[np.ndarray] = []
        batches = average_faces(fit_crops_, report.k, report.averages, rng, batch=config.batch_size)
        for batch in track(batches, "averages", total=math.ceil(report.averages / config.batch_size), enabled=progress):
            samples += [thumbnail(a) for a in batch[: SAMPLE - len(samples)]]
            for j, f in enumerate(backbone(torch.from_numpy(batch))):
                pooled[j].append(f.mean(dim=(2, 3)).double().cpu().numpy())
        targets = [GaussianTarget.fit(np.concatenate(p)) for p in pooled]
        average_sample = np.stack(samples)
        report.seconds["averages"] = time.perf_counter() - t
        if checkpoint is not None:
            checkpoint.save_split(cal_mask, targets, average_sample, rng, report.seconds["averages"])

    # Cache backbone features of single fit faces once (float16): the backbone is frozen.
    t = time.perf_counter()
    training = AugmentedRows(fit_crops_, config.augment, config.seed) if config.augment else fit_crops_
    report.training_faces = len(training)
    cache = _features(backbone, training, config, progress)
    report.cache = {"where": cache.where, "bytes": cache.nbytes}
    report.seconds["features"] = time.perf_counter() - t
    try:
        model = _train(model_for(backbone, targets, config.flow, device), cache, config, report, rng, device, progress, checkpoint)
    finally:
        cache.close()

    t = time.perf_counter()
    untrained = new_card(
        backbone=backbone, backbone_weights=config.backbone_weights, crop=CropSpec(config.crop_size, config.context),
        face_detector=FaceDetectorSpec(config.face_detector, config.det_threshold), flow=config.flow,
        calibration=CalibrationInfo(tail=config.tail), training=TrainingInfo(),
    )
    scorer = DeepfakeModel(untrained, backbone, model, Calibration(np.zeros(0), config.tail)).to(device)
    cal_scores = scorer.score(cal_crops, batch_size=config.batch_size)["score"]
    report.calibration_mean = float(np.mean(cal_scores)) if len(cal_scores) else float("nan")
    report.seconds["calibration"] = time.perf_counter() - t
    training = TrainingInfo(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"), seed=config.seed, images=report.files,
        skipped=dict(report.skipped), faces=report.faces, fit_faces=report.fit_faces,
        calibration_faces=report.calibration_faces, k=report.k, averages=report.averages, epochs=report.epochs,
        batch_size=config.batch_size, lr=config.lr, final_loss=report.losses[-1], losses=list(report.losses),
        groups=int(len(np.unique(group_ids))),
        calibration_mean_score=report.calibration_mean, min_face_px=config.min_face_px, group_by=config.group_by, augment=config.augment,
        data=config.data_note, precision=report.precision,
    )
    calibration = CalibrationInfo(tail=config.tail, faces=len(cal_scores), source="fit", group_by=config.group_by)
    detector = scorer.with_calibration(cal_scores, calibration, replace(untrained, training=training))
    face_sample = np.stack([thumbnail(fit_crops_[int(i)]) for i in np.linspace(0, len(fit_crops_) - 1, min(SAMPLE, len(fit_crops_)))])
    detector.extras = {"report.averages": torch.from_numpy(average_sample), "report.faces": torch.from_numpy(face_sample)}
    min_p = detector.calibration.min_p()
    if min_p > 0.05:
        report.warnings.append(
            f"only {report.calibration_faces} calibration faces: the smallest p-value is {min_p:.3f}, "
            "so verdicts at an fpr below it cannot say 'fake'"
        )
    return detector, report


def thumbnail(crop: np.ndarray) -> np.ndarray:
    """A crop downscaled to SAMPLE_PX (uint8), for the bundle's sample of faces."""
    return cv2.resize(np.ascontiguousarray(crop), (SAMPLE_PX, SAMPLE_PX), interpolation=cv2.INTER_AREA)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def estimate_seconds(backbone, crops, report: FitReport, config: FitConfig, device: torch.device) -> dict[str, float]:
    """Time of each remaining stage, from a short timed probe on this machine (a few seconds, not a guess).

    One batch of fit crops through the backbone gives seconds per image (averages, features, calibration);
    two training steps of throw-away flows on its features give seconds per face per epoch. The probe
    runs on a forked RNG, so the fit itself is exactly what it would be without it."""
    batch = torch.from_numpy(crops[np.arange(min(config.batch_size, len(crops)))])
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        t = time.perf_counter()
        feats = backbone(batch)
        per_image = (time.perf_counter() - t) / len(batch)
        layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format  # as _train runs
        flows = MuFlowModel(backbone.channels, config.flow).to(device).to(memory_format=layout).train()
        flows.bf16_flows = report.precision == "bf16"
        opt = torch.optim.Adam(flows.flows.parameters(), lr=config.lr)
        steps = []
        for _ in range(2):  # the first step pays one-off costs
            t = time.perf_counter()
            loss = flows([f.half().float().contiguous(memory_format=layout) for f in feats])["score"].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps.append(time.perf_counter() - t)
    per_face_step = steps[-1] / len(batch)
    out = {
        "averages": report.averages * per_image,
        "features": report.fit_faces * (1 + config.augment) * per_image,
        "training": report.epochs * report.fit_faces * (1 + config.augment) * per_face_step,
        "calibration": report.calibration_faces * per_image * 1.5,  # backbone + flows forward
    }
    out["total"] = sum(out.values())
    return out


def _features(backbone, crops: np.ndarray, config: FitConfig, progress: bool) -> FeatureCache:
    cache = None
    try:
        for s in track(range(0, len(crops), config.batch_size), "features", enabled=progress):
            feats = backbone(torch.from_numpy(crops[s : s + config.batch_size]))
            if cache is None:
                cache = FeatureCache([tuple(f.shape[1:]) for f in feats], len(crops), config.cache, config.cache_dir)
            cache.put(s, feats)
    except BaseException:
        if cache is not None:
            cache.close()
        raise
    return cache


def model_for(backbone, targets: list[GaussianTarget], flow: FlowConfig, device: torch.device) -> MuFlowModel:
    """Untrained flows (identity at start) over the fitted Gaussian targets."""
    model = MuFlowModel(backbone.channels, flow)
    for tgt, fitted in zip(model.targets, targets):
        tgt.load_state_dict(fitted.state_dict())
    return model.to(device)


def _train(model: MuFlowModel, cache: FeatureCache, config: FitConfig, report: FitReport, rng, device, progress: bool,
           checkpoint: FitCheckpoint | None = None) -> MuFlowModel:
    """Adam with a cosine schedule over ``report.epochs`` epochs of the cached features.

    On CPU the maps and conv weights are channels_last while training (oneDNN's native layout:
    no reorder around each convolution, see benchmarks/fit_step.py); the model goes back to the
    default layout afterwards, so what is saved and scored does not depend on it.
    ``checkpoint``: the epochs it holds are restored first, and each finished epoch is saved to it."""
    t = time.perf_counter()
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model.to(memory_format=layout)
    model.bf16_flows = report.precision == "bf16"
    opt = torch.optim.Adam(model.flows.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = report.training_faces or report.fit_faces
    steps_per_epoch = math.ceil(n / config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=report.epochs * steps_per_epoch)
    done = _restore_epochs(checkpoint, model, opt, sched, rng, report)
    model.train()
    try:
        for epoch in track(range(done, report.epochs), "training", enabled=progress):
            order = rng.permutation(n)
            total = 0.0
            for s in range(0, n, config.batch_size):
                idx = order[s : s + config.batch_size]
                loss = model(cache.get(idx, device, layout))["score"].mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.flows.parameters(), 10.0)
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            report.losses.append(total / n)
            if not math.isfinite(report.losses[-1]):
                raise FitError("training diverged (non-finite loss); try a smaller --lr")
            _save_epoch(checkpoint, epoch + 1, model, opt, sched, rng, report, time.perf_counter() - t)
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.bf16_flows = False
    model.eval()
    report.seconds["training"] = report.seconds.get("training", 0.0) + time.perf_counter() - t
    return model


# -- checkpoint hooks of _train (fitcheck.py): no-ops without a checkpoint ------------------------
def _restore_epochs(checkpoint, model, opt, sched, rng, report: FitReport) -> int:
    """Epochs already done (0 without a checkpoint); restores flows, optimiser, schedule, RNGs, losses."""
    if checkpoint is None:
        return 0
    done, losses, seconds = checkpoint.load_epoch(model, opt, sched, rng)
    report.losses[:] = losses
    if done:
        report.seconds["training"] = seconds
    return done


def _save_epoch(checkpoint, epoch: int, model, opt, sched, rng, report: FitReport, seconds: float) -> None:
    if checkpoint is not None:
        checkpoint.save_epoch(epoch, model, opt, sched, rng, report.losses, report.seconds.get("training", 0.0) + seconds)
