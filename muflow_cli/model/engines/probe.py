"""The probe every ONNX graph must pass before it scores: torch's scores of a fixed batch, reproduced."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np

TOLERANCE = 1e-4  # |onnx - torch| <= TOLERANCE * max(1, |torch|), per face and layer
PROBE_KIND = "sinusoid-rgb-noise/seed0/n3+edge-masks"  # what probe_crops and probe_valid draw; stored with each cache entry


def probe_crops(crop_size: int, n: int = 3) -> np.ndarray:
    """Smooth, face-sized synthetic crops (uint8, (n, S, S, 3)): bounded scores, so a relative tolerance
    means something. Deterministic; a cache entry stores their sha256 (:func:`probe_digest`), so a numpy
    that drew other numbers would be noticed, never compared against scores of other crops. Read-only
    (made once per size and process)."""
    return _probe_crops(int(crop_size), int(n))


def probe_valid(crop_size: int, n: int = 3) -> np.ndarray:
    """(n, S, S) uint8 masks for the probe crops: the first wholly inside the photo, the others cut by an
    edge (left 40 %, top 30 %, ...), so a masked graph's masking is checked too. Read-only."""
    return _probe_valid(int(crop_size), int(n))


@functools.lru_cache(maxsize=4)
def _probe_valid(crop_size: int, n: int) -> np.ndarray:
    valid = np.ones((n, crop_size, crop_size), np.uint8)
    for i in range(1, n):
        cut = int(crop_size * (0.4 if i % 2 else 0.3))
        if i % 2:
            valid[i, :, :cut] = 0
        else:
            valid[i, :cut] = 0
    valid.setflags(write=False)
    return valid


@functools.lru_cache(maxsize=4)
def _probe_crops(crop_size: int, n: int) -> np.ndarray:
    yy, xx = np.mgrid[0:crop_size, 0:crop_size] / crop_size
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        base = 128 + 60 * np.sin(2 * np.pi * (xx * (i + 1) + yy * (2 - i % 2)))[..., None] * np.array([1.0, 0.8, 0.6])
        out.append(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8))
    crops = np.stack(out)
    crops.setflags(write=False)
    return crops


def probe_digest(crops: np.ndarray) -> str:
    """sha256 of the probe crops' shape and bytes."""
    h = hashlib.sha256(repr(crops.shape).encode("ascii"))
    h.update(np.ascontiguousarray(crops, dtype=np.uint8).tobytes())
    return h.hexdigest()


def max_relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a))))


def stored_reference(probe: dict[str, Any] | None, digest: str) -> np.ndarray | None:
    """Torch's per-layer scores of the probe as stored at export; None unless they are for these very crops."""
    if not isinstance(probe, dict) or probe.get("kind") != PROBE_KIND or probe.get("crops_sha256") != digest:
        return None
    try:
        layers = np.asarray(probe["layers"], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        return None
    return layers if layers.ndim == 2 and np.all(np.isfinite(layers)) else None
