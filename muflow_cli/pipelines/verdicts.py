"""From scores to verdicts, for every command that gives one: the p-value against the calibration faces
processed like the face (stats/strata.py), then ``fake``, ``real`` or ``inconclusive`` with its reason.

A verdict is inconclusive when it cannot be trusted as stated:

* no calibration stratum covers the face's processing (compressed harder, or enlarged more, than any
  calibration copy): its p-value would compare it with reals unlike it;
* the face is smaller than any face the model was fitted or calibrated on (``training.min_face_px``);
* the verdict flips under a light re-encode of the face's own pixels (JPEG 90): the verdict then rests on
  detail that an ordinary re-save changes. Only faces whose p-value lies within STABILITY_BAND of the rate
  are re-scored — farther out a JPEG 90 round trip does not move a verdict (docs/method.md, measured) — so
  the check costs a fraction of the scoring, not a second scoring.

The reason goes in the row's ``message``; the p-value stays, so a user can still read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from muflow_cli.inputs.compression import Compression
from muflow_cli.stats.calibration import FAKE, INCONCLUSIVE, REAL, UNCOVERED, Calibration, verdict
from muflow_cli.stats.conformal import bh_reject
from muflow_cli.stats.strata import face_stratum, name

STABILITY_QUALITY = 90  # the light re-encode a verdict must survive
STABILITY_BAND = (0.25, 2.0)  # faces with fpr * 0.25 < p <= fpr * 2 are re-scored


@dataclass
class Judged:
    """Per face: p-value, the stratum that calibrated it (its name), verdict, and why it is inconclusive."""

    p_value: np.ndarray
    stratum: list[str]
    verdict: list[str | None]
    reason: list[str]


def judge(calibration: Calibration, scores: np.ndarray, compressions: Sequence[Compression | None], upscale: Sequence[float],
          face_px: Sequence[float], fpr: float, tail: str | None = None, min_face_px: float = 0.0,
          rescore: Callable[[np.ndarray], np.ndarray] | None = None) -> Judged:
    """Verdicts of faces scored ``scores``. ``rescore(indices)``: the scores of those faces' crops after a JPEG
    STABILITY_QUALITY round trip (None: no stability check)."""
    scores = np.asarray(scores, dtype=np.float64)
    codes = [face_stratum(c, float(u)) for c, u in zip(compressions, upscale)]
    p, used = calibration.matched_p_values(scores, codes, tail)
    verdicts = [verdict(float(x), fpr) for x in p]
    reasons = [""] * len(scores)
    for i in range(len(scores)):
        if np.isnan(scores[i]):
            continue
        if used[i] == UNCOVERED:
            verdicts[i] = INCONCLUSIVE
            reasons[i] = (f"inconclusive: no calibration faces were processed like this one ({name(codes[i])}: "
                          f"{compressions[i].label if compressions[i] else 'unknown compression'}, face enlarged "
                          f"{float(upscale[i]):.1f}x); calibrate on reals like it")
        elif min_face_px and float(face_px[i]) < min_face_px:
            verdicts[i] = INCONCLUSIVE
            reasons[i] = (f"inconclusive: the face is {float(face_px[i]):.0f} px, smaller than any the model was "
                          f"calibrated on ({min_face_px:.0f} px)")
    if rescore is not None:
        lo, hi = STABILITY_BAND[0] * fpr, STABILITY_BAND[1] * fpr
        near = np.flatnonzero([v not in (None, INCONCLUSIVE) and lo < x <= hi for v, x in zip(verdicts, p)])
        if len(near):
            again = np.asarray(rescore(near), dtype=np.float64)
            for i, s in zip(near, again):
                q = float(calibration.p_values_in(np.array([s]), int(used[i]), tail)[0])
                if np.isfinite(q) and verdict(q, fpr) != verdicts[i]:
                    reasons[i] = (f"inconclusive: the verdict ({verdicts[i]}, p {p[i]:.3f}) flips when the face is "
                                  f"re-saved at JPEG {STABILITY_QUALITY} (p {q:.3f})")
                    verdicts[i] = INCONCLUSIVE
    return Judged(p, [name(int(u)) if u != UNCOVERED else "" for u in used], verdicts, reasons)


def jpeg_round_trip(crops: np.ndarray, quality: int = STABILITY_QUALITY) -> np.ndarray:
    """Crops after one JPEG encode and decode (the stability check's light re-encode)."""
    import cv2

    out = np.empty_like(crops)
    for i, c in enumerate(crops):
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(c[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return out



def apply_fdr(table, fdr: float, p_column: str = "p_value"):
    """The table with its conclusive verdicts decided by Benjamini-Hochberg over the whole run at ``fdr``
    (stats/conformal.bh_reject): a face is ``fake`` when rejected, else ``real``; inconclusive ones stay."""
    conclusive = table["verdict"].isin([FAKE, REAL]).fillna(False).to_numpy(bool)
    if conclusive.any():
        rejected = bh_reject(table.loc[conclusive, p_column].to_numpy(float, na_value=np.nan), fdr)
        table.loc[conclusive, "verdict"] = np.where(rejected, FAKE, REAL)
    return table
