"""A self-contained HTML report of a scan: counts, every face with its thumbnail and heat map,
and every image with its face boxes coloured by verdict.

Images are embedded as small JPEG data URIs (no external assets, nothing fetched). Every string
that comes from the file system or the table is HTML-escaped: file names are attacker-controlled.

The heat map shows, per position of the aligned crop, the flow's residual energy |r(h, w)|^2 / 2
per channel, averaged over the backbone layers (upsampled to the crop): where the face's features,
after the flow, sit far from what the flow learned from real faces. A standard-normal position
scores 0.5 on average; the colour scale runs from 0 (blue) to 1.5 and above (red). It is not a
segmentation of a manipulated region, and it leaves out the two other terms of the score (the
Gaussian of the spatial mean and the flow's log-determinant): see docs/method.md.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

THUMB = 112
IMAGE_MAX = 480
HEAT_MAX = 1.5
COLOURS = {"fake": (220, 38, 38), "real": (22, 163, 74)}  # RGB


def _jpeg_uri(rgb: np.ndarray, quality: int = 85) -> str:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def heat_overlay(crop: np.ndarray, maps: list[np.ndarray], channels: list[int]) -> np.ndarray:
    """The crop with the per-position residual energy per channel blended over it (RGB uint8)."""
    size = crop.shape[0]
    energy = np.mean([cv2.resize(m / c, (size, size), interpolation=cv2.INTER_LINEAR) for m, c in zip(maps, channels)], axis=0)
    level = np.clip(energy / HEAT_MAX * 255.0, 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(level, cv2.COLORMAP_JET)[..., ::-1]
    return cv2.addWeighted(crop, 0.5, colour, 0.5, 0)


def _marked(image: np.ndarray, boxes: list[tuple[np.ndarray, str]]) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(1.0, IMAGE_MAX / max(h, w))
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else image.copy()
    for i, (box, verdict) in enumerate(boxes):
        x1, y1, x2, y2 = (int(round(v * s)) for v in box)
        cv2.rectangle(small, (x1, y1), (x2, y2), COLOURS.get(verdict, (128, 128, 128)), 2)
        cv2.putText(small, str(i), (x1 + 2, max(12, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, COLOURS.get(verdict, (128, 128, 128)), 1)
    return small


def chunk_visuals(chunk, channels: list[int]) -> list[dict]:
    """Per row of a scan chunk: ``thumb`` and ``heat`` (faces) and ``image`` (first row of a file) as data URIs."""
    rows, crops, maps = chunk.rows, chunk.crops, chunk.maps
    out: list[dict] = [{} for _ in rows]
    ptr = face = 0
    for res in chunk.files:
        n = len(res.faces) if res.status == "ok" else 1
        if res.status == "ok":
            boxes = []
            for k, f in enumerate(res.faces):
                crop = crops[face]
                thumb = cv2.resize(crop, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
                heat = heat_overlay(crop, [m[face] for m in maps], channels)
                out[ptr + k] = {"thumb": _jpeg_uri(thumb), "heat": _jpeg_uri(cv2.resize(heat, (THUMB, THUMB), interpolation=cv2.INTER_AREA))}
                boxes.append((f.box, rows[ptr + k].get("verdict", "")))
                face += 1
            out[ptr]["image"] = _jpeg_uri(_marked(res.image, boxes))
        elif res.image is not None:
            out[ptr]["image"] = _jpeg_uri(_marked(res.image, []))
        ptr += n
    return out


class ReportVisuals:
    """A scan observer that keeps each row's report images (and journals them, so a resumed scan has them)."""

    def __init__(self, channels: list[int]) -> None:
        self.channels = channels
        self.rows: list[dict] = []

    def __call__(self, chunk) -> list[dict]:
        extras = chunk.extras if chunk.files is None else chunk_visuals(chunk, self.channels)
        self.rows += extras or [{} for _ in chunk.rows]
        return extras


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#111}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px} .muted{color:#555;font-size:13px}
.counts{display:flex;gap:12px;margin:12px 0} .count{border:1px solid #ddd;border-radius:6px;padding:8px 14px}
.count b{display:block;font-size:20px} table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:middle}
tr.fake td{background:#fef2f2} .v-fake{color:#b91c1c;font-weight:600} .v-real{color:#15803d}
.file{max-width:360px;word-break:break-all} .images{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;max-width:480px} figcaption{font-size:12px;word-break:break-all;color:#333}
img.t{width:112px;height:112px}
"""


def write_html(df: pd.DataFrame, visuals: list[dict], path: Path, title: str, notes: list[str]) -> None:
    """Write the report for a scan table to ``path``, atomically; ``visuals``: per row, from :class:`ReportVisuals`."""
    from .tables import atomic_write, summarize

    e = html.escape
    counts = summarize(df)
    vis = visuals if len(visuals) == len(df) else [{}] * len(df)
    faces = [(r, v) for (_, r), v in zip(df.iterrows(), vis) if r["status"] == "ok"]
    faces.sort(key=lambda rv: (rv[0]["verdict"] != "fake", rv[0]["p_value"]))
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1><div class='muted'>{e(datetime.now(timezone.utc).isoformat(timespec='seconds'))}</div>",
        "<div class='counts'>" + "".join(f"<div class='count'><b>{v}</b>{e(k.replace('_', ' '))}</div>" for k, v in counts.items()) + "</div>",
        "".join(f"<p class='muted'>{e(n)}</p>" for n in notes),
        "<h2>Faces, flagged first</h2><table><tr><th>face</th><th>heat map</th><th>file</th><th>#</th><th>box</th>"
        "<th>score</th><th>p-value</th><th>verdict</th></tr>",
    ]
    for r, v in faces:
        box = ", ".join(f"{r[c]:.0f}" for c in ("x1", "y1", "x2", "y2"))
        verdict = str(r["verdict"])
        thumb = f"<img class='t' alt='face' src='{e(v['thumb'])}'>" if "thumb" in v else ""
        heat = f"<img class='t' alt='heat map' src='{e(v['heat'])}'>" if "heat" in v else ""
        out.append(
            f"<tr class='{e(verdict)}'><td>{thumb}</td><td>{heat}</td><td class='file'>{e(str(r['file']))}</td>"
            f"<td>{int(r['face'])}</td><td>{e(box)}</td><td>{r['score']:.4f}</td><td>{r['p_value']:.3f}</td>"
            f"<td class='v-{e(verdict)}'>{e(verdict)}</td></tr>"
        )
    out.append("</table>")
    others = [r for _, r in df.iterrows() if r["status"] != "ok"]
    if others:
        out.append("<h2>Files without a scored face</h2><table><tr><th>file</th><th>status</th><th>message</th></tr>")
        out += [f"<tr><td class='file'>{e(str(r['file']))}</td><td>{e(str(r['status']))}</td><td>{e(str(r['message']))}</td></tr>" for r in others]
        out.append("</table>")
    out.append("<h2>Images</h2><div class='images'>")
    for (_, r), v in zip(df.iterrows(), vis):
        if "image" in v:
            out.append(f"<figure><img alt='image' src='{e(v['image'])}' style='max-width:480px'><figcaption>{e(str(r['file']))}</figcaption></figure>")
    out.append("</div><p class='muted'>Boxes: red = fake, green = real; the number is the face index. Heat map: the flow's residual "
               "energy per position (blue typical, red unusual for real faces); it is not a map of manipulated pixels.</p></body></html>")
    atomic_write(path, lambda p: Path(p).write_text("\n".join(out), encoding="utf-8"))
