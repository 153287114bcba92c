"""The per-file stage: read, detect, align, on a pool of threads; never raises for a bad file."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from muflow_cli.faces.align import aligned_face
from muflow_cli.faces.detect import FaceDetector
from muflow_cli.faces.face import Face, FileFaces
from muflow_cli.faces.native import native_crops
from muflow_cli.faces.options import FaceFinding
from muflow_cli.inputs.images import ImageReadError, read_image_record

NO_FACE = "no face found"
NO_FACE_CROP = "no face found (if each image is one aligned face crop, use --aligned)"


def _looks_like_a_crop(width: int, height: int) -> bool:
    """Roughly square and at most 1024 px: the shape of dataset crops and generator outputs."""
    return max(width, height) <= 1024 and 0.75 <= width / height <= 1.34


def faces_in_image(image: np.ndarray, detector: FaceDetector | None, finding: FaceFinding, size: int = 256,
                   context: float = 1.5, native: bool = False) -> list[Face]:
    """Every face of a decoded RGB image as ``finding`` says, aligned to ``size``: one pre-aligned face
    (``finding.aligned``: no detector, :func:`aligned_face`) or what ``detector`` finds; ``native``: with
    their native-resolution crops (faces/native.py), for a native model."""
    if finding.aligned is not None:
        face = aligned_face(image, finding.aligned, size, context)
        if native:
            face.native = native_crops(image, face.landmarks, size, context)
        return [face]
    return detector.faces(image, size=size, context=context, max_faces=finding.max_faces, native=native)


def faces_in_file(
    path: Path | str,
    detector: FaceDetector | None,
    finding: FaceFinding,
    size: int = 256,
    context: float = 1.5,
    transform: Callable[[np.ndarray, str], np.ndarray] | None = None,
    keep_image: bool = False,
    provenance: float | None = None,
    native: bool = False,
) -> FileFaces:
    """Read, (perturb,) detect, align: never raises for a bad file, reports it instead.

    ``transform(rgb, key)`` changes the pixels before detection (evaluation perturbations);
    ``keep_image`` keeps the decoded pixels on the result (for reports); ``provenance`` (a time cap in
    seconds) also reads what the file says about itself, from the same bytes (inputs/provenance.py).
    """
    try:
        record = read_image_record(path, provenance=provenance)
    except ImageReadError as exc:
        return FileFaces(path, exc.status, exc.message, provenance=exc.provenance)
    image, prov, comp = record.pixels, record.provenance, record.compression
    if transform is not None:
        image = transform(image, str(path))
        comp = getattr(transform, "compression", lambda c: c)(comp)  # a re-encoding perturbation says what it made
    try:
        faces = faces_in_image(image, detector, finding, size, context, native)
    except Exception as exc:  # a detector failure on one odd image must not stop a scan
        return FileFaces(path, "error", f"face detection failed: {type(exc).__name__}: {exc}", image_size=image.shape[1::-1],
                         provenance=prov, compression=comp)
    kept = image if keep_image else None
    if not faces:
        message = NO_FACE_CROP if _looks_like_a_crop(image.shape[1], image.shape[0]) else NO_FACE
        return FileFaces(path, "no_face", message, [], image.shape[1::-1], kept, prov, comp)
    return FileFaces(path, "ok", "", faces, image.shape[1::-1], kept, prov, comp)


MAX_WORKERS = 8


def default_workers() -> int:
    """One face-detection worker per CPU core this process may use (at most MAX_WORKERS)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_WORKERS, cores))


class FaceStage:
    """Read + detect + align files on a pool of threads, each with its own single-threaded detector.

    One image per core does more work per second than one image split across all cores (1.3x on two
    cores, docs/performance.md); onnxruntime, OpenCV and numpy release the GIL.
    ``submit`` returns futures in file order, so results never depend on the number of workers.
    ``provenance`` (a time cap in seconds; None: off) reads each file's provenance where its bytes are read;
    ``native``: each face's native-resolution crops too (faces/native.py), for a native model.
    """

    def __init__(
        self,
        finding: FaceFinding,
        make_detector: Callable[[], FaceDetector] | None,
        size: int = 256,
        context: float = 1.5,
        transform: Callable[[np.ndarray, str], np.ndarray] | None = None,
        keep_image: bool = False,
        workers: int = 0,
        provenance: float | None = None,
        native: bool = False,
    ) -> None:
        self.workers = workers or default_workers()
        self.finding, self.size, self.context, self.native = finding, size, context, native
        self.transform, self.keep_image, self.provenance = transform, keep_image, provenance
        self._make = make_detector  # None for pre-aligned crops (FaceFinding.detector_factory)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="muflow-faces")

    def _one(self, path: Path | str) -> FileFaces:
        det = getattr(self._local, "detector", None)
        if det is None and self._make is not None:
            det = self._local.detector = self._make()
        return faces_in_file(path, det, self.finding, self.size, self.context, self.transform, self.keep_image, self.provenance,
                             self.native)

    def submit(self, paths: list) -> list[Future]:
        return [self._pool.submit(self._one, p) for p in paths]

    def map(self, paths: list, ahead: int = 64) -> Iterator[FileFaces]:
        """Results in file order, at most ``ahead`` files in flight (memory stays bounded)."""
        pending: deque[Future] = deque()
        for p in paths:
            pending.append(self._pool.submit(self._one, p))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> FaceStage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
