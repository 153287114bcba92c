"""Augmented copies of fit faces: the nuisances real photos carry on their way to a scan.

A one-class model flags *any* departure from its reals, and every shared photo has been
re-compressed and resized. With ``muflow fit --augment N`` each single fit face also enters the
flow training as N degraded copies — JPEG re-compression at a random quality, down-up resampling,
mild blur, sensor-like noise, a gamma/colour shift, greyscale — so the flows learn to map a
re-saved real face where the clean one goes. Why not the averages: the Gaussian target is the
signature of real photos that averaging brings out; degrading the averages would widen that
target for every face, while degrading single faces only teaches the flows what to ignore.

Each copy's chain of degradations is drawn from a generator seeded by (seed, face, copy): the
same fit gives the same copies, in any order and on any number of workers.
"""

from __future__ import annotations

import cv2
import numpy as np

# (probability, range) of each degradation; ranges chosen to span what sharing sites and messengers do
# (JPEG quality 40-95, downscales to 40-90 %), not tuned on any evaluation set.
JPEG = (0.5, (40, 95))
RESAMPLE = (0.3, (0.4, 0.9))
BLUR = (0.2, (0.3, 1.2))  # Gaussian sigma, crop pixels
NOISE = (0.2, (1.0, 4.0))  # sigma in 0-255 units
GAMMA = (0.3, (0.8, 1.25))
GREY = 0.1


def degrade(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random chain of degradations of a (S, S, 3) uint8 RGB crop (possibly none of them)."""
    img = crop
    if rng.random() < GAMMA[0]:
        gamma = rng.uniform(*GAMMA[1])
        gain = rng.uniform(0.95, 1.05, size=3)
        img = np.clip(255.0 * (img / 255.0) ** gamma * gain + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < RESAMPLE[0]:
        img = round_trip(img, rng.uniform(*RESAMPLE[1]))
    if rng.random() < BLUR[0]:
        sigma = rng.uniform(*BLUR[1])
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma)
    if rng.random() < NOISE[0]:
        img = np.clip(img + rng.normal(0.0, rng.uniform(*NOISE[1]), img.shape) + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < GREY:
        img = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    if rng.random() < JPEG[0]:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*JPEG[1], endpoint=True))])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(img)


def round_trip(crop: np.ndarray, factor: float) -> np.ndarray:
    """Shrunk by ``factor`` (area) and scaled back up (bicubic): detail gone, size kept."""
    s = crop.shape[0]
    small = cv2.resize(crop, (max(8, round(s * factor)),) * 2, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (s, s), interpolation=cv2.INTER_CUBIC)


class AugmentedRows:
    """Fit crops followed by ``copies`` degraded copies of each, then ``framings`` framed copies of each
    (nn/framing.py), read on demand (nothing held twice). ``valid``: the fit crops' pixel masks; each copy's
    mask is its face's (a degraded copy) or its face's cut (a framed one)."""

    def __init__(self, crops, copies: int, seed: int, valid=None, framings: int = 0, context: float = 1.5) -> None:
        self.crops, self.copies, self.seed = crops, copies, seed
        self.masks, self.framings, self.context = valid, framings, context

    def __len__(self) -> int:
        return len(self.crops) * (1 + self.copies + self.framings)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.crops.shape[1:])

    def _one(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        from muflow_cli.nn.framing import frame

        n = len(self.crops)
        face, copy = i % n, i // n
        crop = self.crops[np.array([face])][0]
        valid = self.masks[np.array([face])][0] if self.masks is not None else None
        rng = np.random.default_rng([self.seed, face, copy])
        if copy == 0:
            return crop, valid
        if copy <= self.copies:
            return degrade(crop, rng), valid
        return frame(crop, valid if valid is not None else np.ones(crop.shape[:2], bool), rng, self.context)

    def _many(self, index) -> list[tuple[np.ndarray, np.ndarray | None]]:
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))  # not np.arange(len(self)): a batch costs O(batch), not O(faces)
        return [self._one(int(i)) for i in np.atleast_1d(index)]

    def __getitem__(self, index) -> np.ndarray:
        return np.stack([c for c, _ in self._many(index)])

    def with_valid(self, index) -> tuple[np.ndarray, np.ndarray]:
        """(crops, pixel masks) of rows ``index``: what a masked fit's feature cache takes."""
        pairs = self._many(index)
        return np.stack([c for c, _ in pairs]), np.stack([v if v is not None else np.ones(c.shape[:2], bool) for c, v in pairs])
