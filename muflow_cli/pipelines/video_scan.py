"""Scan videos: sample frames, detect and track faces, score every face, verdict per track.

One video is one unit of work: its faces are scored in batches of ``batch_size`` in frame
order, so a resumed scan (journal, as for images) reproduces the same numbers.

Consumers (the HTML report) see the faces through a :class:`VideoObserver`: ``keep`` per scored
batch (crops and residual maps; it returns something small per face) and a call per finished
video; the scan does not know what they do with them.

A video's provenance (C2PA Content Credentials in MP4/MOV, an XMP label; inputs/provenance.py) is
read from its file by path, apart from the decoder, and goes on every row of that video: evidence
beside the track verdicts, never part of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from muflow_cli.errors import ConfigError
from muflow_cli.faces.detect import FaceDetector
from muflow_cli.faces.face import Face
from muflow_cli.faces.options import FaceFinding
from muflow_cli.faces.stage import faces_in_image
from muflow_cli.faces.tracks import Tracker, merge_p_values
from muflow_cli.inputs.compression import VIDEO
from muflow_cli.inputs.files import shown_path, walk_files
from muflow_cli.inputs.images import encode_image
from muflow_cli.inputs.provenance import TIME_CAP_S, read_provenance
from muflow_cli.inputs.video import VIDEO_SUFFIXES, VideoReadError, sample_frames
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.model.device import default_batch_size
from muflow_cli.pipelines.identity import run_settings
from muflow_cli.pipelines.journal import ScanJournal, file_identity
from muflow_cli.pipelines.schema import NOT_READ, TRACK_SCHEMA, VIDEO_FRAME_SCHEMA, face_columns, layer_columns, to_frame
from muflow_cli.pipelines.verdicts import apply_fdr, judge
from muflow_cli.progress import track
from muflow_cli.stats.calibration import FAKE, INCONCLUSIVE, REAL, check_fdr, check_fpr, check_tail, verdict


@dataclass
class VideoConfig:
    fps: float = 1.0
    frames: int | None = None  # evenly spaced frame count instead of a rate
    fpr: float = 0.05
    tail: str | None = None  # None: the model's (calibration.resolve)
    batch_size: int | None = None  # None: by device (device.default_batch_size)
    faces: FaceFinding = field(default_factory=FaceFinding)  # which detector, down to which size, or pre-aligned frames
    min_iou: float = 0.2
    max_gap: int = 2  # samples a track may miss before it ends
    save_faces: Path | None = None
    provenance: bool = True  # read what each video file says about itself (the provenance columns)
    fdr: float | None = None  # track verdicts by Benjamini-Hochberg over the run's tracks at this false discovery rate

    def check(self) -> None:
        if self.frames is None and not self.fps > 0:
            raise ConfigError("--fps must be positive")
        if self.frames is not None and self.frames < 1:
            raise ConfigError("--frames must be at least 1")
        check_fpr(self.fpr)
        check_tail(self.tail)
        check_fdr(self.fdr)
        if (self.batch_size is not None and self.batch_size < 1) or self.max_gap < 0:
            raise ConfigError("batch_size must be at least 1 and max_gap at least 0")
        self.faces.check()


@dataclass
class VideoDone:
    """One video as the scan finished it, for an observer."""

    index: int
    video: str
    result: dict  # {"frames": rows, "tracks": rows}
    faces: list[Any] | None = None  # per face row, what the observer's ``keep`` returned; None when from the journal
    extras: Any = None  # what the observer returned for this video on an earlier run (from the journal)


class VideoObserver(Protocol):
    def keep(self, crops: np.ndarray, maps: list[np.ndarray]) -> list[Any]:
        """Per scored batch: (B, S, S, 3) crops and per layer (B, H, W) residual maps; one small item per face."""

    def __call__(self, done: VideoDone) -> Any:
        """Once per video (scanned or from the journal); returns JSON-serialisable data for the journal (or None)."""


def iter_video_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Video files under ``paths`` (files.walk_files with the video suffixes)."""
    return walk_files(paths, VIDEO_SUFFIXES)


def video_settings(model: DeepfakeModel, config: VideoConfig, paths: list[Path]) -> dict:
    """What makes two video runs the same run (for --resume)."""
    shown = [shown_path(Path(p).absolute()) for p in paths]
    return run_settings("video", model.tensors_sha256, config, shown)


def scan_videos(
    paths: Iterable[Path],
    model: DeepfakeModel,
    config: VideoConfig = VideoConfig(),
    progress: bool = True,
    journal: ScanJournal | None = None,
    observer: VideoObserver | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frames table, tracks table) for every video under ``paths``; ``observer`` sees each video's
    faces as they are scored and each video once it is done (or restored from the journal)."""
    config.check()
    make = model.card.face_detector.factory(config.faces, threads=0)  # one video at a time: all cores
    faces = make() if make is not None else None
    videos = list(iter_video_files(paths))
    frame_rows: list[dict] = []
    track_rows: list[dict] = []
    for index, path in enumerate(track(videos, "videos  ", enabled=progress)):
        shown = shown_path(path)
        ids = [file_identity(path, shown)]
        kept = journal.lookup(index, ids) if journal is not None else None
        if kept is None:
            kept_faces: list[Any] = []
            done = scan_one_video(path, shown, faces, model, config, observer, kept_faces)
            extras = observer(VideoDone(index, shown, done, kept_faces)) if observer is not None else None
            del kept_faces
            if journal is not None:
                journal.record(index, ids, done, extras)
        else:
            done = kept[0]
            if observer is not None:
                observer(VideoDone(index, shown, done, extras=kept[1]))
        frame_rows += done["frames"]
        track_rows += done["tracks"]
    names = model.layer_names
    tracks = to_frame(track_rows, [], TRACK_SCHEMA)
    return to_frame(frame_rows, names, VIDEO_FRAME_SCHEMA), apply_fdr(tracks, config.fdr) if config.fdr is not None else tracks


def scan_one_video(path: Path, shown: str, faces: FaceDetector | None, model: DeepfakeModel, config: VideoConfig,
                   observer: VideoObserver | None = None, kept: list[Any] | None = None) -> dict:
    """{"frames": rows, "tracks": rows} for one video; a bad video gives one status row in each.
    With an ``observer``, ``kept`` receives what its ``keep`` returned, one item per face row."""
    prov = read_provenance(path, TIME_CAP_S) if config.provenance else None
    done = _scan_one_video(path, shown, faces, model, config, observer, kept)
    columns = {"provenance": prov.kind if prov else None, "provenance_detail": prov.detail if prov else None}
    for row in done["frames"] + done["tracks"]:
        row.update(columns)
    return done


def _scan_one_video(path: Path, shown: str, faces: FaceDetector | None, model: DeepfakeModel, config: VideoConfig,
                    observer: VideoObserver | None, kept: list[Any] | None) -> dict:
    try:
        info, frames = sample_frames(path, None if config.frames else config.fps, config.frames)
        rows, scores, layers, pngs, tracker, sampled = _detect_and_track(frames, faces, model, config, observer, kept)
    except VideoReadError as exc:
        return _status(shown, exc.status, exc.message)
    except Exception as exc:  # a decoder or detector failure on one file must not stop the others
        return _status(shown, "error", f"{type(exc).__name__}: {exc}")
    if sampled == 0:
        return _status(shown, "no_frames", "no frame could be decoded (empty, truncated, or audio only)")
    if not rows:
        return _status(shown, "no_face", f"no face in {sampled} sampled frames", info.note)
    # A decoded frame has no header to read: a codec's compression counts as lossy of unknown quality (stats/strata.py).
    # The crops are gone by now (scored in batches), so frames get no JPEG 90 stability check.
    judged = judge(model.calibration, scores, [VIDEO] * len(rows), [r.pop("upscale") for r in rows], [r["face_px"] for r in rows],
                   config.fpr, config.tail, model.card.training.min_face_px)
    for k, row in enumerate(rows):
        note = "; ".join(m for m in (info.note, judged.reason[k]) if m)
        row.update(video=shown, status="ok", message=note, score=float(scores[k]), p_value=float(judged.p_value[k]),
                   stratum=judged.stratum[k] or None, verdict=judged.verdict[k])
        row.update(zip(layer_columns(model.layer_names), (float(v) for v in layers[k])))
    tracks = []
    for t in tracker.tracks():
        members = [rows[m] for m in t.members]
        conclusive = [r["p_value"] for r in members if r["verdict"] in (FAKE, REAL)]
        p = merge_p_values(conclusive) if conclusive else float("nan")
        track_scores = [r["score"] for r in members]
        tracks.append({
            "video": shown, "track": t.id, "status": "ok", "message": info.note,
            "first_s": members[0]["time_s"], "last_s": members[-1]["time_s"],
            "first_frame": members[0]["frame"], "last_frame": members[-1]["frame"],
            "faces": len(members), "mean_score": float(np.nanmean(track_scores)) if np.isfinite(track_scores).any() else None,
            "max_score": float(np.nanmax(track_scores)) if np.isfinite(track_scores).any() else None,
            "p_value": p, "verdict": verdict(p, config.fpr) if conclusive else INCONCLUSIVE,
        })
        if not conclusive:
            tracks[-1]["message"] = "; ".join(m for m in (info.note, "inconclusive: no face of the track has a verdict to stand by") if m)
        if config.save_faces is not None:
            _save_track_faces(config.save_faces, path, t.id, t.members, pngs, [r["score"] for r in members])
    return {"frames": rows, "tracks": tracks}


def _detect_and_track(frames, faces: FaceDetector | None, model: DeepfakeModel, config: VideoConfig,
                      observer: VideoObserver | None = None, kept: list[Any] | None = None):
    """Detect, track and score the sampled frames' faces; crops are scored every ``batch_size``
    faces (the same batches as scoring them all at once), so memory stays flat on long videos;
    ``observer.keep`` sees each batch's crops and maps (its items go to ``kept``)."""
    tracker = Tracker(config.min_iou, config.max_gap)
    rows: list[dict] = []
    pending: list[Face] = []
    scores: list[np.ndarray] = []
    layers: list[np.ndarray] = []
    pngs: list[bytes] = []
    sampled = 0

    batch = config.batch_size or default_batch_size(model.device_type)

    def score(n: int) -> None:
        out = model.score_faces(pending[:n], batch_size=batch, with_maps=observer is not None)
        if observer is not None and kept is not None:
            kept.extend(observer.keep(np.stack([f.crop for f in pending[:n]]), out["maps"]))
        scores.append(out["score"])
        layers.append(out["layers"])
        del pending[:n]

    for sample, frame in enumerate(frames):
        sampled += 1
        found = faces_in_image(frame.rgb, faces, config.faces, model.crop_size, model.context, model.native)
        if not found:
            continue
        first = len(rows)
        ids = tracker.update(sample, np.stack([f.box for f in found]), list(range(first, first + len(found))))
        for k, (f, tid) in enumerate(zip(found, ids)):
            rows.append({"frame": frame.index, "time_s": None if np.isnan(frame.time) else round(frame.time, 6),
                         "track": tid, "face": k, **face_columns(f), "upscale": f.scale})
            pending.append(f)
            if config.save_faces is not None:
                pngs.append(encode_image(f.crop, "png"))
        while len(pending) >= batch:
            score(batch)
    if pending:
        score(len(pending))
    flat = np.concatenate(scores) if scores else np.zeros(0)
    flat_layers = np.concatenate(layers) if layers else np.zeros((0, len(model.layer_names)))
    return rows, flat, flat_layers, pngs, tracker, sampled


def _status(shown: str, status: str, message: str, note: str = "") -> dict:
    msg = f"{message}; {note}" if note else message
    return {"frames": [{"video": shown, "status": status, "message": msg}],
            "tracks": [{"video": shown, "status": status, "message": msg}]}


def _save_track_faces(root: Path, video: Path, track_id: int, members: list[int], images: list[bytes], scores: list[float]) -> None:
    """The first, middle and highest-scoring crop of a track, for a person to look at."""
    folder = Path(root) / video.stem
    folder.mkdir(parents=True, exist_ok=True)
    picks = {"first": 0, "middle": len(members) // 2, "worst": int(np.argmax(scores))}
    for name, k in picks.items():
        (folder / f"track{track_id:03d}_{name}.png").write_bytes(images[members[k]])


def summarize_videos(frames: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    """One line per video: faces, tracks, flagged tracks, status, provenance kind."""
    out = []
    for video, t in tracks.groupby("video", sort=False):
        f = frames[frames["video"] == video]
        ok = t["status"] == "ok"
        kind = t["provenance"].iloc[0] if "provenance" in t else None
        out.append({"video": video, "status": t["status"].iloc[0], "faces": int((f["status"] == "ok").sum()),
                    "tracks": int(ok.sum()), "flagged": int((t["verdict"] == "fake").sum()),
                    "provenance": NOT_READ if pd.isna(kind) else str(kind)})
    return pd.DataFrame(out, columns=["video", "status", "faces", "tracks", "flagged", "provenance"])
