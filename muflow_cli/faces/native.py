"""Native resolution: a face scored at the scale its camera or generator made it, never enlarged.

The standard crop (faces/align.py) warps every face to one S-px crop: a 64-px face is enlarged 2x, a 1024-px
face shrunk 3x, and resampling changes the fine texture where a generator's traces lie. A native crop only
rotates and shifts the face (the similarity's scale set to 1); what it scores depends on the face's size:

- a face whose window (the template's framing at ``context``: what the standard crop shows) is at most S px
  at its own scale: one crop, the window placed 1:1 at the crop's centre. The pixels around the window come
  from the photo (the backbone sees no artificial edge) but are not scored: ``valid`` is False there, as
  it is outside the photo (nn/masking.py);
- a larger face: S-px tiles of its window at scale 1 on an even grid (at most ``MAX_TILES`` a side; they
  overlap where the window is not a whole number of tiles, and leave gaps past MAX_TILES x S px); each tile
  is scored, and the face's score is the tiles' scores pooled (:func:`pool_scores`).

The translation is rounded to whole pixels, so an upright face's crop is a copy of the photo's pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from muflow_cli.choices import NATIVE_POOLS
from muflow_cli.faces.align import inside_mask, similarity, template
from muflow_cli.faces.face import NativeCrops

MAX_TILES = 4  # tiles per side at most: 16 crops for a face whose window exceeds 4 S (about 900 px at 256 and context 1.5)
TOP_SHARE = 0.25  # "top": the highest quarter of the tiles (at least one), where a local trace shows
# Ray's parts carry one aligned crop a face (pipelines/ray/packing.py), not a face's native crops.
NATIVE_NOT_ON_RAY = "a native-resolution model (fit --native) scans and fits on this machine only, not on Ray: leave out --ray"


def tile_offsets(window: float, size: int, max_tiles: int = MAX_TILES) -> np.ndarray:
    """Where S-px tiles start along a window of ``window`` px: evenly spread from 0 to window - S."""
    n = min(max_tiles, math.ceil(window / size - 1e-6))
    return np.linspace(0.0, window - size, n) if n > 1 else np.array([0.0])


def native_crops(image: np.ndarray, landmarks: np.ndarray, size: int = 256, context: float = 1.5,
                 max_tiles: int = MAX_TILES) -> NativeCrops:
    """The native-resolution crops of the face with these 5 ``landmarks`` in ``image`` (see the module's text)."""
    M = similarity(np.asarray(landmarks, np.float64), template(size, context))
    scale = float(np.hypot(M[0, 0], M[1, 0]))
    rot = M[:, :2] / scale
    centre = cv2.invertAffineTransform(M) @ np.array([size / 2, size / 2, 1.0])  # the window's centre, image pixels
    window = size / scale  # the window's side at the face's own scale
    h, w = image.shape[:2]
    corner = np.array([window / 2, window / 2]) - rot @ centre  # the window's frame: its top-left at (0, 0)
    if window <= size:  # one crop, the window at its centre
        offsets = np.full((1, 2), (window - size) / 2)
        lo, hi = (size - window) / 2, (size + window) / 2
    else:  # tiles of the window
        steps = tile_offsets(window, size, max_tiles)
        offsets = np.array([(ox, oy) for oy in steps for ox in steps])
        lo, hi = -1.0, size + 1.0  # every tile lies in the window
    origins = [corner - o for o in offsets]
    grid = np.arange(size) + 0.5
    in_window = (grid >= lo) & (grid <= hi)
    in_window = in_window[:, None] & in_window[None, :]
    crops, valid = [], []
    for origin in origins:
        T = np.hstack([rot, np.round(origin)[:, None]])
        crops.append(cv2.warpAffine(image, T, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101))
        valid.append(inside_mask((h, w), cv2.invertAffineTransform(T), size) & in_window)
    return NativeCrops(np.stack(crops), np.stack(valid), scale, window, offsets)


def window_map(maps: np.ndarray, native: NativeCrops, cells: int) -> np.ndarray:
    """One layer's maps of a face's native crops (P, h, w; NaN where not scored) as one (cells, cells) map over the
    face's window: where the standard crop of the face lies, so a report draws it over that crop. Overlapping tiles
    are averaged; the window is brought to ``cells`` by area averaging of what was scored."""
    size = native.crops.shape[1]
    side = max(1, round(native.window))
    total, count = np.zeros((side, side)), np.zeros((side, side))
    for m, (ox, oy) in zip(maps, np.round(native.offsets).astype(int)):
        up = cv2.resize(np.asarray(m, np.float64), (size, size), interpolation=cv2.INTER_NEAREST)
        x0, y0 = max(ox, 0), max(oy, 0)  # the part of the crop inside the window, in window pixels
        x1, y1 = min(ox + size, side), min(oy + size, side)
        if x1 <= x0 or y1 <= y0:
            continue
        part = up[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        seen = np.isfinite(part)
        total[y0:y1, x0:x1] += np.where(seen, part, 0.0)
        count[y0:y1, x0:x1] += seen
    total = cv2.resize(total, (cells, cells), interpolation=cv2.INTER_AREA)
    count = cv2.resize(count, (cells, cells), interpolation=cv2.INTER_AREA)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 1e-6, total / np.maximum(count, 1e-12), np.nan)


def pool_scores(scores: np.ndarray, owner: np.ndarray, n_faces: int, how: str = "mean") -> np.ndarray:
    """Per face, the pooled score of its crops (``owner``: each crop's face, 0..n_faces-1): ``mean`` or ``top``
    (the mean of the highest TOP_SHARE of them). Crops scored NaN (too little of them in the photo) are left
    out; a face with none left gets NaN. ``scores`` may be (P,) or (P, L): each column is pooled alike, by the
    crops the score (the mean over columns) picks."""
    if how not in NATIVE_POOLS:  # their mean, or the mean of the highest TOP_SHARE
        raise ValueError(f"unknown pooling {how!r}; choose one of {', '.join(NATIVE_POOLS)}")
    scores = np.asarray(scores, np.float64)
    total = scores if scores.ndim == 1 else scores.mean(1)
    out = np.full((n_faces,) + scores.shape[1:], np.nan)
    for face in range(n_faces):
        mine = np.flatnonzero((owner == face) & np.isfinite(total))
        if not len(mine):
            continue
        if how == "top":
            keep = max(1, math.ceil(TOP_SHARE * len(mine)))
            mine = mine[np.argsort(-total[mine], kind="stable")[:keep]]
        out[face] = scores[mine].mean(0)
    return out
