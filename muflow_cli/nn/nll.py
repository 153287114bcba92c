"""The negative log-likelihood of a face's flow outputs: µFlow's score.

Per layer l with flow output z (C, H, W), split z into its per-channel spatial mean m and
the residual r = z - m. m follows the Gaussian of the average faces, r a standard normal on
the remaining C(HW - 1) dimensions (an orthonormal change of coordinates, so no Jacobian):

    NLL_l = -log N(m; mu_l, Sigma_l) + (C/2) log(HW) + |r|^2 / 2 + (C(HW-1)/2) log(2 pi) - log|det J_l|

This is a proper density, bounded below, unlike the reference objective (Gaussian on the
pooled vector but log-det over the whole map). The score is the mean over layers of
NLL_l / (C H W), in nats per dimension, so each layer counts the same whatever its size.
"""

from __future__ import annotations

import math

import torch

from muflow_cli.nn.target import GaussianTarget


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
