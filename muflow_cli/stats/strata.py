"""Processing strata: calibration matched to how a scanned image was processed (Mondrian conformal).

A one-class model flags what is unlike its reals, and a real photo re-saved at JPEG 75 or shrunk to half
its size *is* unlike a camera original: against calibration faces taken as they came, such reals are
flagged far more often than the stated rate. A Mondrian conformal p-value compares a face only with
calibration faces in the same stratum — here, processed the same way — and keeps P(p <= alpha) <= alpha
within every stratum, so the rate holds for re-saved and resized reals too.

A stratum is a cell of two axes, both read without looking at pixels:

* compression, from the file's header (inputs/compression.py): ``q90+`` (lossless, or JPEG quality >= 90),
  ``q70-89`` (JPEG 70-89, and lossy files whose quality a header does not give: lossy WebP, decoded video
  frames — a web-bitrate codec loses about what JPEG 70-89 does), ``q<70``;
* scale, from the face's native size: how much alignment enlarged it (the ``upscale`` column: crop pixels
  per original pixel): ``x<=2``, ``x2-4``, ``x>4``. Halving a photo moves its faces one cell along.

Each calibration face's *source image* is re-encoded and shrunk over a grid of processings
(pipelines/strata_calibration.py), found and aligned again as a scan would, and each copy lands in the
cell its own header and face size say. A face is compared with its own cell when that cell holds
MIN_STRATUM_FACES; otherwise with the nearest such cell at least as degraded on both axes (more
degradation makes reals score higher, so the p-value errs toward "real"); when no cell is that full but
some calibration faces were processed at least as hard, with the pooled calibration (too few faces to
stratify); when no calibration face was processed that hard, the model cannot say, and the verdict is
``inconclusive``. A model without strata (calibrated before them) has one
stratum: every face uses the pooled calibration, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from muflow_cli.inputs.compression import Compression

COMPRESSION_LEVELS = ("q90+", "q70-89", "q<70")
QUALITY_EDGES = (90.0, 70.0)  # JPEG quality at or above the first: level 0; at or above the second: level 1
SCALE_LEVELS = ("x<=2", "x2-4", "x>4")
SCALE_EDGES = (2.0, 4.0)  # upscale at most the first: level 0; at most the second: level 1
# The fewest faces whose two-sided conformal p-value can reach 0.05 (2 / (n + 1) <= 0.05): a cell with fewer
# cannot flag anything at the usual rate, so it is not used on its own.
MIN_STRATUM_FACES = 40
POOLED = -1  # the stratum code of a model without strata (and of faces scored against the pooled calibration)


def compression_level(comp: Compression | None) -> int:
    """0, 1 or 2 (COMPRESSION_LEVELS) for what a file's header says; unknown (None, an in-memory array) is
    taken as lossy of unknown quality, level 1."""
    if comp is None or comp.lossy and comp.quality is None:
        return 1
    if not comp.lossy:
        return 0
    return 0 if comp.quality >= QUALITY_EDGES[0] else 1 if comp.quality >= QUALITY_EDGES[1] else 2


def scale_level(upscale: float) -> int:
    """0, 1 or 2 (SCALE_LEVELS) for how much alignment enlarged the face."""
    if not math.isfinite(upscale) or upscale <= SCALE_EDGES[0]:
        return 0
    return 1 if upscale <= SCALE_EDGES[1] else 2


def code(compression: int, scale: int) -> int:
    return compression * len(SCALE_LEVELS) + scale


def levels(stratum: int) -> tuple[int, int]:
    return divmod(stratum, len(SCALE_LEVELS))


def name(stratum: int) -> str:
    """``q70-89/x2-4``; ``pooled`` for a model without strata."""
    if stratum == POOLED:
        return "pooled"
    c, s = levels(stratum)
    return f"{COMPRESSION_LEVELS[c]}/{SCALE_LEVELS[s]}"


def code_of_name(text: str) -> int:
    c, _, s = text.partition("/")
    return code(COMPRESSION_LEVELS.index(c), SCALE_LEVELS.index(s))


def face_stratum(comp: Compression | None, upscale: float) -> int:
    """The stratum a face of a file with this compression, enlarged ``upscale`` times, belongs to."""
    return code(compression_level(comp), scale_level(upscale))


@dataclass(frozen=True)
class Strata:
    """Calibration scores per stratum (each sorted). ``lookup`` says which stratum calibrates a face."""

    scores: dict[int, np.ndarray]

    @classmethod
    def from_pairs(cls, codes: np.ndarray, scores: np.ndarray) -> "Strata":
        codes, scores = np.asarray(codes, np.int64), np.asarray(scores, np.float64)
        keep = np.isfinite(scores)
        return cls({int(c): np.sort(scores[keep & (codes == c)]) for c in np.unique(codes[keep])})

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(codes, scores) in one pair of flat arrays, as the bundle stores them."""
        if not self.scores:
            return np.zeros(0, np.int64), np.zeros(0)
        codes = np.concatenate([np.full(len(v), c, np.int64) for c, v in sorted(self.scores.items())])
        return codes, np.concatenate([v for _, v in sorted(self.scores.items())])

    def counts(self) -> dict[str, int]:
        return {name(c): len(v) for c, v in sorted(self.scores.items())}

    def usable(self) -> list[int]:
        return [c for c, v in sorted(self.scores.items()) if len(v) >= MIN_STRATUM_FACES]

    def lookup(self, stratum: int) -> int | None:
        """The stratum whose scores calibrate a face of ``stratum``: itself when it holds enough faces, else
        the nearest usable one at least as degraded on both axes. When none is usable but some calibration
        faces were processed at least as hard (a small calibration set spread thin), POOLED: the pooled
        calibration, as a model without strata. None when no calibration face was processed that hard."""
        c, s = levels(stratum)
        best = None
        for other in self.usable():
            oc, os_ = levels(other)
            if oc >= c and os_ >= s:
                key = (oc - c + os_ - s, oc, os_)
                if best is None or key < best[0]:
                    best = (key, other)
        if best is not None:
            return best[1]
        covered = any(levels(o)[0] >= c and levels(o)[1] >= s for o in self.scores)
        return POOLED if covered else None
