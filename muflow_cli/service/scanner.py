"""What a serving process holds: the model (loaded once, graph warm), the face-finding threads, the
scoring thread; and how one request's uploads become the scan's rows, summary and domain check.

Uploads are bytes in memory, decoded by the scan's own reader (inputs/images.py takes an ``io.BytesIO``
by the same rules as a file); a client's file name is only ever a string in the table. A video needs a
file for its decoder: it goes to a private temporary folder (mode 0700, a name the server chooses) that
is removed before the response is sent.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from muflow_cli.faces.detect import FaceDetector
from muflow_cli.faces.face import FileFaces
from muflow_cli.faces.options import FaceFinding
from muflow_cli.faces.stage import default_workers, faces_in_file
from muflow_cli.inputs.images import encode_image
from muflow_cli.inputs.video import VIDEO_SUFFIXES
from muflow_cli.model.bundle import default_model_path, read_bundle
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.model.device import default_batch_size
from muflow_cli.outputs.report import heat_overlay
from muflow_cli.pipelines.scan import ScanConfig, score_chunk
from muflow_cli.pipelines.schema import SCHEMA, TRACK_SCHEMA, VIDEO_FRAME_SCHEMA, layer_columns, provenance_counts, summarize, to_frame
from muflow_cli.pipelines.verdicts import apply_fdr
from muflow_cli.pipelines.video_scan import VideoConfig, scan_one_video, summarize_videos
from muflow_cli.service.batcher import Batcher, Job, Scored
from muflow_cli.service.config import ServeConfig

DETECTORS_PER_THREAD = 4  # distinct face-finding settings whose detectors a thread keeps (least recently used go)


@dataclass
class Upload:
    """One uploaded file: the name the client gave (shown, never opened) and its bytes."""

    name: str
    data: bytes


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A table's rows as JSON-ready dicts: the table's columns in order, missing values as null."""
    out = []
    for row in df.astype(object).itertuples(index=False):
        out.append({k: (None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else
                        (v.item() if isinstance(v, np.generic) else v)) for k, v in zip(df.columns, row)})
    return out


def png_b64(rgb: np.ndarray) -> str:
    return base64.b64encode(encode_image(rgb, "png")).decode("ascii")


class Scanner:
    """The model, the face-finding pool and the scoring thread of one serving process."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.model_path = Path(config.model) if config.model else default_model_path()
        self.model = DeepfakeModel.load(config.model).to(config.device).use_engine(config.engine, check=True)
        self.batch_size = config.batch_size or default_batch_size(self.model.device_type)
        self.threads = max(1, default_workers() // config.workers)  # several worker processes share the cores
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="muflow-faces")
        self._local = threading.local()
        self._video_lock = threading.Lock()  # one video at a time per process: its detector uses every core
        self.detecting = 0  # requests whose files are being read and detected (the scorer waits for them)
        self.on_batch = None  # set by the app: (faces, jobs) per scoring call
        self.batcher = Batcher(self.model, self.batch_size, config.batch_wait_ms / 1000, config.queue,
                               lambda: self.detecting > 0, lambda f, j: self.on_batch and self.on_batch(f, j))
        self.ready = False

    def warm(self) -> None:
        """Build both scoring graphs (with and without maps) and a detector per face thread: the first request pays nothing."""
        self.model.engine.set_spinning(False)  # scoring shares the cores with the face-finding threads
        crops = np.zeros((1, self.model.crop_size, self.model.crop_size, 3), np.uint8)
        for maps in (False, True):
            self.model.score(crops, batch_size=1, with_maps=maps)
        blank = encode_image(np.full((64, 64, 3), 127, np.uint8), "png")
        together = threading.Barrier(self.threads)  # each task waits for the others: one per thread, so every thread builds its detector

        def one() -> None:
            self._find(Upload("warm", blank), FaceFinding(), None)
            together.wait(timeout=120)

        for f in [self._pool.submit(one) for _ in range(self.threads)]:
            f.result()
        self.ready = True

    def close(self) -> None:
        self.batcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def model_card(self) -> dict[str, Any]:
        """What ``muflow info --json`` prints for this model: the card and the tensors' sha256."""
        card, _, sha = read_bundle(self.model_path)
        return {**card.to_dict(), "tensors_sha256": sha}

    # -- images --------------------------------------------------------------------------------
    def _detector(self, finding: FaceFinding) -> FaceDetector | None:
        """This thread's detector for ``finding`` (max_faces is applied after detection: not part of the key)."""
        cache: OrderedDict = self._local.__dict__.setdefault("detectors", OrderedDict())
        key = replace(finding, max_faces=0)
        if key not in cache:
            make = self.model.card.face_detector.factory(finding)
            cache[key] = make() if make is not None else None
            while len(cache) > DETECTORS_PER_THREAD:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return cache[key]

    def _find(self, upload: Upload, finding: FaceFinding, provenance: float | None) -> FileFaces:
        data = io.BytesIO(upload.data)
        try:
            return faces_in_file(data, self._detector(finding), finding, self.model.crop_size, self.model.context, provenance=provenance,
                                 native=self.model.native)
        except Exception as exc:  # faces_in_file reports bad files; anything else is still one file's row, not a 500
            return FileFaces(data, "error", f"{type(exc).__name__}: {exc}")

    async def scan(self, uploads: list[Upload], config: ScanConfig, heatmap: bool = False, crops: bool = False) -> dict[str, Any]:
        """The scan of ``uploads``: per file its status, message and table rows (and pictures if asked), the summary."""
        config = replace(config, batch_size=self.batch_size, visuals=heatmap)
        self.detecting += 1
        try:
            futures = [asyncio.wrap_future(self._pool.submit(self._find, u, config.faces, config.provenance_cap)) for u in uploads]
            files = list(await asyncio.gather(*futures))
        finally:
            self.detecting -= 1
        shown = [u.name for u in uploads]
        job = Job(files, shown, config)
        if job.faces:
            scored: Scored = await asyncio.wrap_future(self.batcher.submit(job))
        else:  # nothing to score: the rows without the scoring thread
            chunk = score_chunk(0, files, shown, self.model, config)
            scored = Scored(chunk.rows, [], [])
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._answer, files, scored, config, heatmap, crops)

    def _answer(self, files: list[FileFaces], scored: Scored, config: ScanConfig, heatmap: bool, crops: bool) -> dict[str, Any]:
        df = to_frame(scored.rows, self.model.layer_names)
        if config.fdr is not None:  # the request is the run: its faces' p-values together
            df = apply_fdr(df, config.fdr)
        rows = records(df)
        out_files, r, face = [], 0, 0
        channels = self.model.card.channels
        for res in files:
            n = len(res.faces) if res.status == "ok" else 1
            entry: dict[str, Any] = {"file": rows[r]["file"], "status": res.status, "message": res.message, "rows": rows[r : r + n]}
            if res.status == "ok" and (heatmap or crops):
                pictures = []
                for k in range(n):
                    crop = scored.crops[face + k]
                    pic = {"crop": png_b64(crop)} if crops else {}
                    if heatmap:
                        pic["heatmap"] = png_b64(heat_overlay(crop, [m[face + k] for m in scored.maps], channels))
                    pictures.append(pic)
                entry["pictures"] = pictures
            face += n if res.status == "ok" else 0
            r += n
            out_files.append(entry)
        return {"files": out_files, "summary": summarize(df), "rule": self.rule(config.fpr, config.tail, config.fdr),
                "provenance": provenance_counts(df) if config.provenance else None,
                "domain_warning": self.domain_warning(df["p_value"], config.fpr, config.tail)}

    def rule(self, fpr: float, tail: str | None, fdr: float | None) -> str:
        """The face verdict rule in force; with ``fdr``, Benjamini-Hochberg over the request's faces."""
        text = self.model.calibration.describe(fpr, tail)
        if fdr is not None:
            text += (f"; fdr {fdr:g}: fake when Benjamini-Hochberg rejects over this request's faces, "
                     f"so at most a share {fdr:g} of the flagged faces are expected to be real")
        return text

    def domain_warning(self, p_values: pd.Series, fpr: float, tail: str | None) -> str | None:
        """What the CLI warns when the faces' p-values do not look like the calibration reals' (None: it says nothing)."""
        check = self.model.calibration.domain_check(p_values.dropna().to_numpy(float), fpr, tail)
        return check.message(self.config.model) if check.mismatch else None

    def columns(self) -> list[str]:
        return list(SCHEMA) + layer_columns(self.model.layer_names)

    # -- videos --------------------------------------------------------------------------------
    def _video(self, upload: Upload, config: VideoConfig) -> dict[str, Any]:
        suffix = Path(upload.name).suffix.lower()
        folder = tempfile.mkdtemp(prefix="muflow-serve-")  # mode 0700; the name is the server's, the suffix only when known
        try:
            path = Path(folder) / ("upload" + (suffix if suffix in VIDEO_SUFFIXES else ".bin"))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(upload.data)
            make = self.model.card.face_detector.factory(config.faces, threads=0)
            with self._video_lock:
                done = scan_one_video(path, upload.name, make() if make is not None else None, self.model, config)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        frames = to_frame(done["frames"], self.model.layer_names, VIDEO_FRAME_SCHEMA)
        tracks = to_frame(done["tracks"], [], TRACK_SCHEMA)
        if config.fdr is not None:
            tracks = apply_fdr(tracks, config.fdr)
        videos = summarize_videos(frames, tracks)
        return {"frames": records(frames), "tracks": records(tracks), "videos": records(videos),
                "rule": (f"track verdict: fake when min(1, 2 x median face p-value) <= {config.fpr:g}" if config.fdr is None else
                         f"track verdict: Benjamini-Hochberg at fdr {config.fdr:g} over this video's tracks' p-values "
                         "(min(1, 2 x median face p-value))"),
                "face_rule": self.model.calibration.describe(config.fpr, config.tail),
                "domain_warning": self.domain_warning(frames["p_value"], config.fpr, config.tail)}

    async def video(self, upload: Upload, config: VideoConfig) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(None, self._video, upload, replace(config, batch_size=self.batch_size))
