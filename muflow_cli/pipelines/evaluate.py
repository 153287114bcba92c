"""Measure a detector on labelled folders: real sources vs fake sources, clean and perturbed.

Faces are found and scored exactly as ``scan`` does. Nothing here fits or chooses anything on
the fakes: the threshold is the model's (its calibration scores and ``--fpr``); the metrics only
measure. Metrics come from scikit-learn; 95 % intervals from a stratified percentile bootstrap
(reals and fakes resampled separately, seeded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from muflow_cli.errors import ConfigError
from muflow_cli.faces.face import valid_masks
from muflow_cli.faces.options import FaceFinding
from muflow_cli.inputs.perturb import Perturbation
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.scan import ScanConfig, scan
from muflow_cli.pipelines.schema import provenance_counts
from muflow_cli.pipelines.verdicts import apply_fdr
from muflow_cli.stats.calibration import check_fdr, check_fpr, check_tail


@dataclass
class EvalConfig:
    fpr: float = 0.05
    tail: str | None = None  # None: the model's (calibration.resolve)
    bootstrap: int = 1000
    seed: int = 0
    batch_size: int | None = None  # None: by device
    faces: FaceFinding = field(default_factory=FaceFinding)  # None fields: the model's
    provenance: bool = True  # read each file's provenance (once, on the clean run; perturbations change pixels, not files)
    parts: bool = False  # also the score's parts per face (part_face, part_residual, part_logdet; torch) and their AUCs
    fdr: float | None = None  # verdicts by Benjamini-Hochberg over each perturbation's run (reals and fakes together)

    def check(self) -> None:
        check_fpr(self.fpr)
        check_fdr(self.fdr)
        check_tail(self.tail)
        self.faces.check()
        if self.bootstrap < 0 or (self.batch_size is not None and self.batch_size < 1):
            raise ConfigError("bootstrap must be at least 0 and batch_size at least 1")


def parse_source(spec: str) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR`` (named after the folder)."""
    name, sep, path = spec.partition("=")
    if sep and name and path:
        return name, Path(path)
    p = Path(spec)
    return (p.name or str(p)), p


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def _eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    i = int(np.argmin(np.abs(fpr - (1 - tpr))))
    return float((fpr[i] + 1 - tpr[i]) / 2)


def curve_metrics(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """AUC, AP, EER, TPR at FPR 1 % / 5 % of statistic ``s`` (higher = fake) on labels ``y``."""
    fpr, tpr, _ = roc_curve(y, s)
    return {
        "auc": float(roc_auc_score(y, s)),
        "ap": float(average_precision_score(y, s)),
        "eer": _eer(fpr, tpr),
        "tpr_at_fpr_1": _tpr_at(fpr, tpr, 0.01),
        "tpr_at_fpr_5": _tpr_at(fpr, tpr, 0.05),
    }


def bootstrap_ci(y: np.ndarray, s: np.ndarray, n: int, rng: np.random.Generator) -> dict[str, list[float]]:
    """Stratified percentile bootstrap: 95 % interval of each of :func:`curve_metrics`."""
    real, fake = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    draws: dict[str, list[float]] = {}
    for _ in range(n):
        idx = np.concatenate([rng.choice(real, len(real)), rng.choice(fake, len(fake))])
        for k, v in curve_metrics(y[idx], s[idx]).items():
            draws.setdefault(k, []).append(v)
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in draws.items()}


def source_metrics(reals: pd.DataFrame, fakes: pd.DataFrame, fpr: float, n_boot: int, rng: np.random.Generator) -> dict:
    """Every metric for one set of reals against one set of fakes (face rows with scores)."""
    y = np.r_[np.zeros(len(reals)), np.ones(len(fakes))]
    score = np.r_[reals["score"], fakes["score"]].astype(float)
    decision = -np.r_[reals["p_value"], fakes["p_value"]].astype(float)  # the model's own statistic
    flagged = np.r_[reals["verdict"] == "fake", fakes["verdict"] == "fake"]
    out: dict = {"n_real": int(len(reals)), "n_fake": int(len(fakes))}
    out["fakes_side"] = "higher" if np.median(fakes["score"]) > np.median(reals["score"]) else "lower"
    if len(reals) and len(fakes):
        out.update(curve_metrics(y, score))
        out["auc_decision"] = float(roc_auc_score(y, decision))
        for part in PART_COLUMNS:  # each part alone, higher = fake (with --parts)
            if part in reals and part in fakes:
                out[f"auc_{part}"] = float(roc_auc_score(y, np.r_[reals[part], fakes[part]].astype(float)))
        if n_boot:
            out["ci95"] = bootstrap_ci(y, score, n_boot, rng)
    out["tpr_at_threshold"] = float(flagged[y == 1].mean()) if len(fakes) else float("nan")
    out["fpr_at_threshold"] = float(flagged[y == 0].mean()) if len(reals) else float("nan")
    out["accuracy_at_threshold"] = float(((flagged == (y == 1))).mean()) if len(y) else float("nan")
    # An inconclusive face counts as not flagged above; here, how often a verdict was given, and how good it was.
    conclusive = np.r_[reals["verdict"] != "inconclusive", fakes["verdict"] != "inconclusive"].astype(bool)
    out["coverage_real"] = float(conclusive[y == 0].mean()) if len(reals) else float("nan")
    out["coverage_fake"] = float(conclusive[y == 1].mean()) if len(fakes) else float("nan")
    out["accuracy_conclusive"] = float((flagged == (y == 1))[conclusive].mean()) if conclusive.any() else float("nan")
    # What --fdr bounds: the share of flagged faces that are real (it depends on the mix of reals and fakes given).
    out["fdp_at_threshold"] = float((y[flagged] == 0).mean()) if flagged.any() else float("nan")
    out["nominal_fpr"] = fpr
    return out


def evaluate(
    reals: list[tuple[str, Path]],
    fakes: list[tuple[str, Path]],
    model: DeepfakeModel,
    perturbations: list[Perturbation],
    config: EvalConfig = EvalConfig(),
    progress: bool = True,
) -> tuple[pd.DataFrame, list[dict]]:
    """(scores table of every file and face, metrics rows: one per perturbation and fake source, plus 'all').

    The clean run (no perturbation) is always measured first: every perturbed number needs it beside it.
    With ``config.fdr`` the verdicts are Benjamini-Hochberg's over all reals and fakes of one perturbation.
    Each file's provenance is read on the clean run and copied to its perturbed rows (a perturbation
    changes the pixels, not what the file says about itself)."""
    config.check()
    if config.parts and model.native:  # the parts are of one crop a face; a native face's are pooled tiles
        raise ConfigError("--parts is measured for models with one aligned crop a face, not native-resolution ones")
    perturbations = [Perturbation("none")] + [p for p in perturbations if p.kind != "none"]
    frames = []
    read: dict[str, tuple] = {}  # file -> (provenance, provenance_detail), from the clean run
    for pert in perturbations:
        clean = pert.kind == "none"
        scan_config = ScanConfig(fpr=config.fpr, tail=config.tail, batch_size=config.batch_size, faces=config.faces,
                                 provenance=config.provenance and clean)
        for label, sources in ((0, reals), (1, fakes)):
            for name, path in sources:
                found: dict[tuple[str, int], np.ndarray] = {}
                observer = (lambda chunk, found=found: _keep_parts(model, chunk, found)) if config.parts else None
                df = scan([path], model, scan_config, progress=progress, transform=pert, observer=observer)
                if config.parts:
                    keys = list(zip(df["file"].astype(str), df["face"].fillna(-1).astype(int)))
                    for k, part in enumerate(PART_COLUMNS):
                        df[part] = pd.array([found[key][k] if key in found else np.nan for key in keys], dtype="Float64")
                if clean:
                    first = df.drop_duplicates("file")
                    read.update(zip(first["file"], zip(first["provenance"], first["provenance_detail"])))
                else:
                    for k, column in enumerate(("provenance", "provenance_detail")):
                        df[column] = df["file"].map(lambda f, k=k: read.get(f, (None, None))[k]).astype("string")
                df.insert(0, "perturbation", pert.name)
                df.insert(1, "source", name)
                df.insert(2, "label", "fake" if label else "real")
                frames.append(df)
    scores = pd.concat(frames, ignore_index=True)
    if config.fdr is not None:  # one run per perturbation, as a user would scan one folder of these reals and fakes
        scores = pd.concat([apply_fdr(rows.copy(), config.fdr) for _, rows in scores.groupby("perturbation", sort=False)])
    rng = np.random.default_rng(config.seed)
    metrics = []
    for pert in perturbations:
        # faces a masked model could not score (too little inside the photo) have no score to rank
        rows = scores[(scores["perturbation"] == pert.name) & (scores["status"] == "ok") & scores["score"].notna()]
        real_rows = rows[rows["label"] == "real"]
        groups = [(n, rows[(rows["label"] == "fake") & (rows["source"] == n)]) for n, _ in fakes]
        if len(fakes) > 1:
            groups.append(("all", rows[rows["label"] == "fake"]))
        for name, fake_rows in groups:
            m = {"perturbation": pert.name, "fake_source": name}
            m.update(source_metrics(real_rows, fake_rows, config.fpr, config.bootstrap, rng))
            metrics.append(m)
    return scores, metrics


PART_COLUMNS = ("part_face", "part_residual", "part_logdet")


def _keep_parts(model: DeepfakeModel, chunk, found: dict) -> None:
    """The score's parts of one scanned chunk's faces (DeepfakeModel.score_parts), by (file, face)."""
    rows = [r for r in chunk.rows if r.get("face") is not None]
    if not rows:
        return None
    faces = [f for res in (chunk.files or []) if res.status == "ok" for f in res.faces]
    parts = model.score_parts(np.stack(chunk.crops), valid_masks(faces) if faces else None)
    for k, r in enumerate(rows):
        found[(r["file"], int(r["face"]))] = [parts[p.removeprefix("part_")][k] for p in PART_COLUMNS]
    return None


def provenance_by_source(scores: pd.DataFrame) -> list[dict]:
    """Files per provenance kind for each source of the clean run (label, source, counts): what the files
    say about themselves beside what the detector measured on them."""
    clean = scores[scores["perturbation"] == "none"]
    return [{"label": label, "source": source, "files": provenance_counts(rows)}
            for (label, source), rows in clean.groupby(["label", "source"], sort=False)]
