"""Average faces: the pixel mean of k aligned real crops drawn at random.

Averaging cancels identity, pose and expression and keeps what every image of the source
shares (sensor and compression traces for real photos). The Gaussian target of each layer
is fitted on backbone features of these averages (see target.py).
"""

from __future__ import annotations

import numpy as np


def default_average_plan(n_faces: int, k: int | None = None, m: int | None = None) -> tuple[int, int]:
    """(k crops per average, M averages), adapted to small folders.

    Reference: k = 500, M = 1000 on FFHQ (70k faces). Here k is capped at a quarter of the
    fit faces, so two averages share about a quarter of their crops at most and the finite-pool
    correction (n - k)/(n - 1) stays >= 0.75; M = 2n (at least 64, at most 1000) gives the
    covariance estimate enough samples without pretending they are independent.
    """
    if k is None:
        k = int(min(500, max(2, n_faces // 4)))
    if m is None:
        m = int(min(1000, max(64, 2 * n_faces)))
    if k > n_faces:
        raise ValueError(f"cannot average k={k} crops from {n_faces} faces")
    return k, m


def average_faces(crops: np.ndarray, k: int, m: int, rng: np.random.Generator, batch: int = 64, valid=None):
    """Yield batches of average faces (uint8, (b, S, S, 3)), M in total.

    Each average draws k distinct crops without replacement; computed in float32 and rounded
    back to uint8 because the backbone sees averages exactly as it sees single crops.
    ``valid`` (the crops' (N, S, S) scored pixels): yield (averages, masks) instead, each average's mask the
    pixels scored in at least half of its crops: a native fit's target is pooled where its crops are scored.
    """
    n = len(crops)
    for start in range(0, m, batch):
        b = min(batch, m - start)
        out = np.empty((b,) + crops.shape[1:], np.uint8)
        masks = np.empty((b,) + crops.shape[1:3], bool)
        for i in range(b):
            idx = rng.choice(n, size=k, replace=False)
            out[i] = np.clip(crops[idx].mean(0, dtype=np.float32) + 0.5, 0, 255).astype(np.uint8)
            if valid is not None:
                masks[i] = np.asarray(valid[idx], np.float32).mean(0) >= 0.5
        yield out if valid is None else (out, masks)
