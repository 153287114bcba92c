"""Which feature positions a face's score may use: those whose window on the crop lies mostly in the photo.

A crop reaches past the photo's edge when the face fills the frame (headshots, profile pictures, dataset
crops); alignment fills those pixels by reflection and says which they are (faces/align.py). A masked model
scores only the feature positions whose window -- ``WINDOW_CELLS`` x ``WINDOW_CELLS`` cells of the tap's
stride, centred on the position -- is at least ``MIN_SHARE`` inside the photo. The layer normalisation is
taken over those positions only and the others are set to 0 (the normalised mean) before the flows, so what
fills the outside cannot move the statistics, and the flows see the same input whatever it was. What is left
of the fill's influence runs through the backbone's receptive field into the positions near the edge; the
window keeps the score off most of it. The numbers are measured in docs/performance.md, "Framing".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from muflow_cli.nn.config import MIN_INSIDE, MIN_SHARE, WINDOW_CELLS  # noqa: F401  (MIN_INSIDE re-exported)

LN_EPS = 1e-5  # torch.nn.functional.layer_norm's


def tap_masks(valid: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Per tap, (B, 1, H, W) float 0/1: the positions to score, from the (B, S, S) pixel mask ``valid``.

    The crop's own border is not the photo's: windows at the crop's edge are measured over their part
    inside the crop (``count_include_pad=False``), so a crop wholly inside the photo keeps every position."""
    v = valid.to(torch.float32)[:, None]
    out = []
    for h, w in sizes:
        cell = F.adaptive_avg_pool2d(v, (h, w)) if v.shape[-1] % w or v.shape[-2] % h else F.avg_pool2d(v, v.shape[-1] // w)
        share = F.avg_pool2d(cell, WINDOW_CELLS, 1, WINDOW_CELLS // 2, count_include_pad=False)
        out.append((share >= MIN_SHARE).to(torch.float32))
    return out


def masked_layer_norm(f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Layer normalisation of (B, C, H, W) ``f`` over the positions of ``mask`` (B, 1, H, W); 0 elsewhere.

    With every position kept it is ``F.layer_norm(f, f.shape[1:])`` (the unmasked models' features)."""
    n = (mask.sum(dim=(1, 2, 3), keepdim=True) * f.shape[1]).clamp_min(1.0)
    mean = (f * mask).sum(dim=(1, 2, 3), keepdim=True) / n
    var = ((f - mean).pow(2) * mask).sum(dim=(1, 2, 3), keepdim=True) / n
    return (f - mean) * torch.rsqrt(var + LN_EPS) * mask
