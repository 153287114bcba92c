"""Re-calibrate a fitted model on the user's own real faces, without refitting the flows.

A model's verdicts are only as good as its calibration faces: a conformal p-value is valid for
faces exchangeable with them. A model fitted on one source flags most reals from another
(the bundled model flags about two thirds of other-source reals). Refitting takes minutes to
hours; re-calibrating only scores the user's reals — as fast as a scan — and stores their sorted
scores. The flows, the Gaussians and therefore the scores of every face stay exactly as they were;
only p-values and verdicts change.

Faces are found and scored exactly as ``scan`` does. With enough groups (by default near-duplicate faces
— frames of a clip, shots of a burst, re-saved copies — are one group: pipelines/grouping.py; files or
folders with ``group_by``), a held-out check reports the false-positive rate each fold of groups gets
when the others calibrate: the user sees, on their own data, whether the promised rate holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from muflow_cli.choices import GROUP_UNITS
from muflow_cli.errors import ConfigError, MuflowError
from muflow_cli.faces.options import FaceFinding
from muflow_cli.inputs.files import GROUP_BY
from muflow_cli.inputs.images import iter_image_files
from muflow_cli.model.card import CalibrationInfo
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.grouping import face_groups
from muflow_cli.pipelines.scan import ScanChunk, ScanConfig, scan
from muflow_cli.pipelines.strata_calibration import with_strata
from muflow_cli.stats.calibration import Calibration, check_fpr, check_tail
from muflow_cli.stats.near_duplicates import Fingerprints, fingerprint

MIN_FACES = 20


class CalibrateError(MuflowError):
    """Too few usable real faces to calibrate on."""


@dataclass
class CalibrateConfig:
    tail: str | None = None  # None: keep the model's
    group_by: str = "auto"  # unit of the held-out check (pipelines/grouping.py): a group's faces stay together
    fpr: float = 0.05  # the rate the held-out check measures
    folds: int = 5
    min_face_px: float = 24.0  # as for fitting: smaller faces are mostly interpolation
    faces: FaceFinding = field(default_factory=FaceFinding)  # None fields: the model's
    batch_size: int | None = None
    workers: int = 0
    strata: bool = True  # also calibrate per processing stratum (the photos re-saved and shrunk: pipelines/strata_calibration.py)

    def check(self) -> None:
        check_tail(self.tail)
        check_fpr(self.fpr)
        if self.group_by not in GROUP_BY:
            raise ConfigError(f"group_by must be one of {', '.join(GROUP_BY)}")
        if self.folds < 2:
            raise ConfigError("folds must be at least 2")
        self.faces.check()


@dataclass
class CalibrateReport:
    files: int = 0
    faces: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    groups: int = 0
    previous_faces: int = 0  # calibration faces the model had before
    min_p: float = float("nan")
    heldout_fpr: float | None = None  # share of held-out faces flagged at config.fpr (None: too few groups)
    heldout_faces: int = 0
    strata: dict[str, int] = field(default_factory=dict)  # calibration faces per processing stratum
    warnings: list[str] = field(default_factory=list)


def heldout_fpr(scores: np.ndarray, groups: np.ndarray, fpr: float, tail: str, folds: int, seed: int = 0) -> tuple[float, int] | None:
    """Cross-conformal check: each fold of whole groups is scored against the others' calibration.

    Returns (share flagged at ``fpr``, faces counted), or None with fewer groups than folds. Only folds
    whose calibration can reach ``fpr`` at all count (a few dozen faces are needed for that)."""
    ids = np.unique(groups)
    if len(ids) < folds:
        return None
    fold_of = dict(zip(np.random.default_rng(seed).permutation(ids), np.arange(len(ids)) % folds))
    fold = np.array([fold_of[g] for g in groups])
    flagged = counted = 0
    for k in range(folds):
        cal = Calibration(scores[fold != k], tail)
        if cal.min_p() > fpr:
            continue
        p = cal.p_values(scores[fold == k])
        flagged += cal.verdicts(p, fpr).count("fake")
        counted += len(p)
    return (flagged / counted, counted) if counted else None


def calibrate(
    paths: list[Path], model: DeepfakeModel, config: CalibrateConfig = CalibrateConfig(), progress: bool = True
) -> tuple[DeepfakeModel, CalibrateReport]:
    """The model with its calibration scores replaced by those of the real faces under ``paths``."""
    config.check()
    prints: dict[tuple[str, int], Fingerprints] = {}

    def keep_prints(chunk: ScanChunk) -> None:
        """Fingerprints of each face as it is scored (``auto`` grouping needs what the faces show)."""
        faces = [(r["file"], int(r["face"])) for r in chunk.rows if r.get("face") is not None]
        if config.group_by == "auto" and chunk.crops:
            found = fingerprint(chunk.crops)
            prints.update((key, found[i:i + 1]) for i, key in enumerate(faces))

    scan_config = ScanConfig(batch_size=config.batch_size, faces=config.faces, workers=config.workers, stability=False)
    table = scan(paths, model, scan_config, progress=progress, observer=keep_prints)
    report = CalibrateReport(files=int(table["file"].nunique()), previous_faces=len(model.calibration))
    ok = table[table["status"] == "ok"]
    small = ok["face_px"].astype(float) < config.min_face_px
    report.skipped = {k: int(v) for k, v in table.loc[table["status"] != "ok", "status"].value_counts().items()}
    if small.any():
        report.skipped["small_face"] = int(small.sum())
    unscored = ok["score"].isna() & ~small  # too little of the face inside its photo (a masked model)
    if unscored.any():
        report.skipped["not_scored"] = int(unscored.sum())
    faces = ok[~small & ~unscored]
    report.faces = len(faces)
    if report.faces < MIN_FACES:
        raise CalibrateError(
            f"found {report.faces} usable real faces; calibrating needs at least {MIN_FACES} (a few hundred give "
            f"p-values that can rank). Skipped: {report.skipped or 'none'}"
        )
    files = faces["file"].astype(str).tolist()
    kept = None
    if config.group_by == "auto":
        kept = Fingerprints.concat([prints[(f, int(i))] for f, i in zip(files, faces["face"])])
    groups = face_groups(files, config.group_by, kept)[0]
    report.groups = len(np.unique(groups))
    scores = faces["score"].to_numpy(float)
    tail = model.calibration.resolve(config.tail)
    check = heldout_fpr(scores, groups, config.fpr, tail, config.folds)
    if check is not None:
        report.heldout_fpr, report.heldout_faces = check
    info = CalibrationInfo(tail=tail, faces=report.faces, source="calibrate", files=report.files, group_by=config.group_by,
                           date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           tail_probe_auc=model.card.calibration.tail_probe_auc if tail == model.calibration.tail else None)
    new = model.with_calibration(scores, info)
    if config.strata:
        new = with_strata(new, list(iter_image_files(paths)), config.faces, config.min_face_px, config.batch_size or 16,
                          config.workers, progress)
    report.strata = dict(new.card.calibration.strata)
    report.min_p = new.calibration.min_p()
    if report.min_p > config.fpr:
        report.warnings.append(f"only {report.faces} faces: the smallest p-value is {report.min_p:.3f}, "
                               f"so verdicts at fpr {config.fpr:g} cannot say 'fake'; add more real faces")
    if report.groups < 10:
        report.warnings.append(f"the faces come from {report.groups} {GROUP_UNITS[config.group_by]}: p-values are valid for faces "
                               "like these; photos of other sources may still look unusual")
    return new, report
