"""Faces: detect every face with 5 landmarks, and align each onto a fixed template.

Detectors: SCRFD-2.5G (InsightFace, via insightface's ``SCRFD`` on onnxruntime; default)
and YuNet (OpenCV ``FaceDetectorYN``, MIT-licensed weights). Both give a box, a score and
5 landmarks in the same order (image-left eye, image-right eye, nose tip, image-left mouth
corner, image-right mouth corner).

Alignment is a least-squares similarity transform (rotation, uniform scale, translation)
of the 5 landmarks onto the ArcFace template, widened by ``context`` so the crop keeps
forehead, chin and some background. A face much larger than the crop is first shrunk with
area averaging (no aliasing); the warp itself uses bicubic interpolation.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from .weights import weight_path

# ArcFace 5-point template for a 112x112 crop (x, y).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
DETECTORS = ("scrfd", "yunet")


def template(size: int, context: float = 1.5) -> np.ndarray:
    """Landmark positions in an aligned ``size`` crop; ``context`` > 1 zooms out around the face."""
    unit = ARCFACE_112 / 112.0 - 0.5
    return (unit / context + 0.5) * size


@dataclass
class Face:
    """One detected face in original-image pixels, plus its aligned crop."""

    box: np.ndarray  # x1, y1, x2, y2
    det_score: float
    landmarks: np.ndarray  # (5, 2)
    crop: np.ndarray | None = None  # (S, S, 3) uint8 RGB
    scale: float = 1.0  # crop pixels per original pixel (>1: the face was upsampled)

    @property
    def size_px(self) -> float:
        """Face size in the original image: geometric mean of the box's width and height."""
        w, h = self.box[2] - self.box[0], self.box[3] - self.box[1]
        return float(np.sqrt(max(w, 0) * max(h, 0)))


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama) mapping ``src`` points to ``dst``; 2x3."""
    from skimage.transform import SimilarityTransform

    if hasattr(SimilarityTransform, "from_estimate"):
        tf = SimilarityTransform.from_estimate(src, dst)
        if not tf:
            raise ValueError("degenerate landmarks")
    else:  # scikit-image < 0.26
        tf = SimilarityTransform()
        if not tf.estimate(src, dst):
            raise ValueError("degenerate landmarks")
    return np.asarray(tf.params[:2], dtype=np.float64)


def align(image: np.ndarray, landmarks: np.ndarray, size: int = 256, context: float = 1.5) -> tuple[np.ndarray, float]:
    """Warp ``image`` so ``landmarks`` land on :func:`template`; returns (crop, scale)."""
    M = similarity(np.asarray(landmarks, np.float64), template(size, context))
    scale = float(np.hypot(M[0, 0], M[1, 0]))
    if scale < 0.75:
        # Shrink the region around the face with area averaging first, so the bicubic warp
        # below only rotates and shifts (resampling a large face straight down aliases).
        inv = cv2.invertAffineTransform(M)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inv.T
        x0, y0 = np.floor(corners.min(0)).astype(int) - 2
        x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
        h, w = image.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 > x0 and y1 > y0:
            region = image[y0:y1, x0:x1]
            rw, rh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
            region = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
            sx, sy = rw / (x1 - x0), rh / (y1 - y0)
            # Original pixel p maps to region pixel ((p - x0) * sx); fold that into M.
            pre = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy], [0, 0, 1]])
            M = M @ np.linalg.inv(pre)
            image = region
    crop = cv2.warpAffine(image, M, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    return crop, scale


class FaceDetector:
    """Finds faces (box, score, 5 landmarks) in RGB images."""

    def __init__(self, kind: str = "scrfd", threshold: float = 0.5, input_size: int = 640, threads: int = 0) -> None:
        if kind not in DETECTORS:
            raise ValueError(f"unknown face detector {kind!r}; choose one of {', '.join(DETECTORS)}")
        self.kind = kind
        self.threshold = threshold
        self.input_size = input_size
        if kind == "scrfd":
            import onnxruntime as ort
            from insightface.model_zoo.scrfd import SCRFD

            path = str(weight_path("scrfd"))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.log_severity_level = 3
            session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
            self._scrfd = SCRFD(model_file=path, session=session)
            self._scrfd.det_thresh = threshold
        else:
            self._yunet = cv2.FaceDetectorYN.create(str(weight_path("yunet")), "", (320, 320), threshold, 0.4, 5000)

    def detect(self, image: np.ndarray, max_faces: int = 0) -> list[Face]:
        """All faces in an (H, W, 3) uint8 RGB image, largest detection score first."""
        bgr = np.ascontiguousarray(image[..., ::-1])
        if self.kind == "scrfd":
            boxes, kps = self._scrfd.detect(bgr, input_size=(self.input_size, self.input_size), max_num=max_faces)
            faces = [Face(b[:4].astype(np.float64), float(b[4]), k.astype(np.float64)) for b, k in zip(boxes, kps)]
        else:
            faces = self._detect_yunet(bgr)
        faces.sort(key=lambda f: -f.det_score)
        return faces[:max_faces] if max_faces else faces

    def _detect_yunet(self, bgr: np.ndarray) -> list[Face]:
        h, w = bgr.shape[:2]
        r = min(1.0, self.input_size / max(h, w))
        small = cv2.resize(bgr, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_AREA) if r < 1 else bgr
        self._yunet.setInputSize((small.shape[1], small.shape[0]))
        _, rows = self._yunet.detect(small)
        faces = []
        for row in [] if rows is None else rows:
            x, y, bw, bh = row[:4] / r
            faces.append(Face(np.array([x, y, x + bw, y + bh]), float(row[14]), row[4:14].reshape(5, 2).astype(np.float64) / r))
        return faces

    def faces(self, image: np.ndarray, size: int = 256, context: float = 1.5, max_faces: int = 0) -> list[Face]:
        """Detect and align: every face with its crop filled in."""
        faces = self.detect(image, max_faces=max_faces)
        for f in faces:
            f.crop, f.scale = align(image, f.landmarks, size, context)
        return faces


@dataclass
class FileFaces:
    """What one file gave: a status for the table, a message, and its faces."""

    path: "object"
    status: str  # ok | no_face | unreadable | too_large | error
    message: str = ""
    faces: list[Face] | None = None
    image_size: tuple[int, int] | None = None  # (width, height)
    image: np.ndarray | None = None  # the decoded RGB pixels, when asked for


def faces_in_file(
    path, detector: FaceDetector, size: int = 256, context: float = 1.5, max_faces: int = 0, transform=None, keep_image: bool = False
) -> FileFaces:
    """Read, (perturb,) detect, align: never raises for a bad file, reports it instead.

    ``transform(rgb, key)`` changes the pixels before detection (evaluation perturbations);
    ``keep_image`` keeps the decoded pixels on the result (for reports).
    """
    from .images import ImageReadError, read_image

    try:
        image = read_image(path)
    except ImageReadError as exc:
        return FileFaces(path, exc.status, exc.message)
    if transform is not None:
        image = transform(image, str(path))
    try:
        faces = detector.faces(image, size=size, context=context, max_faces=max_faces)
    except Exception as exc:  # a detector failure on one odd image must not stop a scan
        return FileFaces(path, "error", f"face detection failed: {type(exc).__name__}: {exc}", image_size=image.shape[1::-1])
    kept = image if keep_image else None
    if not faces:
        return FileFaces(path, "no_face", "no face found", [], image.shape[1::-1], kept)
    return FileFaces(path, "ok", "", faces, image.shape[1::-1], kept)


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
    """

    def __init__(
        self,
        make_detector: Callable[[], FaceDetector],
        size: int = 256,
        context: float = 1.5,
        max_faces: int = 0,
        transform=None,
        keep_image: bool = False,
        workers: int = 0,
    ) -> None:
        self.workers = workers or default_workers()
        self._make = make_detector
        self._args = (size, context, max_faces, transform, keep_image)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="muflow-faces")

    def _one(self, path) -> FileFaces:
        det = getattr(self._local, "detector", None)
        if det is None:
            det = self._local.detector = self._make()
        return faces_in_file(path, det, *self._args)

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

    def __enter__(self) -> "FaceStage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
