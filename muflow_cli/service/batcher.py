"""One scoring thread per process that scores the faces of concurrent requests together.

Why: the scoring graph does more faces per second in a batch than one face at a time, and a request
of one photo rarely fills a batch. Each request hands its detected files to :meth:`Batcher.submit`;
the thread takes the oldest job, then keeps taking jobs until it holds the engine's batch size of
faces or ``wait_s`` has passed (it waits only while other requests are still being detected: a lone
request is scored at once), and scores each group of jobs with the same verdict rule in one call of
the scan's own ``score_chunk``: the rows are the scan table's, to the column. The queue is bounded;
a full one raises :class:`Busy` (the app answers 503 with Retry-After).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from muflow_cli.faces.face import FileFaces
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.scan import ScanConfig, score_chunk


class Busy(Exception):
    """The scoring queue is full."""


@dataclass
class Scored:
    """One job's share of a scored chunk: its rows (file order), its crops and per-layer maps (face-row order)."""

    rows: list[dict]
    crops: list[np.ndarray]
    maps: list[np.ndarray]  # per layer (faces, H, W); empty unless config.visuals


@dataclass
class Job:
    files: list[FileFaces]
    shown: list[str]
    config: ScanConfig
    future: Future = field(default_factory=Future)

    @property
    def faces(self) -> int:
        return sum(len(f.faces or []) for f in self.files if f.status == "ok")

    @property
    def key(self) -> tuple:
        """Jobs scored in one call share the verdict rule and whether maps are made."""
        return (self.config.fpr, self.config.tail, self.config.visuals)


def split_scored(rows: list[dict], crops: list[np.ndarray], maps: list[np.ndarray], jobs: list[Job]) -> list[Scored]:
    """Cut one chunk's rows, crops and maps back into each job's share (rows: one per face, or one per file without)."""
    out, r, c = [], 0, 0
    for job in jobs:
        n_rows = sum(len(f.faces) if f.status == "ok" else 1 for f in job.files)
        n_faces = job.faces
        out.append(Scored(rows[r : r + n_rows], crops[c : c + n_faces], [m[c : c + n_faces] for m in maps]))
        r, c = r + n_rows, c + n_faces
    return out


class Batcher:
    def __init__(self, model: DeepfakeModel, batch_size: int, wait_s: float, max_jobs: int,
                 others_coming: Callable[[], bool] = lambda: False, on_batch: Callable[[int, int], None] | None = None) -> None:
        self.model, self.batch_size, self.wait_s = model, batch_size, wait_s
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_jobs)
        self._others_coming = others_coming  # are requests still being detected (worth waiting for)?
        self._on_batch = on_batch  # (faces, jobs) of each scoring call, for the metrics
        self._thread = threading.Thread(target=self._run, name="muflow-scorer", daemon=True)
        self._thread.start()

    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, job: Job) -> Future:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Busy from None
        return job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _collect(self, first: Job) -> tuple[list[Job], bool]:
        jobs, faces = [first], first.faces
        deadline = time.monotonic() + self.wait_s
        while faces < self.batch_size:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or not self._others_coming():
                    break
                try:
                    job = self._queue.get(timeout=min(left, 0.001))
                except queue.Empty:
                    continue
            if job is None:
                return jobs, True
            jobs.append(job)
            faces += job.faces
        return jobs, False

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            groups: dict[tuple, list[Job]] = {}
            for job in jobs:
                if job.future.set_running_or_notify_cancel():  # a request that timed out meanwhile is not scored
                    groups.setdefault(job.key, []).append(job)
            for group in groups.values():
                self._score(group)
            if stop:
                return

    def _score(self, jobs: list[Job]) -> None:
        config = jobs[0].config
        try:
            files = [f for job in jobs for f in job.files]
            shown = [s for job in jobs for s in job.shown]
            chunk = score_chunk(0, files, shown, self.model, config)
            if self._on_batch is not None:
                self._on_batch(sum(j.faces for j in jobs), len(jobs))
            for job, part in zip(jobs, split_scored(chunk.rows, chunk.crops, chunk.maps, jobs)):
                job.future.set_result(part)
        except Exception as exc:  # never leave a request waiting: it answers with the error
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
