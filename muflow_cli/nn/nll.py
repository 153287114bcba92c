"""The negative log-likelihood of a face's flow outputs: µFlow's score.

Per layer l with flow output z (C, H, W), split z into its per-channel spatial mean m and
the residual r = z - m. m follows the Gaussian of the average faces, r a standard normal on
the remaining C(HW - 1) dimensions (an orthonormal change of coordinates, so no Jacobian):

    NLL_l = -log N(m; mu_l, Sigma_l) + (C/2) log(HW) + |r|^2 / 2 + (C(HW-1)/2) log(2 pi) - log|det J_l|

This is a proper density, bounded below, unlike the reference objective (Gaussian on the
pooled vector but log-det over the whole map). The score is the mean over layers of
NLL_l / (C H W), in nats per dimension, so each layer counts the same whatever its size.

A masked model (nn/masking.py) scores the N positions inside the photo. Written per dimension, the
NLL is a face-level part, [-log N(m) + (C/2) log(HW) - (C/2) log(2 pi)] / (C H W), and the mean over
positions of a per-position part, [|r(h, w)|^2 / 2 + (C/2) log(2 pi) - log|det J_l|(h, w)] / C. The masked
score takes m as the mean over the N positions (r about it) and the per-position part as the mean over
them; the face-level part keeps its denominator. With every position kept this is the formula above; with
fewer, each part estimates what the whole map would give, so a tight crop is not pushed up or down for
having fewer positions (scoring the sub-map as a density of its own would weigh the face-level part by
HW / N, measured in docs/performance.md, "Framing", as a shift of +0.25 nats/dim at a margin of 1.0).
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


def masked_layer_nll(z: torch.Tensor, log_det_map: torch.Tensor, target: GaussianTarget, mask: torch.Tensor) -> torch.Tensor:
    """:func:`layer_nll` over the positions of ``mask`` (B, 1, H, W); ``log_det_map`` (B, H, W) per position."""
    face, residual, log_det = masked_layer_parts(z, log_det_map, target, mask)
    return face + residual + log_det


def masked_layer_parts(z: torch.Tensor, log_det_map: torch.Tensor, target: GaussianTarget,
                       mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three parts of :func:`masked_layer_nll`, each (B,) in nats per dimension, summing to it: the face-level
    Gaussian term of the average faces, the per-position residual (with its normal constant), and minus the flow's
    log-determinant. They answer different questions (docs/method.md, "The score's parts"), so they are
    reported apart for diagnosis (``muflow eval --parts``)."""
    c, hw = z.shape[1], z.shape[2] * z.shape[3]
    n = mask.sum(dim=(1, 2, 3)).clamp_min(1.0)
    m = (z * mask).sum(dim=(2, 3)) / n[:, None]
    r = (z - m[:, :, None, None]) * mask
    face = (-target.log_prob(m) + 0.5 * c * math.log(hw) - 0.5 * c * math.log(2 * math.pi)) / (c * hw)
    residual = (0.5 * r.pow(2).flatten(1).sum(1) + 0.5 * c * math.log(2 * math.pi) * n) / (c * n)
    log_det = -(log_det_map * mask[:, 0]).sum(dim=(1, 2)) / (c * n)
    return face, residual, log_det


def masked_residual_map(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`residual_map` about the masked mean; NaN at the positions outside the photo (not evidence)."""
    n = mask.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1.0)
    r = z - (z * mask).sum(dim=(2, 3), keepdim=True) / n
    return torch.where(mask[:, 0] > 0, 0.5 * r.pow(2).sum(1), torch.full_like(mask[:, 0], float("nan")))
