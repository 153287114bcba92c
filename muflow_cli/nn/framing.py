"""Random framings of fit faces: the crop cut as a headshot, a profile picture or a dataset crop cuts it.

A masked model (nn/masking.py) scores only what lies inside the photo, but the positions near the photo's
edge still see the fill through the backbone's receptive field, and a flow trained on full-context crops
never saw an edge. So a masked fit also trains on copies of each fit face whose crop is cut: each side,
with probability CUT_P, at a uniform place between the crop's edge and the face's core (the template's
face square shrunk to CORE of its side, so a cut may reach into the brow or chin as a tight crop does).
Pixels outside the cut are invalid and filled by reflection across it, as alignment fills the outside of
a photo (faces/align.py). Cuts are axis-aligned in the crop; a photo's edge is, after alignment, usually
turned a little: the mask the scan computes follows it exactly, the training copies approximate it.

Each copy's cut is drawn from a generator seeded by (seed, face, copy), like nn/augment.py's copies.
"""

from __future__ import annotations

import cv2
import numpy as np

CUT_P = 0.5  # chance that a side is cut
CORE = 0.85  # the share of the template's face square that a cut never enters


def frame(crop: np.ndarray, valid: np.ndarray, rng: np.random.Generator, context: float) -> tuple[np.ndarray, np.ndarray]:
    """One random framing of an aligned (S, S, 3) crop and its (S, S) pixel mask."""
    s = crop.shape[0]
    core = 0.5 * s * CORE / context  # half side of the region a cut never enters
    lo, hi = int(np.floor(s / 2 - core)), int(np.ceil(s / 2 + core))
    # left, top, right, bottom edges of what is kept
    x0 = int(rng.integers(0, lo + 1)) if rng.random() < CUT_P else 0
    y0 = int(rng.integers(0, lo + 1)) if rng.random() < CUT_P else 0
    x1 = int(rng.integers(hi, s + 1)) if rng.random() < CUT_P else s
    y1 = int(rng.integers(hi, s + 1)) if rng.random() < CUT_P else s
    kept = np.ascontiguousarray(crop[y0:y1, x0:x1])
    out = cv2.copyMakeBorder(kept, y0, s - y1, x0, s - x1, cv2.BORDER_REFLECT_101)
    cut = np.zeros_like(valid, dtype=bool)
    cut[y0:y1, x0:x1] = True
    return out, valid & cut
