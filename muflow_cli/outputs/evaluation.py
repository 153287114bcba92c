"""What ``muflow eval`` writes: metrics.json, scores.csv and PNG plots per perturbation (ROC per
fake source, score histograms with the model's cutoffs). The measuring is pipelines/evaluate.py;
the folder's index.html is report.write_eval_index.

Plots are matplotlib figures drawn without pyplot (no global state, no GUI backend).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from muflow_cli.inputs.atomic import atomic_write
from muflow_cli.outputs.tables import write_table

if TYPE_CHECKING:
    from muflow_cli.model.deepfake_model import DeepfakeModel
    from muflow_cli.pipelines.evaluate import EvalConfig


def write_outputs(scores: pd.DataFrame, metrics: list[dict], model: DeepfakeModel, config: EvalConfig, out: Path,
                  provenance: list[dict] | None = None) -> list[Path]:
    """metrics.json, scores.csv and PNG plots (ROC per source, score histograms with the thresholds); with
    ``provenance`` (evaluate.provenance_by_source), metrics.json also says what the files say about themselves."""
    out.mkdir(parents=True, exist_ok=True)
    tail = model.calibration.resolve(config.tail)
    low, high = model.calibration.cutoffs(config.fpr, tail)
    doc = {"model": model.tensors_sha256, "tail": tail, "fpr": config.fpr,
           "score_cutoffs": {"low": low, "high": high}, "bootstrap": config.bootstrap, "seed": config.seed, "metrics": metrics}
    if provenance:
        doc["provenance"] = provenance
    atomic_write(out / "metrics.json", lambda p: Path(p).write_text(json.dumps(doc, indent=2) + "\n"))
    write_table(scores, out / "scores.csv", "csv")
    written = [out / "metrics.json", out / "scores.csv"]
    ok = scores[scores["status"] == "ok"]
    for pert, rows in ok.groupby("perturbation", sort=False):
        slug = pert.replace(":", "_")
        reals = rows[rows["label"] == "real"]
        fig = Figure(figsize=(5, 5))
        ax = fig.add_subplot()
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
        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
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
        written += [out / f"roc_{slug}.png", out / f"hist_{slug}.png"]
    return written
