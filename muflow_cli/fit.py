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
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .averages import average_faces, default_average_plan
from .cache import FeatureCache
from .detector import Detector, new_card, pick_device
from .faces import FaceDetector, FaceStage
from .features import create_feature_extractor
from .images import iter_image_files
from .model import FlowConfig, MuFlowModel
from .progress import stderr, track
from .target import GaussianTarget

MIN_FACES = 20


class FitError(ValueError):
    """The data cannot give a detector (too few faces, bad settings)."""


@dataclass
class FitConfig:
    crop_size: int = 256
    context: float = 1.5
    detector: str = "scrfd"
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
    group_by: str = "file"  # or "folder": keep a folder's faces on one side of the calibration split
    epochs: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-5
    seed: int = 0
    tail: str = "two"
    cache: str = "auto"  # where the feature cache lives: auto (RAM while it needs <= half the free memory), memory, disk
    cache_dir: Path | None = None  # folder for an on-disk cache (default: the system's temporary folder)
    device: str = "auto"


@dataclass
class FitReport:
    files: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    faces: int = 0
    fit_faces: int = 0
    calibration_faces: int = 0
    k: int = 0
    averages: int = 0
    epochs: int = 0
    losses: list[float] = field(default_factory=list)
    calibration_mean: float = float("nan")
    seconds: dict[str, float] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # where the feature cache lived, and its size

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

    Faces of one photo (or one video, with ``--group-by folder``) share camera, compression and
    often identity; if they straddled the split, calibration scores would be optimistic and
    new real sources would be flagged more often than the stated FPR. Groups are taken in
    random order; a group that would overshoot the target by half is passed over.
    """
    groups, sizes = np.unique(group_ids, return_counts=True)
    order = rng.permutation(len(groups))
    target = max(1, int(round(fraction * len(group_ids))))
    cal = np.zeros(len(group_ids), bool)
    held = 0
    for g in order:
        if held >= target:
            break
        if held + sizes[g] > 1.5 * target and held > 0:
            continue
        cal |= group_ids == groups[g]
        held += sizes[g]
    return cal


def collect_faces(
    paths: list[Path], config: FitConfig, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, int, Counter]:
    """Aligned crops (N, S, S, 3) of every usable face, the group index of each, file count, skips.

    Files are read on the same worker pool as ``muflow scan`` (faces.FaceStage)."""
    files = list(iter_image_files(paths))
    crops, ids, skipped = [], [], Counter()
    make = lambda: FaceDetector(config.detector, config.det_threshold, threads=1)  # noqa: E731
    with FaceStage(make, config.crop_size, config.context, config.max_faces_per_image) as stage:
        results = track(stage.map(files), "faces   ", total=len(files), enabled=progress)
        for i, (path, res) in enumerate(zip(files, results)):
            if res.status != "ok":
                skipped[res.status] += 1
                continue
            kept = [f for f in res.faces if f.size_px >= config.min_face_px]
            skipped["small_face"] += len(res.faces) - len(kept)
            crops += [f.crop for f in kept]
            ids += [i if config.group_by == "file" else path.parent] * len(kept)
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


def fit(paths: list[Path] | Path, config: FitConfig = FitConfig(), progress: bool = True) -> tuple[Detector, FitReport]:
    """Fit on the real faces under ``paths``; returns the detector and what happened."""
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    report = FitReport()
    t0 = time.perf_counter()
    crops, ids, report.files, skipped = collect_faces(paths, config, progress)
    report.skipped = {k: v for k, v in skipped.items() if v}
    report.seconds["faces"] = time.perf_counter() - t0
    return fit_crops(crops, ids, config, progress, report)


def fit_crops(
    crops: np.ndarray,
    group_ids: np.ndarray | None = None,
    config: FitConfig = FitConfig(),
    progress: bool = True,
    report: FitReport | None = None,
) -> tuple[Detector, FitReport]:
    """Fit on aligned crops already in memory (``group_ids``: crops that share a photo or video)."""
    report = report or FitReport()
    n = len(crops)
    report.faces = n
    if n < MIN_FACES:
        raise FitError(
            f"found {n} usable faces; fitting needs at least {MIN_FACES} (hundreds are better). "
            f"Skipped files: {report.skipped or 'none'}"
        )
    if not 0.05 <= config.calibration_fraction <= 0.5:
        raise FitError("calibration fraction must lie in [0.05, 0.5]")
    group_ids = np.arange(n) if group_ids is None else np.asarray(group_ids)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    device = pick_device(config.device)

    if config.group_by not in ("file", "folder"):
        raise FitError("group_by must be 'file' or 'folder'")
    cal_mask = split_by_group(group_ids, config.calibration_fraction, rng)
    fit_crops_, cal_crops = Rows(crops, np.flatnonzero(~cal_mask)), crops[cal_mask]
    report.fit_faces, report.calibration_faces = len(fit_crops_), len(cal_crops)
    if report.fit_faces < MIN_FACES // 2:
        raise FitError(f"only {report.fit_faces} faces left to fit after holding out calibration; add more faces")

    backbone = create_feature_extractor(
        config.backbone, config.backbone_weights, config.taps, config.download_backbone
    ).to(device)

    # Averages -> Gaussian target per layer.
    t = time.perf_counter()
    report.k, report.averages = default_average_plan(report.fit_faces, config.k, config.averages)
    pooled: list[list[np.ndarray]] = [[] for _ in backbone.channels]
    batches = average_faces(fit_crops_, report.k, report.averages, rng, batch=config.batch_size)
    for batch in track(batches, "averages", total=math.ceil(report.averages / config.batch_size), enabled=progress):
        for j, f in enumerate(backbone(torch.from_numpy(batch))):
            pooled[j].append(f.mean(dim=(2, 3)).double().cpu().numpy())
    targets = [GaussianTarget.fit(np.concatenate(p)) for p in pooled]
    report.seconds["averages"] = time.perf_counter() - t

    # Cache backbone features of single fit faces once (float16): the backbone is frozen.
    t = time.perf_counter()
    cache = _features(backbone, fit_crops_, config, progress)
    report.cache = {"where": cache.where, "bytes": cache.nbytes}
    report.seconds["features"] = time.perf_counter() - t
    try:
        model = _train(model_for(backbone, targets, config.flow, device), cache, config, report, rng, device, progress)
    finally:
        cache.close()

    card = new_card(
        backbone=backbone,
        backbone_weights=config.backbone_weights,
        crop_size=config.crop_size,
        context=config.context,
        detector={"kind": config.detector, "threshold": config.det_threshold},
        flow=config.flow,
        tail=config.tail,
        training={},
    )
    detector = Detector(card, backbone, model, np.zeros(0)).to(device)
    t = time.perf_counter()
    cal_scores = detector.score(cal_crops, batch_size=config.batch_size)["score"]
    detector.calibration = np.sort(cal_scores)
    report.calibration_mean = float(np.mean(cal_scores)) if len(cal_scores) else float("nan")
    report.seconds["calibration"] = time.perf_counter() - t
    card["training"] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": config.seed,
        "images": report.files,
        "skipped": report.skipped,
        "faces": report.faces,
        "fit_faces": report.fit_faces,
        "calibration_faces": report.calibration_faces,
        "k": report.k,
        "averages": report.averages,
        "epochs": report.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "final_loss": report.losses[-1],
        "calibration_mean_score": report.calibration_mean,
        "min_face_px": config.min_face_px,
        "group_by": config.group_by,
    }
    if report.calibration_faces < 2 / 0.05 - 1 and progress:
        stderr.print(
            f"[yellow]warning:[/] only {report.calibration_faces} calibration faces: "
            f"the smallest p-value is {detector.min_p():.3f}, so verdicts at --fpr below it cannot say 'fake'"
        )
    return detector, report


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


def _train(model: MuFlowModel, cache: FeatureCache, config: FitConfig, report: FitReport, rng, device, progress: bool) -> MuFlowModel:
    """Adam with a cosine schedule over ``report.epochs`` epochs of the cached features.

    On CPU the maps and conv weights are channels_last while training (oneDNN's native layout:
    no reorder around each convolution, see benchmarks/fit_step.py); the model goes back to the
    default layout afterwards, so what is saved and scored does not depend on it.
    """
    t = time.perf_counter()
    report.epochs = config.epochs or default_epochs(report.fit_faces)
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model.to(memory_format=layout)
    opt = torch.optim.Adam(model.flows.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(report.fit_faces / config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=report.epochs * steps_per_epoch)
    model.train()
    try:
        for _ in track(range(report.epochs), "training", enabled=progress):
            order = rng.permutation(report.fit_faces)
            total = 0.0
            for s in range(0, report.fit_faces, config.batch_size):
                idx = order[s : s + config.batch_size]
                loss = model(cache.get(idx, device, layout))["score"].mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.flows.parameters(), 10.0)
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            report.losses.append(total / report.fit_faces)
            if not math.isfinite(report.losses[-1]):
                raise FitError("training diverged (non-finite loss); try a smaller --lr")
    finally:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    report.seconds["training"] = time.perf_counter() - t
    return model
