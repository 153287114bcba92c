"""The HTML report of a video scan: per video its face tracks, each with its first, middle and
highest-scoring face (crop and heat map), a plot of its faces' scores over time with the
calibrated cutoffs, its p-value and verdict; videos without a track with their status.

Streams like the scan report (report.py): :class:`VideoVisuals` keeps two small JPEGs per face
of the video being scanned only, writes a track's three picks when the video is done, and the
report is assembled page by page at the end. The plot is inline SVG drawn here: no script.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .report import ReportTarget, Section, e, heat_overlay, img, jpeg_bytes, thumb, write_report

PICKS = ("first", "middle", "highest")
TRACKS_PER_PAGE = 60


def track_picks(scores: Sequence[float]) -> dict[str, int]:
    """Which of a track's faces a person looks at: the first, the middle one and the highest-scoring."""
    return {"first": 0, "middle": len(scores) // 2, "highest": int(np.argmax(scores))}


def pick_name(video: int, track: int, pick: str, kind: str) -> str:
    return f"v{video:06d}-t{track:04d}-{pick}-{kind}.jpg"


class VideoVisuals:
    """A video-scan observer: per scored batch, a thumbnail and a heat map per face (JPEG bytes, for
    the video being scanned only); per finished video, its tracks' picks written to the staging folder."""

    def __init__(self, channels: list[int], target: ReportTarget) -> None:
        self.channels = channels
        self.target = target

    def keep(self, crops: np.ndarray, maps: list[np.ndarray]) -> list[tuple[bytes, bytes]]:
        return [(jpeg_bytes(thumb(c)), jpeg_bytes(thumb(heat_overlay(c, [m[k] for m in maps], self.channels))))
                for k, c in enumerate(crops)]

    def __call__(self, done) -> list[str] | None:
        if done.faces is None:  # from the journal: its pictures are on disk already (or the report goes without)
            return None
        frames = done.result["frames"]
        if len(done.faces) != len(frames):
            return []
        written = []
        for t in done.result["tracks"]:
            if t.get("status") != "ok":
                continue
            members = [k for k, r in enumerate(frames) if r.get("track") == t["track"]]
            for pick, m in track_picks([frames[k]["score"] for k in members]).items():
                for kind, data in zip(("crop", "heat"), done.faces[members[m]]):
                    name = pick_name(done.index, int(t["track"]), pick, kind)
                    (self.target.images / name).write_bytes(data)
                    written.append(name)
        return written


def score_plot(times: np.ndarray, scores: np.ndarray, verdicts: Sequence[str], low: float | None, high: float | None,
               unit: str, width: int = 360, height: int = 120) -> str:
    """A small SVG: each face's score (dot, red when flagged) over time, dashed lines at the score cutoffs."""
    cuts = [c for c in (low, high) if c is not None and math.isfinite(c)]
    ylo, yhi = min([*scores, *cuts]), max([*scores, *cuts])
    pad = (yhi - ylo) * 0.08 or 0.5
    ylo, yhi = ylo - pad, yhi + pad
    xlo, xhi = float(np.min(times)), float(np.max(times))
    if xhi == xlo:
        xlo, xhi = xlo - 0.5, xhi + 0.5
    left, right, top, bottom = 46, 8, 8, 22
    X = lambda t: left + (t - xlo) / (xhi - xlo) * (width - left - right)  # noqa: E731
    Y = lambda s: top + (yhi - s) / (yhi - ylo) * (height - top - bottom)  # noqa: E731
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
           "role='img' aria-label='face scores over time' style='font:10px sans-serif'>",
           f"<rect x='{left}' y='{top}' width='{width - left - right}' height='{height - top - bottom}' fill='#fafafa' stroke='#ccc'/>"]
    for c in cuts:
        out.append(f"<line x1='{left}' x2='{width - right}' y1='{Y(c):.1f}' y2='{Y(c):.1f}' stroke='#444' stroke-dasharray='4 3'/>")
    pts = " ".join(f"{X(t):.1f},{Y(s):.1f}" for t, s in zip(times, scores))
    out.append(f"<polyline points='{pts}' fill='none' stroke='#2563eb' stroke-width='1.2'/>")
    out += [f"<circle cx='{X(t):.1f}' cy='{Y(s):.1f}' r='2.6' fill='{'#dc2626' if v == 'fake' else '#16a34a'}'/>"
            for t, s, v in zip(times, scores, verdicts)]
    out.append(f"<text x='{left - 4}' y='{top + 8}' text-anchor='end'>{yhi - pad:.2f}</text>"
               f"<text x='{left - 4}' y='{height - bottom}' text-anchor='end'>{ylo + pad:.2f}</text>"
               f"<text x='{left}' y='{height - 6}'>{xlo:g} {e(unit)}</text>"
               f"<text x='{width - right}' y='{height - 6}' text-anchor='end'>{xhi:g} {e(unit)}</text></svg>")
    return "".join(out)


def _num(v: Any, spec: str) -> str:
    return "" if v is None or pd.isna(v) else format(float(v), spec)


def write_video_html(frames: pd.DataFrame, tracks: pd.DataFrame, target: ReportTarget, title: str, notes: list[str],
                     cutoffs: tuple[float | None, float | None]) -> tuple[Path, str | None]:
    """Write the report of a video scan's tables (its picks written by :class:`VideoVisuals`), page by page."""
    order = list(dict.fromkeys(tracks["video"]))  # scan order: the index in the picks' names
    index_of = {v: i for i, v in enumerate(order)}
    by_video = {v: t for v, t in tracks.groupby("video", sort=False)}
    faces_of = {v: f for v, f in frames[frames["status"] == "ok"].groupby("video", sort=False)}
    ok = tracks["status"] == "ok"
    flagged_videos = set(tracks.loc[ok & (tracks["verdict"] == "fake"), "video"])
    with_tracks = set(tracks.loc[ok, "video"])
    ranked = ([v for v in order if v in flagged_videos] + [v for v in order if v in with_tracks and v not in flagged_videos]
              + [v for v in order if v not in with_tracks])
    items: list[tuple[str, int | None]] = []  # (video, row of its track in `tracks`, or None for a video without one)
    for v in ranked:
        t = by_video[v]
        items += [(v, int(i)) for i in t.index[t["status"] == "ok"]] if v in with_tracks else [(v, None)]

    def video_head(v: str) -> str:
        t = by_video[v]
        if v not in with_tracks:
            r = t.iloc[0]
            return (f"<div class='video'><h2>{e(v)}</h2><div class='muted'>{e(str(r['status']))}: {e(str(r['message']))}</div></div>\n")
        n, bad = int((t["status"] == "ok").sum()), int((t["verdict"] == "fake").sum())
        note = str(t["message"].iloc[0]) if pd.notna(t["message"].iloc[0]) else ""
        return (f"<div class='video'><h2>{e(v)}</h2><div class='muted'>{n} track{'s' * (n != 1)}, "
                f"<span class='{'v-fake' if bad else 'v-real'}'>{bad} flagged</span>{e('; ' + note) if note else ''}</div></div>\n")

    def track_block(item: tuple[str, int | None], src: Callable[[str], str | None]) -> str:
        v, i = item
        if i is None:
            return ""
        t = tracks.loc[i]
        tid = int(t["track"])
        f = faces_of.get(v)
        f = f[f["track"] == tid] if f is not None else frames.iloc[:0]
        scores = f["score"].astype(float).to_numpy()
        timed = f["time_s"].notna().all() and len(f)
        times = (f["time_s"] if timed else f["frame"]).astype(float).to_numpy()
        verdict = str(t["verdict"])
        figs = []
        if len(scores):
            for pick, m in track_picks(scores).items():
                crop, heat = (src(pick_name(index_of[v], tid, pick, kind)) for kind in ("crop", "heat"))
                where = f"{times[m]:g} {'s' if timed else 'frame'}"
                figs.append(f"<figure>{img(crop, f'{pick} face')}{img(heat, f'{pick} heat map')}"
                            f"<figcaption>{pick}: {e(where)}, score {scores[m]:.3f}</figcaption></figure>")
        plot = score_plot(times, scores, list(f["verdict"].astype(str)), *cutoffs, "s" if timed else "frame") if len(scores) else ""
        return (f"<div class='track {e(verdict)}'><div><b>track {tid}</b> · {_num(t['first_s'], 'g')}–{_num(t['last_s'], 'g')} s · "
                f"{int(t['faces'])} faces · mean score {_num(t['mean_score'], '.3f')} · max {_num(t['max_score'], '.3f')} · "
                f"p-value {_num(t['p_value'], '.3f')} · <span class='v-{e(verdict)}'>{e(verdict)}</span></div>"
                f"<div class='picks'>{''.join(figs)}{plot}</div></div>\n")

    section = Section("videos", "Videos, flagged first", items, TRACKS_PER_PAGE, "", track_block, "", group=lambda it: (it[0], video_head(it[0])))
    counts = {"videos": len(order), "tracks": int(ok.sum()), "flagged_tracks": int((ok & (tracks["verdict"] == "fake")).sum()),
              "videos_flagged": len(flagged_videos), "no_face": int(((~ok) & (tracks["status"] == "no_face")).sum()),
              "errors": int(((~ok) & (tracks["status"] != "no_face")).sum())}

    def pictures() -> Iterator[str]:
        for v, i in items:
            if i is not None:
                for pick in PICKS:
                    for kind in ("crop", "heat"):
                        name = pick_name(index_of[v], int(tracks.loc[i, "track"]), pick, kind)
                        if target.has(name):
                            yield name

    footer = ("<p class='muted'>Picks: the track's first, middle and highest-scoring face, each with its heat map (the flow's "
              "residual energy per position; not a map of manipulated pixels). Plot: each face's score over time (red: flagged "
              "face); dashed: the score cutoffs of the false-positive rate.</p>")
    return write_report(target, title, counts, notes, [section], pictures, int(ok.sum()) * len(PICKS), footer)
