"""The face-detection networks, one class per ONNX model (as insightface's model_zoo), each with what
differs between them: how it is loaded, how it runs on a prepared canvas (:meth:`run`: rows of box,
score and 5 landmarks in canvas pixels), its single-pass detection (:meth:`single`), whether a small
image is upsampled to the detector's input size (``upsample``), and its default zoomed-out pass
(``large_pass``). The multi-pass logic that uses them is :class:`muflow_cli.faces.detect.FaceDetector`.

Both give the landmarks in the same order: image-left eye, image-right eye, nose tip, image-left
mouth corner, image-right mouth corner.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from muflow_cli.faces.face import Face
from muflow_cli.faces.scrfd_graph import any_size_graph
from muflow_cli.onnx_session import session
from muflow_cli.weights import manifest, weight_path

# One detection on a canvas: box (x1, y1, x2, y2), score, landmarks (5, 2).
Row = tuple[np.ndarray, float, np.ndarray]


def to_faces(rows: Iterable[Row], sx: float = 1.0, sy: float = 1.0, left: int = 0, top: int = 0) -> list[Face]:
    """Faces in original pixels from rows on a canvas that holds the image scaled by (sx, sy) at (left, top)."""
    faces = []
    for box, score, kp in rows:
        box = (np.asarray(box, np.float64) - [left, top, left, top]) / [sx, sy, sx, sy]
        faces.append(Face(box, score, (np.asarray(kp, np.float64) - [left, top]) / [sx, sy]))
    return faces


class Scrfd:
    """SCRFD-2.5G (InsightFace) on ONNX Runtime, decoded as insightface's ``model_zoo.SCRFD`` decodes it
    (anchor centres, distances, its NMS), without importing insightface (which imports onnx).

    ``any_size``: the patched graph (faces/scrfd_graph.py) that runs canvases of any size that is a
    multiple of 32; else the bundled 640x640 graph as it is, which :meth:`single` then always runs at 640.
    SCRFD was trained on inputs fitted to 640, small images upsampled; its normal pass misses faces above
    ~60% of its input, so the zoomed-out pass runs always (it costs +25% on a square photo)."""

    name = "scrfd"
    upsample = True
    large_pass = "always"
    STRIDES = (8, 16, 32)
    ANCHORS = 2  # per place and stride
    NMS_IOU = 0.4
    MEAN, STD = 127.5, 128.0

    def __init__(self, threshold: float = 0.5, threads: int = 0, any_size: bool = True) -> None:
        path = weight_path("scrfd")
        self.threshold = threshold
        self._session = session(any_size_graph(path, manifest()["scrfd"].sha256) if any_size else str(path), threads)
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        self._outputs = [o.name for o in self._session.get_outputs()]
        if len(self._outputs) != 3 * len(self.STRIDES):
            raise ValueError(f"{path}: expected SCRFD's 9 outputs (scores, boxes, landmarks per stride), found {len(self._outputs)}")
        fixed = all(isinstance(d, int) and d > 0 for d in inp.shape[2:4])
        self._fixed = (inp.shape[3], inp.shape[2]) if fixed else None  # (width, height)
        self._centres: dict[tuple[int, int, int], np.ndarray] = {}

    def run(self, canvas: np.ndarray) -> list[Row]:
        det, kps = self._detect(canvas, (canvas.shape[1], canvas.shape[0]))
        return [(b[:4], float(b[4]), k) for b, k in zip(det, kps)]

    def single(self, bgr: np.ndarray, input_size: int, max_faces: int = 0) -> list[Face]:
        """One pass: the image fitted into ``input_size`` (the graph's own size when it has one), the
        ``max_faces`` largest and most central faces when given (insightface's rule)."""
        det, kps = self._detect(bgr, self._fixed or (input_size, input_size), max_faces)
        return to_faces((b[:4], float(b[4]), k) for b, k in zip(det, kps))

    def _detect(self, img: np.ndarray, size: tuple[int, int], max_num: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(n, 5) boxes with scores and (n, 5, 2) landmarks in ``img`` pixels, best first.

        The contract is insightface's ``SCRFD.detect`` (tests/test_face_graph_cache.py compares the two
        on the same session): the image scaled to fit a ``size`` canvas, anchored top-left; anchors at or
        above the threshold decoded; NMS; with ``max_num``, the largest and most central faces."""
        canvas_w, canvas_h = size
        aspect = float(img.shape[0]) / img.shape[1]
        if aspect > float(canvas_h) / canvas_w:  # taller than the canvas: fill its height
            fit_h = canvas_h
            fit_w = int(fit_h / aspect)
        else:
            fit_w = canvas_w
            fit_h = int(fit_w * aspect)
        scale = float(fit_h) / img.shape[0]
        canvas = np.zeros((canvas_h, canvas_w, 3), dtype=np.uint8)
        canvas[:fit_h, :fit_w, :] = cv2.resize(img, (fit_w, fit_h))
        scores, boxes, kps = self._forward(canvas)
        if not sum(s.size for s in scores):
            return np.empty((0, 5), np.float32), np.empty((0, 5, 2), np.float32)
        best_first = np.argsort(-np.vstack(scores).ravel(), kind="stable")
        det = np.hstack((np.vstack(boxes) / scale, np.vstack(scores))).astype(np.float32, copy=False)[best_first]
        kps = (np.vstack(kps) / scale)[best_first]
        keep = self._nms(det)
        det, kps = det[keep], kps[keep]
        if 0 < max_num < det.shape[0]:
            chosen = self._largest_central(det, img.shape[:2], max_num)
            det, kps = det[chosen], kps[chosen]
        return det, kps

    @staticmethod
    def _largest_central(det: np.ndarray, shape: tuple[int, int], n: int) -> np.ndarray:
        """The ``n`` faces with the most area less twice the squared distance of their centre from the
        image's centre (insightface's rule for ``max_num``)."""
        area = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
        centre_y, centre_x = shape[0] // 2, shape[1] // 2
        off = np.vstack([(det[:, 0] + det[:, 2]) / 2 - centre_x, (det[:, 1] + det[:, 3]) / 2 - centre_y])
        merit = area - np.sum(np.power(off, 2.0), 0) * 2.0
        return np.argsort(merit)[::-1][:n]

    def _forward(self, det_img: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Scores, boxes and landmarks (in det_img pixels) of the anchors at or above the threshold, per stride."""
        blob = cv2.dnn.blobFromImage(det_img, 1.0 / self.STD, det_img.shape[1::-1], (self.MEAN,) * 3, swapRB=True)
        outs = self._session.run(self._outputs, {self._input: np.ascontiguousarray(blob, dtype=np.float32)})
        n = len(self.STRIDES)
        scores_list, boxes_list, kps_list = [], [], []
        for idx, stride in enumerate(self.STRIDES):
            scores, dist, kdist = (outs[idx + k * n] for k in range(3))
            if scores.ndim == 3:  # a batch axis
                scores, dist, kdist = scores[0], dist[0], kdist[0]
            pos = np.where(scores >= self.threshold)[0]
            centres = self._anchor_centres(blob.shape[2] // stride, blob.shape[3] // stride, stride)[pos]
            d, k = dist[pos] * stride, kdist[pos] * stride
            scores_list.append(scores[pos])
            boxes_list.append(np.stack([centres[:, 0] - d[:, 0], centres[:, 1] - d[:, 1],
                                        centres[:, 0] + d[:, 2], centres[:, 1] + d[:, 3]], axis=-1))
            kps_list.append(k.reshape(-1, 5, 2) + centres[:, None, :])
        return scores_list, boxes_list, kps_list

    def _anchor_centres(self, height: int, width: int, stride: int) -> np.ndarray:
        key = (height, width, stride)
        if key not in self._centres:
            centres = (np.stack(np.mgrid[:height, :width][::-1], axis=-1).astype(np.float32) * stride).reshape(-1, 2)
            centres = np.repeat(centres, self.ANCHORS, axis=0)
            if len(self._centres) < 100:
                self._centres[key] = centres
            return centres
        return self._centres[key]

    def _nms(self, dets: np.ndarray) -> list[int]:
        """insightface's SCRFD NMS (its boxes' areas count the end pixels: +1)."""
        x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
        areas = (x2 - x1 + 1) * (y2 - y1 + 1)
        order = np.argsort(-scores, kind="stable")
        keep = []
        while order.size > 0:
            i = order[0]
            keep.append(i)
            w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
            h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
            inter = w * h
            ovr = inter / (areas[i] + areas[order[1:]] - inter)
            order = order[np.where(ovr <= self.NMS_IOU)[0] + 1]
        return keep


class YuNet:
    """YuNet (OpenCV ``FaceDetectorYN``, MIT-licensed weights). Runs a small image as it is (no
    upsampling); it finds frame-filling faces in its normal pass, so the zoomed-out pass is a fallback.
    ``threads`` and ``any_size`` are not used: OpenCV's DNN runs any size, on its own threads."""

    name = "yunet"
    upsample = False
    large_pass = "fallback"

    def __init__(self, threshold: float = 0.5, threads: int = 0, any_size: bool = True) -> None:
        self.threshold = threshold
        self._net = cv2.FaceDetectorYN.create(str(weight_path("yunet")), "", (320, 320), threshold, 0.4, 5000)

    def run(self, canvas: np.ndarray) -> list[Row]:
        self._net.setInputSize((canvas.shape[1], canvas.shape[0]))
        _, out = self._net.detect(canvas)
        return [] if out is None else [((r[0], r[1], r[0] + r[2], r[1] + r[3]), float(r[14]), r[4:14].reshape(5, 2)) for r in out]

    def single(self, bgr: np.ndarray, input_size: int, max_faces: int = 0) -> list[Face]:
        """One pass: the image shrunk to fit ``input_size`` (never enlarged); all faces (the caller keeps
        ``max_faces``)."""
        h, w = bgr.shape[:2]
        r = min(1.0, input_size / max(h, w))
        small = cv2.resize(bgr, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_AREA) if r < 1 else bgr
        return to_faces(self.run(small), r, r)


NETWORKS: dict[str, type[Scrfd] | type[YuNet]] = {"scrfd": Scrfd, "yunet": YuNet}
