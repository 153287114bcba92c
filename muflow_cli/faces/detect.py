"""Face detection: every face with a box, a score and 5 landmarks, at any size relative to the frame.

Detectors (faces/networks.py, one class per network): SCRFD-2.5G (InsightFace, on onnxruntime;
default) and YuNet (OpenCV ``FaceDetectorYN``, MIT-licensed weights). Both give a box, a score and
5 landmarks in the same order (image-left eye, image-right eye, nose tip, image-left mouth
corner, image-right mouth corner). This module runs them over several views of an image and
merges what they find. Alignment is faces/align.py.
"""

from __future__ import annotations

import cv2
import numpy as np

from muflow_cli.choices import FACE_DETECTORS as DETECTORS
from muflow_cli.faces.align import align, content_box
from muflow_cli.faces.boxes import iou_matrix
from muflow_cli.faces.face import Face
from muflow_cli.faces.native import native_crops
from muflow_cli.faces.networks import NETWORKS, to_faces

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
MIN_PICTURE = 32  # px: a picture within flat padding smaller than this is taken as the whole image (nothing trimmed)


def _round32(n: float) -> int:
    return max(32, int(np.ceil(n / 32.0)) * 32)


def merge_faces(passes: list[list[Face]], iou: float = NMS_IOU) -> list[Face]:
    """Non-maximum suppression across passes, earlier passes first.

    Passes are ordered finest resolution first, so a face seen by several keeps the landmarks
    of the sharpest view, and a photo the normal pass already covers keeps exactly its faces.
    """
    kept: list[Face] = []
    for faces in passes:
        for f in sorted(faces, key=lambda f: -f.det_score):
            if not kept or iou_matrix(f.box, np.array([k.box for k in kept])).max() < iou:
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
        network = NETWORKS[kind]
        large_pass = large_pass or network.large_pass
        if large_pass not in LARGE_PASS:
            raise ValueError(f"unknown large_pass {large_pass!r}; choose one of {', '.join(LARGE_PASS)}")
        self.kind = kind
        self.threshold = threshold
        self.input_size = input_size
        self.mode = mode
        self.large_pass = large_pass
        self.min_face = float(min_face)
        self._net = network(threshold, threads, any_size=mode != "single")

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
        return self._net.single(bgr, self.input_size, max_faces)

    def _full(self, bgr: np.ndarray) -> list[Face]:
        h, w = bgr.shape[:2]
        side = max(h, w)
        # SCRFD was trained on inputs fitted to 640 (small images upsampled); YuNet runs small images as they are.
        s1 = self.input_size / side if self._net.upsample else min(1.0, self.input_size / side)
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
        return to_faces(self._net.run(canvas), sx, sy, left, top)

    def faces(self, image: np.ndarray, size: int = 256, context: float = 1.5, max_faces: int = 0, native: bool = False) -> list[Face]:
        """Detect and align: every face with its crop filled in (warped from the original image, never a canvas);
        ``native``: its native-resolution crops too (faces/native.py).

        Flat padding at the image's edges (a letterbox, an added border: align.content_box) is not the photo:
        crops are warped from the picture within it, so a padded copy of a headshot gives the headshot's crop."""
        faces = self.detect(image, max_faces=max_faces)
        x0, y0, x1, y1 = content_box(image) if faces else (0, 0, image.shape[1], image.shape[0])
        picture = image[y0:y1, x0:x1] if (x1 - x0 >= MIN_PICTURE and y1 - y0 >= MIN_PICTURE) else image
        shift = np.array([x0, y0], np.float64) if picture is not image else np.zeros(2)
        for f in faces:
            f.crop, f.scale, f.valid = align(picture, f.landmarks - shift, size, context)
            if native:
                f.native = native_crops(picture, f.landmarks - shift, size, context)
        return faces
