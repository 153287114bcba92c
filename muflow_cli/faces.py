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

from .choices import ALIGNED_CONVENTIONS, FACE_DETECTORS as DETECTORS  # re-exported
from .errors import ConfigError
from .weights import weight_path

# ArcFace 5-point template for a 112x112 crop (x, y).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


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


def _ffhq_unit_landmarks() -> np.ndarray:
    """Where an FFHQ-style aligned crop puts the 5 landmarks, as fractions of its side.

    FFHQ's alignment builds an oriented square from the eyes and mouth: with ``e`` the eye
    midpoint, ``d`` = right eye - left eye and ``m`` = mouth midpoint - ``e``, the square's
    half-axis is ``x`` = (d - rot90(m)) normalised and scaled to max(2|d|, 1.8|m|), ``y`` is ``x``
    turned 90 degrees, and its centre is e + 0.1 m; the crop is that square. Applying the same
    construction to the ArcFace template points (eye centres and mouth corners, in place of the
    68-point means FFHQ used) and expressing the points in the square's frame gives the positions.
    """
    eye_l, eye_r, _, mouth_l, mouth_r = ARCFACE_112
    eye_avg, d = (eye_l + eye_r) / 2, eye_r - eye_l
    m = (mouth_l + mouth_r) / 2 - eye_avg
    x = d - np.array([-m[1], m[0]])
    x *= max(np.hypot(*d) * 2.0, np.hypot(*m) * 1.8) / np.hypot(*x)
    y = np.array([-x[1], x[0]])
    corner = eye_avg + 0.1 * m - x - y  # the square's top-left corner
    rel = ARCFACE_112 - corner
    side = 2 * np.hypot(*x)
    return np.stack([rel @ x, rel @ y], axis=1) / (np.hypot(*x) * side)


def aligned_landmarks(width: int, height: int, convention: str = "muflow") -> np.ndarray:
    """The 5 landmark positions a ``convention``'s aligned crop of this size puts them at (pixels)."""
    if convention == "muflow":
        unit = template(1, 1.5)
    elif convention == "arcface":
        unit = template(1, 1.0)
    elif convention == "ffhq":
        unit = _ffhq_unit_landmarks()
    else:
        raise ValueError(f"unknown aligned-crop convention {convention!r}; choose one of {', '.join(ALIGNED_CONVENTIONS)}")
    return unit * [width, height]


def aligned_face(image: np.ndarray, convention: str = "muflow", size: int = 256, context: float = 1.5) -> Face:
    """The whole image as ONE already-aligned face, re-aligned onto muflow's template.

    For images that are face crops already (datasets, generator outputs, ``--save-faces``): no
    detector runs, so frame-filling faces and faces a detector misses are still scored. The
    landmarks are where ``convention`` puts them; ``det_score`` is NaN (nothing was detected);
    box = the whole image. A ``muflow`` crop at the same size and context maps by a plain resize.
    """
    h, w = image.shape[:2]
    landmarks = aligned_landmarks(w, h, convention)
    crop, scale = align(image, landmarks, size, context)
    return Face(np.array([0.0, 0.0, w, h]), float("nan"), landmarks, crop, scale)


MODES = ("full", "single")
LARGE_PASS = ("always", "fallback", "off")
# Face size (detector-input pixels) found reliably in tiles: sets the tiling scale (a 32-px face
# tiled at 2/3 scale, 21 px, was found 20 of 21 times; at 16 px 4 of 21; benchmarks/face_recall.py).
MIN_DETECTABLE_PX = 24.0
# The zoomed-out pass: the image's longer side in detector pixels, centred on a canvas twice as large
# (a frame-filling face is then at most half the detector input; both detectors miss faces above ~60%).
ZOOM_OUT_PX = 160
# Of the zoomed-out pass, keep only faces at least this fraction of the image's longer side:
# smaller ones are the normal pass's job, and at 160 px they would be coarse (or false).
ZOOM_OUT_MIN_FRACTION = 0.25
TILE_PX = 1024  # tile side for the high-resolution pass (bounds memory per worker)
TILE_OVERLAP_PX = 128  # any face up to this size lies whole in some tile
NMS_IOU = 0.4


def _scrfd_any_size(path: str, threads: int):
    """SCRFD on onnxruntime, accepting any input size that is a multiple of 32.

    The bundled graph is exported for 640x640 (fixed shapes, and its two FPN upsamplings
    name their output sizes). Making the input symbolic and the upsamplings "x2" gives
    the same outputs at 640 (to 1e-6) and lets one session run small canvases for the
    zoomed-out pass and large tiles for small faces, at a cost proportional to their area.
    """
    import onnx
    import onnxruntime as ort
    from insightface.model_zoo.scrfd import SCRFD
    from onnx import numpy_helper

    model = onnx.load(path)
    for node in model.graph.node:
        if node.op_type == "Resize" and len(node.input) == 4:  # (X, roi, scales, sizes)
            name = f"{node.name}_x2"
            model.graph.initializer.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), name))
            node.input[2] = name
            del node.input[3]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[1].dim_param = "anchors"
    del model.graph.value_info[:]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    return SCRFD(model_file=None, session=session)


def _round32(n: float) -> int:
    return max(32, int(np.ceil(n / 32.0)) * 32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def merge_faces(passes: list[list[Face]], iou: float = NMS_IOU) -> list[Face]:
    """Non-maximum suppression across passes, earlier passes first.

    Passes are ordered finest resolution first, so a face seen by several keeps the landmarks
    of the sharpest view, and a photo the normal pass already covers keeps exactly its faces.
    """
    kept: list[Face] = []
    for faces in passes:
        for f in sorted(faces, key=lambda f: -f.det_score):
            if not kept or _iou(f.box, np.array([k.box for k in kept])).max() < iou:
                kept.append(f)
    return kept


class FaceDetector:
    """Finds faces (box, score, 5 landmarks) in RGB images, at any size relative to the frame.

    ``mode="full"`` (default) runs up to three passes and merges them (:func:`merge_faces`):

    * normal: the image fitted into ``input_size`` (as before);
    * zoomed out (``large_pass``): the image at 160 px centred on a 320-px black canvas, for faces
      that fill the frame (SCRFD misses faces above ~60% of its input); ``"always"``, ``"fallback"``
      (only when the normal pass finds nothing) or ``"off"``. Default (None): ``"always"`` for
      SCRFD (it costs that pass's area: +25% on a square photo), ``"fallback"`` for YuNet, which
      found every frame-filling face of the benchmark in its normal pass;
    * tiles: when ``min_face`` (px in the original image) is below what the normal pass can
      see in a large image, the image at the scale that makes ``min_face`` detectable (at most
      native), cut into overlapping 1024-px tiles. Off by default (``min_face=0``): it costs
      time proportional to the image's area (docs/performance.md, "Face finding").

    ``mode="single"`` is the detector as it was before: one pass at ``input_size``.
    """

    def __init__(
        self,
        kind: str = "scrfd",
        threshold: float = 0.5,
        input_size: int = 640,
        threads: int = 0,
        *,
        mode: str = "full",
        large_pass: str | None = None,
        min_face: float = 0.0,
    ) -> None:
        if kind not in DETECTORS:
            raise ValueError(f"unknown face detector {kind!r}; choose one of {', '.join(DETECTORS)}")
        if mode not in MODES:
            raise ValueError(f"unknown detection mode {mode!r}; choose one of {', '.join(MODES)}")
        large_pass = large_pass or ("always" if kind == "scrfd" else "fallback")
        if large_pass not in LARGE_PASS:
            raise ValueError(f"unknown large_pass {large_pass!r}; choose one of {', '.join(LARGE_PASS)}")
        self.kind = kind
        self.threshold = threshold
        self.input_size = input_size
        self.mode = mode
        self.large_pass = large_pass
        self.min_face = float(min_face)
        if kind == "scrfd":
            path = str(weight_path("scrfd"))
            if mode == "single":
                import onnxruntime as ort
                from insightface.model_zoo.scrfd import SCRFD

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.log_severity_level = 3
                session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
                self._scrfd = SCRFD(model_file=path, session=session)
            else:
                self._scrfd = _scrfd_any_size(path, threads)
            self._scrfd.det_thresh = threshold
        else:
            self._yunet = cv2.FaceDetectorYN.create(str(weight_path("yunet")), "", (320, 320), threshold, 0.4, 5000)

    def detect(self, image: np.ndarray, max_faces: int = 0) -> list[Face]:
        """All faces in an (H, W, 3) uint8 RGB image, in original pixels, largest detection score first."""
        bgr = np.ascontiguousarray(image[..., ::-1])
        if self.mode == "single":
            faces = self._single(bgr, max_faces)
        else:
            faces = self._full(bgr)
        faces.sort(key=lambda f: -f.det_score)
        return faces[:max_faces] if max_faces else faces

    def _single(self, bgr: np.ndarray, max_faces: int) -> list[Face]:
        if self.kind == "scrfd":
            boxes, kps = self._scrfd.detect(bgr, input_size=(self.input_size, self.input_size), max_num=max_faces)
            return [Face(b[:4].astype(np.float64), float(b[4]), k.astype(np.float64)) for b, k in zip(boxes, kps)]
        h, w = bgr.shape[:2]
        r = min(1.0, self.input_size / max(h, w))
        small = cv2.resize(bgr, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_AREA) if r < 1 else bgr
        return self._on_canvas(small, r, 0, 0)

    def _full(self, bgr: np.ndarray) -> list[Face]:
        h, w = bgr.shape[:2]
        side = max(h, w)
        # SCRFD was trained on inputs fitted to 640 (small images upsampled); YuNet runs small images as they are.
        s1 = self.input_size / side if self.kind == "scrfd" else min(1.0, self.input_size / side)
        normal, small = self._pass(bgr, s1, border=0.0)
        passes = [normal]
        if self.min_face > 0:
            s_tile = min(1.0, MIN_DETECTABLE_PX / self.min_face)
            if s_tile > 1.25 * s1:
                passes.insert(0, self._tiles(bgr, s_tile, max_face=MIN_DETECTABLE_PX * 2 / s1))
        if self.large_pass == "always" or (self.large_pass == "fallback" and not normal):
            s2 = ZOOM_OUT_PX / side
            if s2 < s1:
                # resized from the normal pass's copy: one pass over a large image's pixels, not two
                big, _ = self._pass(small, s2 / s1, border=0.5)
                passes.append([f for f in self._rescale(big, s1) if f.size_px >= ZOOM_OUT_MIN_FRACTION * side])
        return merge_faces(passes)

    @staticmethod
    def _rescale(faces: list[Face], scale: float) -> list[Face]:
        for f in faces:
            f.box, f.landmarks = f.box / scale, f.landmarks / scale
        return faces

    def _pass(self, bgr: np.ndarray, scale: float, border: float) -> tuple[list[Face], np.ndarray]:
        """Detect on the image resized by ``scale`` with ``border`` x its size of black on each side.

        Returns the faces in ``bgr``'s pixels, and the resized image."""
        h, w = bgr.shape[:2]
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        small = cv2.resize(bgr, (sw, sh), interpolation=interp) if (sw, sh) != (w, h) else bgr
        cw, ch = _round32(sw * (1 + 2 * border)), _round32(sh * (1 + 2 * border))
        left, top = (cw - sw) // 2 if border else 0, (ch - sh) // 2 if border else 0
        canvas = cv2.copyMakeBorder(small, top, ch - sh - top, left, cw - sw - left, cv2.BORDER_CONSTANT, value=0)
        return self._on_canvas(canvas, scale, left, top, sx=sw / w, sy=sh / h), small

    def _tiles(self, bgr: np.ndarray, scale: float, max_face: float) -> list[Face]:
        """Small faces: overlapping tiles of the image at ``scale``; faces cut by an inner tile edge are dropped."""
        h, w = bgr.shape[:2]
        sw, sh = round(w * scale), round(h * scale)
        big = cv2.resize(bgr, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else bgr
        step = TILE_PX - TILE_OVERLAP_PX
        xs = list(range(0, max(sw - TILE_PX, 0), step)) + [max(sw - TILE_PX, 0)]
        ys = list(range(0, max(sh - TILE_PX, 0), step)) + [max(sh - TILE_PX, 0)]
        faces: list[Face] = []
        for y0 in ys:
            for x0 in xs:
                tile = big[y0 : y0 + TILE_PX, x0 : x0 + TILE_PX]
                th, tw = tile.shape[:2]
                canvas = cv2.copyMakeBorder(tile, 0, _round32(th) - th, 0, _round32(tw) - tw, cv2.BORDER_CONSTANT, value=0)
                for f in self._on_canvas(canvas, 1.0, 0, 0):
                    x1, y1, x2, y2 = f.box
                    cut = (x0 > 0 and x1 < 2) or (y0 > 0 and y1 < 2) or (x0 + tw < sw and x2 > tw - 2) or (y0 + th < sh and y2 > th - 2)
                    if not cut:
                        f.box = (f.box + [x0, y0, x0, y0]) / [sw / w, sh / h, sw / w, sh / h]
                        f.landmarks = (f.landmarks + [x0, y0]) / [sw / w, sh / h]
                        faces.append(f)
        return [f for f in merge_faces([faces]) if f.size_px <= max_face]

    def _on_canvas(self, canvas: np.ndarray, scale: float, left: int, top: int, sx: float = 0, sy: float = 0) -> list[Face]:
        """Run the network on a prepared canvas; map boxes and landmarks back to original pixels."""
        sx, sy = sx or scale, sy or scale
        if self.kind == "scrfd":
            ch, cw = canvas.shape[:2]
            boxes, kps = self._scrfd.detect(canvas, input_size=(cw, ch))
            rows = [(b[:4], float(b[4]), k) for b, k in zip(boxes, kps)]
        else:
            self._yunet.setInputSize((canvas.shape[1], canvas.shape[0]))
            _, out = self._yunet.detect(canvas)
            rows = [] if out is None else [((r[0], r[1], r[0] + r[2], r[1] + r[3]), float(r[14]), r[4:14].reshape(5, 2)) for r in out]
        faces = []
        for box, score, kp in rows:
            box = (np.asarray(box, np.float64) - [left, top, left, top]) / [sx, sy, sx, sy]
            faces.append(Face(box, score, (np.asarray(kp, np.float64) - [left, top]) / [sx, sy]))
        return faces

    def faces(self, image: np.ndarray, size: int = 256, context: float = 1.5, max_faces: int = 0) -> list[Face]:
        """Detect and align: every face with its crop filled in (warped from the original image, never a canvas)."""
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


NO_FACE = "no face found"
def check_face_finding(face_detector: str | None, aligned: str | None, min_face: float = 0.0) -> None:
    """The face-finding settings every pipeline shares."""
    if face_detector is not None and face_detector not in DETECTORS:
        raise ConfigError(f"face detector must be one of {', '.join(DETECTORS)}")
    if aligned is not None and aligned not in ALIGNED_CONVENTIONS:
        raise ConfigError(f"aligned must be one of {', '.join(ALIGNED_CONVENTIONS)}")
    if min_face < 0:
        raise ConfigError("min_face must be at least 0")


NO_FACE_CROP = "no face found (if each image is one aligned face crop, use --aligned)"


def _looks_like_a_crop(width: int, height: int) -> bool:
    """Roughly square and at most 1024 px: the shape of dataset crops and generator outputs."""
    return max(width, height) <= 1024 and 0.75 <= width / height <= 1.34


def faces_in_file(
    path,
    detector: FaceDetector | None,
    size: int = 256,
    context: float = 1.5,
    max_faces: int = 0,
    transform=None,
    keep_image: bool = False,
    aligned: str | None = None,
) -> FileFaces:
    """Read, (perturb,) detect, align: never raises for a bad file, reports it instead.

    ``transform(rgb, key)`` changes the pixels before detection (evaluation perturbations);
    ``keep_image`` keeps the decoded pixels on the result (for reports); ``aligned`` (one of
    :data:`ALIGNED_CONVENTIONS`) skips detection: the image is one aligned face (:func:`aligned_face`).
    """
    from .images import ImageReadError, read_image

    try:
        image = read_image(path)
    except ImageReadError as exc:
        return FileFaces(path, exc.status, exc.message)
    if transform is not None:
        image = transform(image, str(path))
    try:
        if aligned is not None:
            faces = [aligned_face(image, aligned, size, context)]
        else:
            faces = detector.faces(image, size=size, context=context, max_faces=max_faces)
    except Exception as exc:  # a detector failure on one odd image must not stop a scan
        return FileFaces(path, "error", f"face detection failed: {type(exc).__name__}: {exc}", image_size=image.shape[1::-1])
    kept = image if keep_image else None
    if not faces:
        message = NO_FACE_CROP if _looks_like_a_crop(image.shape[1], image.shape[0]) else NO_FACE
        return FileFaces(path, "no_face", message, [], image.shape[1::-1], kept)
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
        aligned: str | None = None,
    ) -> None:
        self.workers = workers or default_workers()
        self._make = make_detector
        self._args = (size, context, max_faces, transform, keep_image, aligned)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="muflow-faces")

    def _one(self, path) -> FileFaces:
        det = getattr(self._local, "detector", None)
        if det is None and self._args[-1] is None:  # --aligned needs no detector
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
