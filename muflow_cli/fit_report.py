"""A self-contained HTML report of a fitted model (``muflow fit --html``, ``muflow info --html``).

It shows what the card and the bundle hold: a grid of average faces beside a sample of the
fit faces (bundles written since the sample was added: ``report.averages``/``report.faces``),
the training loss per epoch (or the final loss only, for cards without the curve), the
calibration scores' histogram with the two-sided cutoffs at 5 % and 1 %, the smallest
attainable p-value, and what the model was fitted on. Images are PNG data URIs, charts are
inline SVG, every string is HTML-escaped, and a Content-Security-Policy forbids anything
from outside, as in the scan report (report.py).
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#111;max-width:1100px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px} .muted{color:#555;font-size:13px}
table{border-collapse:collapse;font-size:13px} td,th{border-bottom:1px solid #eee;padding:4px 8px;text-align:left}
.pair{display:flex;gap:32px;flex-wrap:wrap} .pair>div{width:336px} .grid{display:grid;grid-template-columns:repeat(4,80px);gap:4px}
.grid img{width:80px;height:80px;image-rendering:auto} svg{background:#fafafa;border:1px solid #eee}
"""
FPRS = (0.05, 0.01)
CUT_COLOURS = {0.05: "#d97706", 0.01: "#b91c1c"}


def _png_uri(rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _grid(images: Any, alt: str) -> str:
    e = html.escape
    return "<div class='grid'>" + "".join(f"<img alt='{e(alt)}' src='{e(_png_uri(np.asarray(im)))}'>" for im in images) + "</div>"


def _num(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)


def loss_svg(losses: list[float], width: int = 520, height: int = 220) -> str:
    """The loss per epoch as an inline SVG polyline with its axes' end values."""
    e = html.escape
    pad = 44
    lo, hi = min(losses), max(losses)
    span = (hi - lo) or 1.0
    n = len(losses)
    xs = [pad + (width - 2 * pad) * (i / max(n - 1, 1)) for i in range(n)]
    ys = [height - pad - (height - 2 * pad) * ((v - lo) / span) for v in losses]
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
    dots = "".join(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.5' fill='#2563eb'/>" for x, y in zip(xs, ys))
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' aria-label='training loss per epoch'>"
        f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' stroke='#999'/>"
        f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{height - pad}' stroke='#999'/>"
        f"<polyline fill='none' stroke='#2563eb' stroke-width='2' points='{points}'/>{dots}"
        f"<text x='4' y='{pad + 4}' font-size='11'>{e(_num(hi))}</text><text x='4' y='{height - pad}' font-size='11'>{e(_num(lo))}</text>"
        f"<text x='{pad}' y='{height - pad + 16}' font-size='11'>epoch 1</text>"
        f"<text x='{width - pad - 40}' y='{height - pad + 16}' font-size='11'>epoch {n}</text>"
        f"<text x='{width / 2 - 60:.0f}' y='{height - 8}' font-size='12'>loss (nats/dim) per epoch</text></svg>"
    )


def histogram_svg(scores: np.ndarray, cuts: dict[float, tuple[float | None, float | None]], width: int = 520, height: int = 220) -> str:
    """Calibration scores as an inline SVG histogram, with a vertical line at each cutoff."""
    e = html.escape
    pad = 44
    values = [v for pair in cuts.values() for v in pair if v is not None]
    lo = min([float(scores.min()), *values])
    hi = max([float(scores.max()), *values])
    if hi <= lo:
        hi = lo + 1.0
    bins = int(min(40, max(8, math.sqrt(len(scores)) * 2)))
    counts, edges = np.histogram(scores, bins=bins, range=(lo, hi))
    top = max(int(counts.max()), 1)
    x = lambda v: pad + (width - 2 * pad) * (v - lo) / (hi - lo)  # noqa: E731
    bars = "".join(
        f"<rect x='{x(a):.1f}' y='{height - pad - (height - 2 * pad) * c / top:.1f}' width='{max(x(b) - x(a) - 1, 1):.1f}' "
        f"height='{(height - 2 * pad) * c / top:.1f}' fill='#64748b'/>"
        for a, b, c in zip(edges[:-1], edges[1:], counts)
    )
    lines = ""
    for fpr, pair in cuts.items():
        for v in pair:
            if v is not None:
                lines += (f"<line x1='{x(v):.1f}' y1='{pad - 10}' x2='{x(v):.1f}' y2='{height - pad}' stroke='{CUT_COLOURS[fpr]}' "
                          f"stroke-width='2' stroke-dasharray='5,3'/><text x='{x(v) + 3:.1f}' y='{pad - 12}' font-size='11' "
                          f"fill='{CUT_COLOURS[fpr]}'>{e(f'{fpr:.0%}')}</text>")
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' aria-label='calibration score histogram'>"
        f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' stroke='#999'/>{bars}{lines}"
        f"<text x='{pad}' y='{height - pad + 16}' font-size='11'>{e(_num(lo))}</text>"
        f"<text x='{width - pad - 30}' y='{height - pad + 16}' font-size='11'>{e(_num(hi))}</text>"
        f"<text x='4' y='{pad + 4}' font-size='11'>{top}</text>"
        f"<text x='{width / 2 - 90:.0f}' y='{height - 8}' font-size='12'>calibration scores of held-out real faces</text></svg>"
    )


def _table(rows: list[tuple[str, Any]]) -> str:
    e = html.escape
    return "<table>" + "".join(f"<tr><th>{e(str(a))}</th><td>{e(str(b))}</td></tr>" for a, b in rows) + "</table>"


class ReportModel:
    """What the report reads from a bundle, without building the backbone (its weights may not be here)."""

    def __init__(self, card, calibration, extras: dict, tensors_sha256: str | None) -> None:
        self.card, self.calibration, self.extras, self.tensors_sha256 = card, calibration, extras, tensors_sha256

    @classmethod
    def load(cls, path: Path) -> "ReportModel":
        from .bundle import read_bundle
        from .calibration import Calibration

        card, tensors, sha = read_bundle(Path(path))
        extras = {k: v for k, v in tensors.items() if k.startswith("report.")}
        return cls(card, Calibration(tensors["calibration"].numpy(), card.calibration.tail), extras, sha)


def fit_report_html(model, name: str, seconds: dict[str, float] | None = None) -> str:
    """The report of ``model`` (a DeepfakeModel or a ReportModel) as one HTML string; ``seconds``: the fit's stage times."""
    e = html.escape
    card, tr, cal = model.card, model.card.training, model.calibration
    title = f"muflow model: {name}"
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1><div class='muted'>report written {e(datetime.now(timezone.utc).isoformat(timespec='seconds'))}; "
        f"model fitted {e(tr.date or 'at an unknown date')} by muflow {e(card.muflow_version or '?')}; "
        f"tensors sha256 {e(str(model.tensors_sha256 or 'not saved yet'))}</div>",
    ]
    if tr.data:
        out.append(f"<p>{e(tr.data)}</p>")

    out.append("<h2>Average faces and fit faces</h2>")
    averages, faces = model.extras.get("report.averages"), model.extras.get("report.faces")
    if averages is None and faces is None:
        out.append("<p class='muted'>This bundle keeps no sample of its average faces or fit faces "
                   "(bundles written by <code>muflow fit</code> since the fit report exists keep 16 of each).</p>")
    else:
        out.append("<div class='pair'>")
        if averages is not None:
            out.append(f"<div><div class='muted'>{len(averages)} of the {tr.averages} average faces "
                       f"(each the pixel mean of {tr.k} fit faces): the Gaussian target is fitted on their features</div>"
                       f"{_grid(averages.numpy(), 'average face')}</div>")
        if faces is not None:
            out.append(f"<div><div class='muted'>{len(faces)} of the {tr.fit_faces} fit faces (single aligned crops): "
                       f"the flows are trained on them</div>{_grid(faces.numpy(), 'fit face')}</div>")
        out.append("</div>")

    out.append("<h2>Training loss</h2>")
    if tr.losses:
        out.append(loss_svg([float(v) for v in tr.losses]))
        out.append(f"<p class='muted'>final loss {e(_num(float(tr.losses[-1])))} nats/dim after {len(tr.losses)} epochs</p>")
    else:
        out.append(f"<p>Final loss {e(_num(float(tr.final_loss)))} nats/dim after {tr.epochs} epochs; "
                   "this bundle keeps no loss per epoch, so there is no curve.</p>")

    out.append("<h2>Calibration</h2>")
    cuts = {fpr: cal.cutoffs(fpr, "two") for fpr in FPRS}
    if len(cal):
        out.append(histogram_svg(cal.scores, cuts))
    rows = [("calibration faces", len(cal)), ("source", card.calibration.source), ("default tail", cal.tail),
            ("smallest attainable p-value (default tail)", f"{cal.min_p():.4g}"),
            ("smallest attainable p-value (two-sided)", f"{cal.min_p('two'):.4g}")]
    for fpr, (lo, hi) in cuts.items():
        rows.append((f"two-sided cutoffs at {fpr:.0%}",
                     f"fake below {_num(lo) if lo is not None else '— (never)'} or above {_num(hi) if hi is not None else '— (never)'}"))
    out.append(_table(rows))
    out.append("<p class='muted'>A face scoring outside a pair of dashed lines gets p ≤ that rate against these real faces; "
               "when the smallest attainable p-value is above a rate, nothing can be flagged at it.</p>")

    out.append("<h2>What it was fitted on</h2>")
    skipped = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in tr.skipped.items()) or "none"
    fitted = [("image files", tr.images), ("skipped", skipped), ("faces", tr.faces),
              ("fit / calibration faces", f"{tr.fit_faces} / {tr.calibration_faces}"),
              ("groups (" + tr.group_by + ")", tr.groups or "not recorded"), ("seed", tr.seed), ("date", tr.date or "not recorded")]
    if seconds:
        fitted.append(("time", " ".join(f"{k} {v:.0f} s" for k, v in seconds.items())))
    out.append(_table(fitted))
    out.append("<h2>Settings</h2>")
    flow = ", ".join(f"{k} {v}" for k, v in vars(card.flow).items()) if hasattr(card.flow, "__dict__") else str(card.flow)
    out.append(_table([
        ("average faces (k crops each)", f"{tr.averages} ({tr.k})"), ("epochs", tr.epochs), ("batch size", tr.batch_size),
        ("learning rate", tr.lr), ("augmented copies per face", tr.augment), ("training precision", tr.precision), ("smallest face (px)", tr.min_face_px),
        ("crop", f"{card.crop.size} px, context {card.crop.context}"),
        ("face detector", f"{card.face_detector.kind} (threshold {card.face_detector.threshold})"),
        ("backbone", f"{card.backbone.name}, taps {list(card.backbone.taps)}, weights {card.backbone.weights}"),
        ("flow", flow), ("calibration mean score", _num(float(tr.calibration_mean_score))),
    ]))
    out.append("</body></html>")
    return "\n".join(out)


def write_fit_report(model, path: Path, name: str, seconds: dict[str, float] | None = None) -> Path:
    """Write the report of ``model`` to ``path``, atomically."""
    from .tables import atomic_write

    text = fit_report_html(model, name, seconds)
    atomic_write(Path(path), lambda p: Path(p).write_text(text, encoding="utf-8"))
    return Path(path)
