"""Measure a detector on labelled folders: real sources vs fake sources, clean and perturbed.

Faces are found and scored exactly as ``scan`` does. Nothing here fits or chooses anything on
the fakes: the threshold is the model's (its calibration scores and ``--fpr``); the metrics only
measure. Metrics come from scikit-learn; 95 % intervals from a stratified percentile bootstrap
(reals and fakes resampled separately, seeded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .calibration import check_fpr, check_tail
from .deepfake_model import DeepfakeModel
from .errors import ConfigError
from .faces import check_face_finding
from .perturb import Perturbation
from .scan import ScanConfig, scan


@dataclass
class EvalConfig:
    fpr: float = 0.05
    tail: str | None = None  # None: the model's (calibration.resolve)
    bootstrap: int = 1000
    seed: int = 0
    batch_size: int | None = None  # None: by device
    aligned: str | None = None  # each image is one aligned face in this convention (faces.ALIGNED_CONVENTIONS)
    min_face: float = 0.0

    def check(self) -> None:
        check_fpr(self.fpr)
        check_tail(self.tail)
        check_face_finding(None, self.aligned, self.min_face)
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
        if n_boot:
            out["ci95"] = bootstrap_ci(y, score, n_boot, rng)
    out["tpr_at_threshold"] = float(flagged[y == 1].mean()) if len(fakes) else float("nan")
    out["fpr_at_threshold"] = float(flagged[y == 0].mean()) if len(reals) else float("nan")
    out["accuracy_at_threshold"] = float(((flagged == (y == 1))).mean()) if len(y) else float("nan")
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

    The clean run (no perturbation) is always measured first: every perturbed number needs it beside it."""
    config.check()
    perturbations = [Perturbation("none")] + [p for p in perturbations if p.kind != "none"]
    scan_config = ScanConfig(fpr=config.fpr, tail=config.tail, batch_size=config.batch_size, aligned=config.aligned,
                             min_face=config.min_face)
    frames = []
    for pert in perturbations:
        for label, sources in ((0, reals), (1, fakes)):
            for name, path in sources:
                df = scan([path], model, scan_config, progress=progress, transform=pert)
                df.insert(0, "perturbation", pert.name)
                df.insert(1, "source", name)
                df.insert(2, "label", "fake" if label else "real")
                frames.append(df)
    scores = pd.concat(frames, ignore_index=True)
    rng = np.random.default_rng(config.seed)
    metrics = []
    for pert in perturbations:
        rows = scores[(scores["perturbation"] == pert.name) & (scores["status"] == "ok")]
        real_rows = rows[rows["label"] == "real"]
        groups = [(n, rows[(rows["label"] == "fake") & (rows["source"] == n)]) for n, _ in fakes]
        if len(fakes) > 1:
            groups.append(("all", rows[rows["label"] == "fake"]))
        for name, fake_rows in groups:
            m = {"perturbation": pert.name, "fake_source": name}
            m.update(source_metrics(real_rows, fake_rows, config.fpr, config.bootstrap, rng))
            metrics.append(m)
    return scores, metrics


def write_outputs(scores: pd.DataFrame, metrics: list[dict], model: DeepfakeModel, config: EvalConfig, out: Path) -> list[Path]:
    """metrics.json, scores.csv and PNG plots (ROC per source, score histograms with the thresholds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .tables import atomic_write, write_table

    out.mkdir(parents=True, exist_ok=True)
    tail = model.calibration.resolve(config.tail)
    low, high = model.calibration.cutoffs(config.fpr, tail)
    doc = {"model": model.tensors_sha256, "tail": tail, "fpr": config.fpr,
           "score_cutoffs": {"low": low, "high": high}, "bootstrap": config.bootstrap, "seed": config.seed, "metrics": metrics}
    atomic_write(out / "metrics.json", lambda p: Path(p).write_text(json.dumps(doc, indent=2) + "\n"))
    write_table(scores, out / "scores.csv", "csv")
    written = [out / "metrics.json", out / "scores.csv"]
    ok = scores[scores["status"] == "ok"]
    for pert, rows in ok.groupby("perturbation", sort=False):
        slug = pert.replace(":", "_")
        reals = rows[rows["label"] == "real"]
        fig, ax = plt.subplots(figsize=(5, 5))
        for name, fake in rows[rows["label"] == "fake"].groupby("source", sort=False):
            if len(reals) and len(fake):
                y = np.r_[np.zeros(len(reals)), np.ones(len(fake))]
                fpr, tpr, _ = roc_curve(y, np.r_[reals["score"], fake["score"]])
                ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, np.r_[reals['score'], fake['score']]):.3f})")
        ax.plot([0, 1], [0, 1], ls=":", c="grey")
        ax.set(xlabel="false positive rate (reals)", ylabel="true positive rate (fakes)", title=f"ROC, score, {pert}")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"roc_{slug}.png", dpi=110)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(7, 4))
        bins = np.histogram_bin_edges(rows["score"].astype(float), bins=40)
        ax.hist(reals["score"].astype(float), bins=bins, alpha=0.6, density=True, label="real")
        for name, fake in rows[rows["label"] == "fake"].groupby("source", sort=False):
            ax.hist(fake["score"].astype(float), bins=bins, alpha=0.5, density=True, label=str(name))
        for cut in (low, high):
            if cut is not None and np.isfinite(cut):
                ax.axvline(cut, c="k", ls="--", lw=1)
        ax.set(xlabel="score (NLL, nats/dim)", ylabel="density", title=f"scores, {pert} (dashed: fpr {config.fpr:g} {tail}-sided)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"hist_{slug}.png", dpi=110)
        plt.close(fig)
        written += [out / f"roc_{slug}.png", out / f"hist_{slug}.png"]
    return written
