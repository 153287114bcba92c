"""The HTML report of a video scan: per video its face tracks, each with its first, middle and
highest-scoring face (crop and heat map), a plot of its faces' scores over time with the
calibrated cutoffs, its p-value and verdict; videos without a track with their status.

Streams like the scan report (report.py): :class:`VideoVisuals` keeps two small JPEGs per face
of the video being scanned only, writes a track's three picks when the video is done, and the
report is assembled page by page at the end (templates ``video.html.j2``, ``video_tracks.html.j2``).
The plot is inline SVG drawn by matplotlib (charts.py): no script.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from muflow_cli.inputs.images import encode_image
from muflow_cli.outputs.charts import line_chart
from muflow_cli.outputs.report import JPEG_QUALITY, ReportTarget, Section, Src, heat_overlay, provenance_cells, thumb, write_report
from muflow_cli.pipelines.schema import provenance_counts

PICKS = ("first", "middle", "highest")
RED, GREEN = "#dc2626", "#16a34a"  # a flagged face's dot, a real one's
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
        return [(encode_image(thumb(c), "jpeg", JPEG_QUALITY),
                 encode_image(thumb(heat_overlay(c, [m[k] for m in maps], self.channels)), "jpeg", JPEG_QUALITY))
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
               unit: str) -> Markup:
    """A small chart: each face's score (dot, red when flagged) over time, dashed lines at the score cutoffs."""
    cuts = [c for c in (low, high) if c is not None and math.isfinite(c)]
    return line_chart(times, scores, label="face scores over time", colours=[RED if v == "fake" else GREEN for v in verdicts],
                      cuts=cuts, xlabel=unit)


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

    def video_head(v: str) -> dict:
        t = by_video[v]
        prov = provenance_cells(t.iloc[0])
        if v not in with_tracks:
            r = t.iloc[0]
            return {"name": v, "tracks": None, "status": str(r["status"]), "message": str(r["message"]), **prov}
        note = str(t["message"].iloc[0]) if pd.notna(t["message"].iloc[0]) else ""
        return {"name": v, "tracks": int((t["status"] == "ok").sum()), "flagged": int((t["verdict"] == "fake").sum()), "note": note,
                **prov}

    heads = {v: video_head(v) for v in order}

    def track_block(item: tuple[str, int | None], src: Src) -> dict:
        v, i = item
        if i is None:
            return {"video": heads[v], "track": None}
        t = tracks.loc[i]
        tid = int(t["track"])
        f = faces_of.get(v)
        f = f[f["track"] == tid] if f is not None else frames.iloc[:0]
        scores = f["score"].astype(float).to_numpy()
        timed = f["time_s"].notna().all() and len(f)
        times = (f["time_s"] if timed else f["frame"]).astype(float).to_numpy()
        picks = [{"pick": pick, "crop": src(pick_name(index_of[v], tid, pick, "crop")), "heat": src(pick_name(index_of[v], tid, pick, "heat")),
                  "where": f"{times[m]:g} {'s' if timed else 'frame'}", "score": scores[m]}
                 for pick, m in (track_picks(scores).items() if len(scores) else ())]
        plot = score_plot(times, scores, list(f["verdict"].astype(str)), *cutoffs, "s" if timed else "frame") if len(scores) else ""
        return {"video": heads[v], "track": {
            "id": tid, "verdict": str(t["verdict"]), "first_s": _num(t["first_s"], "g"), "last_s": _num(t["last_s"], "g"),
            "faces": int(t["faces"]), "mean_score": _num(t["mean_score"], ".3f"), "max_score": _num(t["max_score"], ".3f"),
            "p_value": _num(t["p_value"], ".3f"), "picks": picks, "plot": plot}}

    section = Section("videos", "Videos, flagged first", items, TRACKS_PER_PAGE, "video_tracks.html.j2", track_block)
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

    read = "provenance" in tracks and tracks["provenance"].notna().any()
    return write_report(target, "video.html.j2", title, counts, notes, [section], pictures, int(ok.sum()) * len(PICKS),
                        provenance_counts(tracks, "video") if read else None)
