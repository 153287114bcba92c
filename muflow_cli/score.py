"""Scores and p-values: the negative log-likelihood of a face, and how unusual it is.

Per layer l with flow output z (C, H, W), split z into its per-channel spatial mean m and
the residual r = z - m. m follows the Gaussian of the average faces, r a standard normal on
the remaining C(HW - 1) dimensions (an orthonormal change of coordinates, so no Jacobian):

    NLL_l = -log N(m; mu_l, Sigma_l) + (C/2) log(HW) + |r|^2 / 2 + (C(HW-1)/2) log(2 pi) - log|det J_l|

This is a proper density, bounded below, unlike the reference objective (Gaussian on the
pooled vector but log-det over the whole map). The score is the mean over layers of
NLL_l / (C H W), in nats per dimension, so each layer counts the same whatever its size.

p-values are conformal, from the sorted scores of held-out real faces (calibration):
upper p = (1 + #{cal >= s}) / (n + 1), lower p = (1 + #{cal <= s}) / (n + 1),
two-sided p = min(1, 2 min(upper, lower)). On exchangeable reals P(p <= alpha) <= alpha.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .choices import TAILS  # re-exported

if TYPE_CHECKING:  # the NLL works on torch tensors; the p-values (all a scan needs here) on numpy alone
    import torch

    from .target import GaussianTarget


def layer_nll(z: torch.Tensor, log_det: torch.Tensor, target: GaussianTarget) -> torch.Tensor:
    """Per-sample NLL in nats per dimension of one layer's flow output ``z`` (B, C, H, W)."""
    b, c, h, w = z.shape
    hw = h * w
    m = z.mean(dim=(2, 3))
    r = z - m[:, :, None, None]
    nll = (
        -target.log_prob(m)
        + 0.5 * c * math.log(hw)
        + 0.5 * r.pow(2).flatten(1).sum(1)
        + 0.5 * c * (hw - 1) * math.log(2 * math.pi)
        - log_det
    )
    return nll / (c * hw)


def residual_map(z: torch.Tensor) -> torch.Tensor:
    """Per-position share of the residual term, |r(h, w)|^2 / 2 (B, H, W): where a face looks unlike the flow's reals."""
    r = z - z.mean(dim=(2, 3), keepdim=True)
    return 0.5 * r.pow(2).sum(1)


def p_values(scores: np.ndarray, calibration: np.ndarray, tail: str = "two") -> np.ndarray:
    """Conformal p-values of ``scores`` against sorted calibration scores."""
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {TAILS}, not {tail!r}")
    cal = np.sort(np.asarray(calibration, dtype=np.float64))
    s = np.asarray(scores, dtype=np.float64)
    n = len(cal)
    upper = (1 + n - np.searchsorted(cal, s, side="left")) / (n + 1)
    if tail == "upper":
        return upper
    lower = (1 + np.searchsorted(cal, s, side="right")) / (n + 1)
    return np.minimum(1.0, 2 * np.minimum(upper, lower))


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
