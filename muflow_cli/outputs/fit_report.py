"""A self-contained HTML report of a fitted model (``muflow fit --html``, ``muflow info --html``).

It shows what the card and the bundle hold: a grid of average faces beside a sample of the
fit faces (bundles written since the sample was added: ``report.averages``/``report.faces``),
the training loss per epoch (or the final loss only, for cards without the curve), the
calibration scores' histogram with the two-sided cutoffs at 5 % and 1 %, the smallest
attainable p-value, and what the model was fitted on. Images are PNG data URIs, charts are
inline SVG (charts.py); the page is the template ``fit.html.j2``, which escapes every value and
carries the Content-Security-Policy of every report (pages.py).
"""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import numpy as np

from muflow_cli.inputs.images import encode_image
from muflow_cli.outputs.charts import histogram, line_chart
from muflow_cli.outputs.pages import now, render

FPRS = (0.05, 0.01)
CUT_COLOURS = {0.05: "#d97706", 0.01: "#b91c1c"}


def _png_uris(images: Any) -> list[str] | None:
    if images is None:
        return None
    return ["data:image/png;base64," + base64.b64encode(encode_image(np.asarray(im), "png")).decode("ascii") for im in images.numpy()]


def _num(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)


class ReportModel:
    """What the report reads from a bundle, without building the backbone (its weights may not be here)."""

    def __init__(self, card, calibration, extras: dict, tensors_sha256: str | None) -> None:
        self.card, self.calibration, self.extras, self.tensors_sha256 = card, calibration, extras, tensors_sha256

    @classmethod
    def load(cls, path: Path) -> "ReportModel":
        from muflow_cli.model.bundle import read_bundle
        from muflow_cli.stats.calibration import Calibration

        card, tensors, sha = read_bundle(Path(path))
        extras = {k: v for k, v in tensors.items() if k.startswith("report.")}
        return cls(card, Calibration(tensors["calibration"].numpy(), card.calibration.tail), extras, sha)


def fit_report_html(model, name: str, seconds: dict[str, float] | None = None) -> str:
    """The report of ``model`` (a DeepfakeModel or a ReportModel) as one HTML string; ``seconds``: the fit's stage times."""
    card, tr, cal = model.card, model.card.training, model.calibration
    losses = [float(v) for v in tr.losses or ()]
    cuts = {fpr: cal.cutoffs(fpr, "two") for fpr in FPRS}
    lines = [(v, CUT_COLOURS[fpr], f"{fpr:.0%}") for fpr, pair in cuts.items() for v in pair if v is not None]
    calibration = [("calibration faces", len(cal)), ("source", card.calibration.source), ("default tail", cal.tail),
                   ("smallest attainable p-value (default tail)", f"{cal.min_p():.4g}"),
                   ("smallest attainable p-value (two-sided)", f"{cal.min_p('two'):.4g}")]
    for fpr, (lo, hi) in cuts.items():
        calibration.append((f"two-sided cutoffs at {fpr:.0%}",
                            f"fake below {_num(lo) if lo is not None else '— (never)'} or above {_num(hi) if hi is not None else '— (never)'}"))
    skipped = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in tr.skipped.items()) or "none"
    fitted = [("image files", tr.images), ("skipped", skipped), ("faces", tr.faces),
              ("fit / calibration faces", f"{tr.fit_faces} / {tr.calibration_faces}"),
              ("groups (" + tr.group_by + ")", tr.groups or "not recorded"), ("seed", tr.seed), ("date", tr.date or "not recorded")]
    if seconds:
        fitted.append(("time", " ".join(f"{k} {v:.0f} s" for k, v in seconds.items())))
    flow = ", ".join(f"{k} {v}" for k, v in vars(card.flow).items()) if hasattr(card.flow, "__dict__") else str(card.flow)
    settings = [
        ("average faces (k crops each)", f"{tr.averages} ({tr.k})"), ("epochs", tr.epochs), ("batch size", tr.batch_size),
        ("learning rate", tr.lr), ("augmented copies per face", tr.augment), ("training precision", tr.precision), ("smallest face (px)", tr.min_face_px),
        ("crop", card.crop.words()),
        ("face detector", f"{card.face_detector.kind} (threshold {card.face_detector.threshold})"),
        ("backbone", f"{card.backbone.name}, taps {list(card.backbone.taps)}, weights {card.backbone.weights}"),
        ("flow", flow), ("calibration mean score", _num(float(tr.calibration_mean_score))),
    ]
    return render(
        "fit.html.j2", title=f"muflow model: {name}", when=now(), tr=tr, version=card.muflow_version or "?",
        sha256=str(model.tensors_sha256 or "not saved yet"),
        averages=_png_uris(model.extras.get("report.averages")), faces=_png_uris(model.extras.get("report.faces")),
        loss_chart=line_chart(range(1, len(losses) + 1), losses, label="training loss per epoch", xlabel="epoch",
                              ylabel="loss (nats/dim)", integer_x=True, size=(520, 220)) if losses else None,
        final_loss=_num(losses[-1] if losses else float(tr.final_loss)),
        histogram=histogram(cal.scores, label="calibration score histogram", lines=lines,
                            xlabel="calibration scores of held-out real faces") if len(cal) else None,
        calibration=calibration, fitted=fitted, settings=settings)


def write_fit_report(model, path: Path, name: str, seconds: dict[str, float] | None = None) -> Path:
    """Write the report of ``model`` to ``path``, atomically."""
    from muflow_cli.inputs.atomic import atomic_write

    text = fit_report_html(model, name, seconds)
    atomic_write(Path(path), lambda p: Path(p).write_text(text, encoding="utf-8"))
    return Path(path)
