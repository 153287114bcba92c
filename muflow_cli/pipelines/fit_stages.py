"""The stages of a fit, one job each; ``fit_crops`` (pipelines/fit.py) runs them in turn.

Training the flows, and timing it beforehand, are pipelines/fit_training.py. What a stage keeps for
a resumed fit is a record of pipelines/fit_checkpoint.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import cv2
import numpy as np
import torch

from muflow_cli.choices import GROUP_UNITS
from muflow_cli.faces.native import pool_scores
from muflow_cli.model.card import CalibrationInfo, CropSpec, TrainingInfo, forward_text
from muflow_cli.model.deepfake_model import DeepfakeModel, new_card
from muflow_cli.nn.augment import AugmentedRows, round_trip
from muflow_cli.nn.averages import average_faces, default_average_plan
from muflow_cli.nn.config import MIN_INSIDE, FlowConfig
from muflow_cli.nn.feature_cache import FeatureCache
from muflow_cli.nn.features import create_feature_extractor
from muflow_cli.nn.flow_model import MuFlowModel
from muflow_cli.nn.target import GaussianTarget
from muflow_cli.pipelines.fit_checkpoint import FitCheckpoint, SavedSplit
from muflow_cli.pipelines.fit_config import MIN_FACES, FitConfig, FitError, FitReport, default_epochs, detector_spec
from muflow_cli.pipelines.strata_calibration import crops_as_files, sample_sources, with_strata
from muflow_cli.progress import track
from muflow_cli.stats.calibration import Calibration, calibration_cautions, choose_tail
from muflow_cli.stats.drift import forward_rate
from muflow_cli.stats.splits import TAIL_MIN, calibration_split

# The tail probe's smooth copies: a 4x area-down, bicubic-up round trip of each held-out real, the
# smoothest common "fake" (the in-domain benchmark's bicubic control; 4x is the GAN upscalers' factor).
PROBE_DOWNSCALE = 4
FORWARD_FPR = 0.05  # the rate the forward check measures (the stated rate users most often ask for)

SAMPLE, SAMPLE_PX = 16, 64  # average faces and fit faces kept in the bundle for `muflow info --html`
# Warned about: below ~100 calibration faces a 5 % threshold rests on 5 faces; below 5 groups, calibration
# speaks for a handful of sources only.


def check_faces(n: int, group_ids: np.ndarray | None, config: FitConfig, report: FitReport) -> np.ndarray:
    """The group of each face (each its own when none is given), once there are faces enough to fit.

    Refused before any work: fewer than MIN_FACES."""
    report.faces = n
    if n < MIN_FACES:
        raise FitError(
            f"found {n} usable faces; fitting needs at least {MIN_FACES} (hundreds are better). "
            f"Skipped files: {report.skipped or 'none'}"
        )
    return np.arange(n) if group_ids is None else np.asarray(group_ids)


class Rows:
    """Rows ``index`` of an array or a RowStore (nn/row_store.py), read on demand: the fit part of 10k crops
    would be a 1.5 GB copy, the held-out part of 100k crops 4 GB."""

    def __init__(self, array, index: np.ndarray) -> None:
        self.array, self.index = array, np.asarray(index)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.array.shape[1:])

    def __getitem__(self, i) -> np.ndarray:
        return self.array[self.index[i]]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every row in RAM: only on explicit request (``np.asarray(rows)``); the fit's stages never ask."""
        out = self[:]
        return out if dtype is None else out.astype(dtype)


@dataclass
class Split:
    """The faces on either side of the calibration split."""

    mask: np.ndarray  # True: held out to calibrate
    fit_mask: np.ndarray  # True: fitted (neither held out nor in a gap)
    fit: Rows  # averages and training
    calibration: Rows  # held-out reals: their scores are the model's calibration
    fit_valid: Rows | None = None  # the crop pixels inside each photo (None: all of them)
    calibration_valid: Rows | None = None


def hold_out(crops, group_ids: np.ndarray, order: np.ndarray | None, config: FitConfig,
             rng: np.random.Generator, report: FitReport, saved: SavedSplit | None = None, valid=None) -> Split:
    """Hold faces out to calibrate (stats/splits.py: whole groups when there are many, the later part of
    each sequence when there are few; ``saved``: the split of the fit being resumed). ``crops``, ``valid``:
    arrays or RowStores; each side of the split is a view of them (Rows), never a copy.

    First, so that calibration faces take no part in the averages or the training: their scores must
    be those of reals the model has never seen. Faces in the gap between a sequence's parts are in neither."""
    if saved is not None:
        cal, fit_mask = saved.cal_mask, saved.fit_mask if saved.fit_mask is not None else ~saved.cal_mask
        plan = saved.plan or {}
    else:
        split = calibration_split(group_ids, order, config.calibration_fraction, rng)
        cal, fit_mask = split.calibration, split.fit
        plan = {"kind": split.kind, "groups": split.groups, "calibration_groups": split.calibration_groups,
                "gap_faces": int(split.gap.sum())}
    report.split = dict(plan, by=config.group_by)
    report.split["largest_group"] = int(np.unique(group_ids, return_counts=True)[1].max())
    if not cal.any():
        raise FitError(
            f"all {len(group_ids)} faces are in one group of fewer than {TAIL_MIN} (--group-by {config.group_by}), so "
            "none can be held out to calibrate; give more photos or videos"
        )
    fit_rows, cal_rows = np.flatnonzero(fit_mask), np.flatnonzero(cal)
    split = Split(cal, fit_mask, Rows(crops, fit_rows), Rows(crops, cal_rows),
                  Rows(valid, fit_rows) if valid is not None else None, Rows(valid, cal_rows) if valid is not None else None)
    report.fit_faces, report.calibration_faces = len(split.fit), len(split.calibration)
    if report.fit_faces < MIN_FACES // 2:
        raise FitError(f"only {report.fit_faces} faces left to fit after holding out calibration; add more faces")
    return split


def load_backbone(config: FitConfig, device: torch.device):
    """The frozen feature extractor, on ``device``: every later stage looks at faces through it."""
    return create_feature_extractor(config.backbone, config.backbone_weights, config.taps, config.download_backbone).to(device)


def plan_fit(config: FitConfig, report: FitReport) -> None:
    """How many crops per average, averages and epochs: the config's, or defaults for this many fit faces."""
    try:
        report.k, report.averages = default_average_plan(report.fit_faces, config.k, config.averages)
    except ValueError as exc:
        raise FitError(f"{exc}: give more faces or a smaller --k (the paper preset's k = 500 is for FFHQ-sized folders)") from None
    report.epochs = config.epochs or default_epochs(report.fit_faces)


def count_native(report: FitReport, owner: np.ndarray, split: Split, group_ids: np.ndarray) -> None:
    """A native fit's rows are native crops, several to a large face (``owner``: the face of each). The stages count
    rows; once they are planned, the report counts faces, as people read it, and keeps the crops beside them."""
    report.crops = {"all": len(owner), "fit": report.fit_faces, "calibration": report.calibration_faces}
    report.faces = len(np.unique(owner))
    report.fit_faces, report.calibration_faces = len(np.unique(owner[split.fit_mask])), len(np.unique(owner[split.mask]))
    firsts = np.unique(owner, return_index=True)[1]
    report.split["largest_group"] = int(np.unique(np.asarray(group_ids)[firsts], return_counts=True)[1].max())


def announce(report: FitReport, config: FitConfig) -> str:
    """The line for the person waiting: what will be fitted, what was skipped, and ``report.estimate``."""
    skipped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.skipped.items()) or "nothing"
    parts = ", ".join(f"{k} {_duration(v)}" for k, v in report.estimate.items() if k != "total")
    crops = f" ({report.crops['fit']} native crops)" if report.crops else ""
    return (f"fitting on {report.fit_faces} faces{crops}, {report.calibration_faces} held out to calibrate "
            f"({split_text(report.split, config.group_by)}); skipped: {skipped}. "
            f"Estimated time for the rest, measured on this machine: {_duration(report.estimate['total'])} ({parts})")


def split_text(split: dict, group_by: str) -> str:
    """How calibration was held out, in words (the fit's announcement and summary)."""
    groups, held = split.get("groups", 0), split.get("calibration_groups", 0)
    if split.get("kind") == "tails":
        return (f"the later part of each of {groups} {GROUP_UNITS[group_by]}, {split.get('gap_faces', 0)} faces "
                "left out between: fewer than 20 groups, so every one is fitted")
    return f"{held} of {groups} {GROUP_UNITS[group_by]}, held out whole"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def fit_targets(backbone, split: Split, config: FitConfig, report: FitReport, rng: np.random.Generator, progress: bool,
                saved: SavedSplit | None = None, checkpoint: FitCheckpoint | None = None) -> SavedSplit:
    """Average faces of the fit part -> pooled backbone features -> one Gaussian target per layer.

    Averages cancel identity, pose and expression and keep what the real source shares (nn/averages.py):
    the flows learn to map single faces onto these targets. ``saved`` (a resumed fit): its targets, and
    both RNGs set back to where the averages left them. A new result is kept in ``checkpoint``."""
    if saved is not None:
        rng.bit_generator.state = saved.rng_state
        torch.set_rng_state(saved.torch_rng_state)
        report.seconds["averages"] = saved.seconds
        return saved
    t = time.perf_counter()
    pooled: list[list[np.ndarray]] = [[] for _ in backbone.channels]
    samples: list[np.ndarray] = []
    # A native fit's averages are of its native crops, pooled where at least half of them are scored: the target
    # follows the rule its single faces are scored by (faces/native.py).
    valid = split.fit_valid if config.native else None
    batches = average_faces(split.fit, report.k, report.averages, rng, batch=config.batch_size, valid=valid)
    for batch in track(batches, "averages", total=math.ceil(report.averages / config.batch_size), enabled=progress):
        batch, masks = batch if valid is not None else (batch, None)
        samples += [thumbnail(a) for a in batch[: SAMPLE - len(samples)]]
        if masks is None:
            feats = [f.mean(dim=(2, 3)) for f in backbone(torch.from_numpy(batch))]
        else:
            maps, at = backbone(torch.from_numpy(batch), torch.from_numpy(masks.astype(np.uint8)))
            feats = [(f * m).sum(dim=(2, 3)) / m.sum(dim=(2, 3)).clamp_min(1.0) for f, m in zip(maps, at)]
        for j, f in enumerate(feats):
            pooled[j].append(f.double().cpu().numpy())
    targets = [GaussianTarget.fit(np.concatenate(p)) for p in pooled]
    report.seconds["averages"] = time.perf_counter() - t
    done = SavedSplit(split.mask, targets, np.stack(samples), rng.bit_generator.state, torch.get_rng_state(),
                      report.seconds["averages"], split.fit_mask, dict(report.split))
    if checkpoint is not None:
        checkpoint.save_split(done)
    return done


def training_faces(split: Split, config: FitConfig, report: FitReport):
    """The faces the flows train on: the fit faces, ``config.augment`` degraded copies of each (nn/augment.py)
    and ``config.framings`` framed copies of each (nn/framing.py; FitConfig.check allows them on a masked fit only)."""
    faces = split.fit
    if config.augment or config.masked:  # framed copies exist only on a masked fit
        faces = AugmentedRows(split.fit, config.augment, config.seed, split.fit_valid, config.framings, config.context)
    report.training_faces = len(faces)
    return faces


def cache_features(backbone, crops, config: FitConfig, progress: bool, report: FitReport | None = None) -> FeatureCache:
    """Backbone features of ``crops``, computed once in float16 (nn/feature_cache.py): the backbone is frozen,
    so every epoch reads them back instead of running it again. ``report``: where the cache lives, and the time.
    A masked fit (``crops`` an AugmentedRows with its masks) keeps each face's scored positions beside them."""
    t = time.perf_counter()
    cache = None
    try:
        for s in track(range(0, len(crops), config.batch_size), "features", enabled=progress):
            if config.masked and hasattr(crops, "with_valid"):
                batch, valid = crops.with_valid(slice(s, s + config.batch_size))
                feats, masks = backbone(torch.from_numpy(batch), torch.from_numpy(valid.astype(np.uint8)))
            else:
                feats, masks = backbone(torch.from_numpy(crops[s : s + config.batch_size])), None
            if cache is None:
                cache = FeatureCache([tuple(f.shape[1:]) for f in feats], len(crops), config.cache, config.cache_dir)
            cache.put(s, feats, masks)
    except BaseException:
        if cache is not None:
            cache.close()
        raise
    if report is not None:
        report.cache = {"where": cache.where, "bytes": cache.nbytes}
        report.seconds["features"] = time.perf_counter() - t
    return cache


def model_for(backbone, targets: list[GaussianTarget], flow: FlowConfig, device: torch.device) -> MuFlowModel:
    """Untrained flows (identity at start) over the fitted Gaussian targets."""
    model = MuFlowModel(backbone.channels, flow)
    for tgt, fitted in zip(model.targets, targets):
        tgt.load_state_dict(fitted.state_dict())
    return model.to(device)


def calibrate_model(backbone, flows: MuFlowModel, split: Split, config: FitConfig, report: FitReport,
                    device: torch.device, owner: np.ndarray | None = None) -> tuple[DeepfakeModel, np.ndarray]:
    """The trained parts as a model not yet calibrated, and its scores of the held-out reals.

    Those scores are the calibration: a new face's p-value is where its score falls among them. ``owner``: a
    native fit's face of each held-out row; their scores are pooled per face, as a scan pools them."""
    t = time.perf_counter()
    card = new_card(
        backbone=backbone, backbone_weights=config.backbone_weights,
        crop=CropSpec(config.crop_size, config.context, config.masked, config.native, config.pool),
        face_detector=detector_spec(config), flow=config.flow,
        calibration=CalibrationInfo(), training=TrainingInfo(),
    )
    scorer = DeepfakeModel(card, backbone, flows, Calibration(np.zeros(0))).to(device)
    flows.masked = config.masked
    face = None if owner is None else np.unique(owner, return_inverse=True)[1]  # each row's face, numbered from 0

    def pooled(scores: np.ndarray) -> np.ndarray:
        return scores if face is None else pool_scores(scores, face, int(face.max()) + 1, config.pool)

    scores = pooled(score_rows(scorer, split.calibration, config.batch_size, valid=split.calibration_valid,
                               min_inside=0.0 if config.native else MIN_INSIDE))
    report.calibration_mean = float(np.mean(scores)) if len(scores) else float("nan")
    report.tail = config.tail
    if config.tail == "auto":
        smooth = pooled(smooth_scores(scorer, split.calibration, config.batch_size, valid=split.calibration_valid,
                                      min_inside=0.0 if config.native else MIN_INSIDE))
        report.tail, report.tail_probe_auc = choose_tail(scores, smooth)
    report.seconds["calibration"] = time.perf_counter() - t
    return scorer, scores


def score_rows(scorer: DeepfakeModel, crops, batch_size: int, chunk: int = 256, valid=None, transform=None,
               min_inside: float = MIN_INSIDE) -> np.ndarray:
    """``scorer.score`` of ``crops`` (an array or Rows), read a chunk at a time: 20k held-out crops of a 100k-face fit
    are 4 GB. The chunk is a whole number of batches, so the batches, and the scores, are those of one call.
    ``transform``: applied to each crop as it is read (the tail probe's round trips); ``min_inside``: DeepfakeModel.score's."""
    chunk = max(1, chunk // batch_size) * batch_size
    out = []
    for i in range(0, len(crops), chunk):
        part = crops[i:i + chunk] if transform is None else np.stack([transform(c) for c in crops[i:i + chunk]])
        out.append(scorer.score(part, batch_size=batch_size, valid=valid[i:i + chunk] if valid is not None else None,
                                min_inside=min_inside)["score"])
    return np.concatenate(out) if out else np.zeros(0)


def smooth_scores(scorer: DeepfakeModel, crops, batch_size: int, chunk: int = 256, valid=None,
                  min_inside: float = MIN_INSIDE) -> np.ndarray:
    """Scores of PROBE_DOWNSCALE x bicubic round trips of ``crops`` (the tail probe), a chunk at a time
    so that a large calibration set is never held twice. ``valid``: the crops' pixel masks."""
    return score_rows(scorer, crops, batch_size, chunk, valid, lambda c: round_trip(c, 1 / PROBE_DOWNSCALE), min_inside)


def make_bundle(scorer: DeepfakeModel, scores: np.ndarray, split: Split, averaged: SavedSplit, groups: int,
                config: FitConfig, report: FitReport) -> DeepfakeModel:
    """The model to save: calibrated on ``scores``, its card saying how it was fitted, samples of the
    average and fit faces for `muflow info --html`; a warning when calibration is too small to say 'fake'."""
    calibration = CalibrationInfo(tail=report.tail, faces=len(scores), source="fit", group_by=config.group_by,
                                  tail_probe_auc=None if np.isnan(report.tail_probe_auc) else round(report.tail_probe_auc, 4),
                                  forward_fpr=report.forward_fpr, forward_faces=report.forward_faces, forward_at=FORWARD_FPR)
    detector = scorer.with_calibration(scores, calibration, replace(scorer.card, training=training_info(config, report, groups)))
    picks = np.linspace(0, len(split.fit) - 1, min(SAMPLE, len(split.fit)))
    face_sample = np.stack([thumbnail(split.fit[int(i)]) for i in picks])
    detector.extras = {"report.averages": torch.from_numpy(averaged.average_sample), "report.faces": torch.from_numpy(face_sample)}
    report.warnings += calibration_warnings(detector.calibration.min_p(), report)
    return detector


def check_forward(scores: np.ndarray, groups: np.ndarray, order: np.ndarray | None, report: FitReport) -> None:
    """The forward check (stats/drift.py) on the held-out faces: the rate at FORWARD_FPR on the later half of
    them when the earlier half calibrates — per sequence when the later part of each was held out."""
    found = forward_rate(scores, groups, order, report.split.get("kind") == "tails", FORWARD_FPR, report.tail)
    if found is not None:
        report.forward_fpr, report.forward_faces = round(found[0], 4), found[1]
        if report.forward_fpr > 2 * FORWARD_FPR:
            said = forward_text(CalibrationInfo(forward_fpr=report.forward_fpr, forward_faces=found[1]))
            report.warnings.append(f"the footage drifts: {said} before scanning new material")


def add_strata(model: DeepfakeModel, split: Split, sources: list[str] | None, config: FitConfig, report: FitReport,
               progress: bool) -> DeepfakeModel:
    """The model with calibration per processing stratum (pipelines/strata_calibration.py), built from the files
    of the held-out faces (a crop's own pixels, as an aligned image, when the fit has no files)."""
    t = time.perf_counter()
    if sources is not None:
        files = list(dict.fromkeys(sources[i] for i in np.flatnonzero(split.mask)))
        finding = config.faces
    else:  # only the crops the strata build samples are encoded (sample_sources: at most MAX_SOURCES)
        picked = sample_sources(range(len(split.calibration)))
        files, finding = crops_as_files(split.calibration[np.asarray(picked, np.int64)]), replace(config.faces, aligned="muflow")
    model = with_strata(model, files, finding, config.min_face_px, config.batch_size, progress=progress)
    report.strata = dict(model.card.calibration.strata)
    report.seconds["strata"] = time.perf_counter() - t
    return model


def calibration_warnings(min_p: float, report: FitReport) -> list[str]:
    """What the person who fits should know about the calibration: too few faces or too few sources, or
    one group that may have chained unrelated faces together."""
    out = calibration_cautions(report.calibration_faces, report.split.get("calibration_groups", 0), min_p)
    largest = report.split.get("largest_group", 0)
    if report.split.get("kind") == "groups" and largest > 0.5 * report.faces:
        out.append(f"one group holds {largest} of {report.faces} faces (--group-by {report.split.get('by', 'auto')}): "
                   "if they are not near-copies of each other, --group-by file or folder says so")
    return out


def training_info(config: FitConfig, report: FitReport, groups: int) -> TrainingInfo:
    """The card's account of the fit: when, on what, with which settings, and the losses."""
    return TrainingInfo(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"), seed=config.seed, images=report.files,
        skipped=dict(report.skipped), faces=report.faces, fit_faces=report.fit_faces,
        calibration_faces=report.calibration_faces, k=report.k, averages=report.averages, epochs=report.epochs,
        batch_size=config.batch_size, lr=config.lr, final_loss=report.losses[-1], losses=list(report.losses),
        groups=groups, calibration_mean_score=report.calibration_mean, min_face_px=config.min_face_px,
        group_by=config.group_by, augment=config.augment, framings=config.framings, data=config.data_note, precision=report.precision,
        split=report.split.get("kind", ""), calibration_groups=report.split.get("calibration_groups", 0),
        gap_faces=report.split.get("gap_faces", 0),
    )


def thumbnail(crop: np.ndarray) -> np.ndarray:
    """A crop downscaled to SAMPLE_PX (uint8), for the bundle's sample of faces."""
    return cv2.resize(np.ascontiguousarray(crop), (SAMPLE_PX, SAMPLE_PX), interpolation=cv2.INTER_AREA)
