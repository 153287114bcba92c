"""Alignment: a least-squares similarity transform (rotation, uniform scale, translation) of the
5 landmarks onto the ArcFace template, widened by ``context`` so the crop keeps forehead, chin and
some background. A face much larger than the crop is first shrunk with area averaging (no aliasing);
the warp itself uses bicubic interpolation.

Pre-aligned crops (``--aligned``) are mapped from their convention's landmark positions (muflow's,
ArcFace's 112-px crops, FFHQ's) onto the same template.
"""

from __future__ import annotations

import cv2
import numpy as np

from muflow_cli.choices import ALIGNED_CONVENTIONS
from muflow_cli.faces.face import Face

# ArcFace's 5-point template for a 112x112 crop (x, y): insightface's ``face_align.arcface_dst``, which
# insightface stores as float32. Taken from there, every crop moves by ~1e-7 px and every score by ~1e-6
# (measured on t1.jpg), so every table and model would change; the float64 values are kept, and
# tests/test_faces.py checks they are insightface's template.
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def template(size: int, context: float = 1.5) -> np.ndarray:
    """Landmark positions in an aligned ``size`` crop; ``context`` > 1 zooms out around the face."""
    unit = ARCFACE_112 / 112.0 - 0.5
    return (unit / context + 0.5) * size


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


FLAT_TOL = 8  # a row or column whose values span at most this (0-255, every channel) is flat: padding, not photo


def content_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the image less flat rows and columns at its edges (a letterbox, a border someone
    added, the padding of a dataset crop). What lies outside is no more the photo than what alignment fills
    in past its edge, so both are left out of a masked score alike (a headshot and the same headshot on a
    grey border then score the same). A flat edge of the photo itself (an overexposed sky) is left out
    too: it carries nothing of the face."""
    h, w = image.shape[:2]
    img = image if image.ndim == 3 else image[..., None]

    def flat(line: np.ndarray) -> bool:
        return int(line.max()) - int(line.min()) <= FLAT_TOL

    def run(lines) -> int:
        """How many lines from the start are flat (walked inward: a photo without padding costs one line)."""
        n = 0
        for line in lines:
            if not flat(line):
                return n
            n += 1
        return 0  # every line flat: nothing to tell padding from picture

    y0 = run(img[i] for i in range(h))
    y1 = h - run(img[i] for i in range(h - 1, -1, -1))
    x0 = run(img[y0:y1, j] for j in range(w))
    x1 = w - run(img[y0:y1, j] for j in range(w - 1, -1, -1))
    return x0, y0, x1, y1


def align(image: np.ndarray, landmarks: np.ndarray, size: int = 256, context: float = 1.5) -> tuple[np.ndarray, float, np.ndarray]:
    """Warp ``image`` so ``landmarks`` land on :func:`template`; returns (crop, scale, valid).

    ``valid`` (S, S) bool: the crop pixels that come from the image. Where the crop reaches past the
    image's edge (a headshot, a profile picture) the pixels are filled by reflection, so the backbone sees
    no hard edge, but they are not the photo: a masked model (nn/masking.py) does not score them. (Flat
    padding is cut off before alignment, by the caller: :func:`content_box`.)"""
    M = similarity(np.asarray(landmarks, np.float64), template(size, context))
    h_full, w_full = image.shape[:2]
    full_inverse = cv2.invertAffineTransform(M)  # crop -> original pixels, before any shrinking below
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
    return crop, scale, inside_mask((h_full, w_full), full_inverse, size)


def inside_mask(shape: tuple[int, int], inv: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool: crop pixels whose source point (``inv``: crop -> original pixels) lies in an
    image of ``shape`` (h, w)."""
    h, w = shape
    grid = np.arange(size, dtype=np.float64)
    x = inv[0, 0] * grid[None, :] + inv[0, 1] * grid[:, None] + inv[0, 2]
    y = inv[1, 0] * grid[None, :] + inv[1, 1] * grid[:, None] + inv[1, 2]
    return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)


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
    crop, scale, valid = align(image, landmarks, size, context)
    return Face(np.array([0.0, 0.0, w, h]), float("nan"), landmarks, crop, scale, valid)
