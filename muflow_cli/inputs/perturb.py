"""Deterministic image perturbations for robustness evaluation, applied before face detection.

Specs (``--perturb``): ``jpeg:Q`` (re-compress at quality Q), ``webp:Q`` (lossy WebP at quality Q), ``resize:F`` (shrink by factor F
with area averaging, then back up to the original size with bicubic interpolation, so the face
is found at the same size and only detail is lost), ``scale:F`` (shrink by factor F with area averaging
and keep it small: a photo resized for the web, whose faces are then fewer pixels), ``blur:S`` (Gaussian blur, sigma S pixels),
``noise:S`` (additive Gaussian noise, sigma S on a 0–1 scale, seeded by the file's name so a
rerun gives the same pixels), ``flip`` (horizontal mirror), ``none``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from muflow_cli.inputs.compression import Compression


@dataclass(frozen=True)
class Perturbation:
    kind: str
    value: float | None = None

    @property
    def name(self) -> str:
        return self.kind if self.value is None else f"{self.kind}:{self.value:g}"

    def __call__(self, rgb: np.ndarray, key: str = "") -> np.ndarray:
        k, v = self.kind, self.value
        if k == "none":
            return rgb
        if k == "flip":
            return np.ascontiguousarray(rgb[:, ::-1])
        if k == "jpeg":
            ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(v)])
            return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
        if k == "webp":
            ok, buf = cv2.imencode(".webp", rgb[..., ::-1], [cv2.IMWRITE_WEBP_QUALITY, int(v)])
            return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
        if k == "scale":
            h, w = rgb.shape[:2]
            return cv2.resize(rgb, (max(1, round(w * v)), max(1, round(h * v))), interpolation=cv2.INTER_AREA)
        if k == "resize":
            h, w = rgb.shape[:2]
            small = cv2.resize(rgb, (max(1, round(w * v)), max(1, round(h * v))), interpolation=cv2.INTER_AREA)
            return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        if k == "blur":
            return cv2.GaussianBlur(rgb, (0, 0), sigmaX=v, sigmaY=v)
        if k == "noise":
            seed = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()[:8], "little")
            noise = np.random.default_rng(seed).normal(0.0, v * 255.0, rgb.shape)
            return np.clip(rgb.astype(np.float64) + noise + 0.5, 0, 255).astype(np.uint8)
        raise ValueError(f"unknown perturbation {k!r}")

    def compression(self, before: Compression | None) -> Compression | None:
        """What the file's header would say after this perturbation, had it been saved: a JPEG re-save at Q
        says Q; the other perturbations change pixels, not the encoding (the scan reads the header only)."""
        if self.kind == "jpeg":
            return Compression("JPEG", True, float(self.value), "4:2:0")
        if self.kind == "webp":
            return Compression("WEBP", True)
        return before


RANGES = {"jpeg": (1, 100), "webp": (1, 100), "resize": (0.01, 1.0), "scale": (0.01, 1.0), "blur": (0.01, 50.0), "noise": (0.0, 1.0)}


def parse(spec: str) -> Perturbation:
    """``jpeg:75`` -> Perturbation('jpeg', 75.0); raises ValueError with the accepted forms."""
    kind, _, value = spec.strip().partition(":")
    kind = kind.lower()
    if kind in ("none", "flip") and not value:
        return Perturbation(kind)
    if kind not in RANGES or not value:
        raise ValueError(f"bad perturbation {spec!r}: use jpeg:Q, webp:Q, resize:F, scale:F, blur:SIGMA, noise:SIGMA, flip or none")
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"bad perturbation {spec!r}: {value!r} is not a number") from None
    lo, hi = RANGES[kind]
    if not lo <= v <= hi:
        raise ValueError(f"bad perturbation {spec!r}: {kind} takes a value in [{lo:g}, {hi:g}]")
    return Perturbation(kind, v)
