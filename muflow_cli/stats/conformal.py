"""Conformal p-values: how unusual a score is among held-out real faces' scores (numpy only).

upper p = (1 + #{cal >= s}) / (n + 1), lower p = (1 + #{cal <= s}) / (n + 1),
two-sided p = min(1, 2 min(upper, lower)). On exchangeable reals P(p <= alpha) <= alpha.
"""

from __future__ import annotations

import numpy as np

from muflow_cli.choices import TAILS


def p_values(scores: np.ndarray, calibration: np.ndarray, tail: str = "two") -> np.ndarray:
    """Conformal p-values of ``scores`` against sorted calibration scores."""
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {TAILS}, not {tail!r}")
    cal = np.sort(np.asarray(calibration, dtype=np.float64))
    s = np.asarray(scores, dtype=np.float64)
    n = len(cal)
    upper = (1 + n - np.searchsorted(cal, s, side="left")) / (n + 1)
    if tail == "upper":
        return np.where(np.isnan(s), np.nan, upper)  # a face not scored has no p-value
    lower = (1 + np.searchsorted(cal, s, side="right")) / (n + 1)
    return np.where(np.isnan(s), np.nan, np.minimum(1.0, 2 * np.minimum(upper, lower)))


def min_attainable_p(n_calibration: int, tail: str = "two") -> float:
    """Smallest p-value n calibration scores can give: verdicts at fpr below it never say fake."""
    return (2.0 if tail == "two" else 1.0) / (n_calibration + 1)


def cutoffs(calibration: np.ndarray, fpr: float, tail: str = "two") -> tuple[float | None, float | None]:
    """Score thresholds equivalent to ``p <= fpr``: flag s < low or s > high (None: never on that side)."""
    cal = np.sort(np.asarray(calibration, dtype=np.float64))
    n = len(cal)
    side = fpr / 2 if tail == "two" else fpr
    k = int(np.floor(side * (n + 1) - 1 + 1e-9))  # at most k calibration scores may lie beyond s
    if k < 0:
        return None, None
    high = float(cal[n - 1 - k]) if k < n else float("-inf")
    low = (float(cal[k]) if k < n else float("inf")) if tail == "two" else None
    return low, high


def bh_reject(p: np.ndarray, q: float) -> np.ndarray:
    """Benjamini-Hochberg at false discovery rate ``q``: which p-values are rejected (flagged).

    Sorted p_(1) <= ... <= p_(m); reject the k smallest for the largest k with p_(k) <= k q / m. Conformal
    p-values of one calibration set are positively dependent (PRDS), under which BH keeps the expected share
    of reals among the flagged faces at most q (Bates et al., 2023). NaN (not scored) is never rejected."""
    p = np.asarray(p, dtype=np.float64)
    out = np.zeros(len(p), bool)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    below = p[order] <= q * np.arange(1, m + 1) / m
    if below.any():
        k = int(np.flatnonzero(below)[-1]) + 1
        out[order[:k]] = True
    return out


def rate_upper_bound(n_calibration: int, fpr: float, tail: str = "two", confidence: float = 0.95) -> float:
    """An upper bound, at ``confidence``, on the false-positive rate one calibration set of ``n_calibration``
    reals actually gives at ``fpr``. The conformal guarantee P(p <= fpr) <= fpr is an average over calibration
    sets; given one set, the rate is Beta(l, n + 1 - l) with l the calibration spacings beyond the cutoffs
    (Vovk 2012, "Conditional validity of inductive conformal predictors"). 0 when nothing can be flagged."""
    sides = 2 if tail == "two" else 1
    k = int(np.floor((fpr / sides) * (n_calibration + 1) - 1 + 1e-9))
    if k < 0:
        return 0.0
    spacings = sides * (k + 1)
    from scipy.stats import beta

    return float(beta(spacings, n_calibration + 1 - spacings).ppf(confidence))
