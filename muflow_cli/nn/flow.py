"""FastFlow for one feature layer, assembled from normflows blocks.

Each step: a learned per-channel affine (normflows ``AffineConstFlow``), an affine coupling
over a channel split (``AffineCouplingBlock``) whose conv subnet's log-scales are soft-clamped
to (-clamp, clamp), and a fixed channel shuffle (``Permute``, see ``ChannelShuffle``). Kernels alternate 3x3 / 1x1
as in FastFlow unless ``conv3x3_only``. Like every normflows flow, ``forward`` returns
``(z, log_det)`` with log_det = log|det dz/dx| per sample, and ``inverse`` undoes it.
"""

from __future__ import annotations

import math

import normflows as nf
import torch
from torch import nn


class ClampedConvSubnet(nn.Module):
    """conv-ReLU-conv mapping the kept half to (shift, log-scale) pairs, log-scale soft-clamped.

    normflows' coupling reads shifts from even and log-scales from odd output channels.
    The last conv starts at zero, so every step starts as the identity.
    """

    def __init__(self, in_ch: int, out_ch: int, hidden: int, kernel: int, clamp: float) -> None:
        super().__init__()
        pad = kernel // 2
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, hidden, kernel, padding=pad),
            nn.ReLU(),
            nn.Conv2d(hidden, 2 * out_ch, kernel, padding=pad),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.clamp = clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.net(x)
        shift, raw = p[:, 0::2], p[:, 1::2]
        scale = self.clamp * (2 / math.pi) * torch.atan(raw / self.clamp)
        return torch.stack([shift, scale], dim=2).flatten(1, 2)


class ChannelShuffle(nf.flows.Permute):
    """normflows' ``Permute`` (shuffle mode) with a batch-size-free log-det.

    ``Permute`` returns ``torch.zeros(len(z))``; ``len`` becomes a constant when the graph is
    exported to ONNX, so a graph traced at one batch size would fail at another. A permutation's
    log-det is exactly 0: a scalar zero says so and broadcasts. Buffers (``perm``, ``inv_perm``)
    are the parent's, so saved models load unchanged.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, mode="shuffle")

    def forward(self, z: torch.Tensor, context=None) -> tuple[torch.Tensor, torch.Tensor]:
        return z[:, self.perm], z.new_zeros(())

    def inverse(self, z: torch.Tensor, context=None) -> tuple[torch.Tensor, torch.Tensor]:
        return z[:, self.inv_perm], z.new_zeros(())


class FastFlow(nn.Module):
    """A stack of clamped affine coupling steps on a (C, H, W) feature map."""

    def __init__(
        self, channels: int, steps: int = 8, hidden_ratio: float = 1.0, conv3x3_only: bool = False, clamp: float = 2.0
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError("a coupling flow needs at least 2 channels")
        c1 = (channels + 1) // 2  # torch.chunk puts the odd channel in the first half
        c2 = channels - c1
        hidden = max(8, int(round(channels * hidden_ratio)))
        layers: list[nf.flows.Flow] = []
        for i in range(steps):
            kernel = 1 if (i % 2 == 1 and not conv3x3_only) else 3
            layers.append(nf.flows.AffineConstFlow((channels, 1, 1)))
            layers.append(nf.flows.AffineCouplingBlock(ClampedConvSubnet(c1, c2, hidden, kernel, clamp), scale_map="exp"))
            layers.append(ChannelShuffle(channels))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, per_position: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The layers' arithmetic, op for op, without their intermediate tensors.

        ``per_position``: log_det as a (B, H, W) map, each position's share (its sum is the per-sample
        log-det), so a masked score (nn/nll.py) can count the positions inside the photo only.

        Same result as running ``self.layers`` one after another (``forward_layers``), up to the
        float32 summation order of each coupling's log-det (<= 1e-6 nats/dim, tested), with
        fewer passes over the maps: the subnet's (shift, scale) pairs are not interleaved into
        one tensor and sliced apart again, the coupling block's zero log-dets are not added,
        and the channel shuffle is an ``index_select`` (its backward is a cheap scatter-add;
        advanced indexing's backward is an accumulating ``index_put``). Training spends a
        third of its time outside the convolutions; these passes were a good part of it.
        """
        log_det = x.new_zeros(())  # every coupling adds a (B,) term (a (B, H, W) one per position); no batch size is baked in
        hw = 1 if per_position else x.shape[2] * x.shape[3]
        dims = (1,) if per_position else (1, 2, 3)
        for i in range(0, len(self.layers), 3):
            affine, block, shuffle = self.layers[i], self.layers[i + 1], self.layers[i + 2]
            x = x * torch.exp(affine.s) + affine.t  # AffineConstFlow
            log_det = log_det + hw * torch.sum(affine.s)
            z1, z2 = x.chunk(2, dim=1)  # AffineCouplingBlock: Split, AffineCoupling, Merge
            subnet = block.flows[1].param_map
            p = subnet.net(z1)
            scale = subnet.clamp * (2 / math.pi) * torch.atan(p[:, 1::2] / subnet.clamp)
            z2 = z2 * torch.exp(scale) + p[:, 0::2]
            log_det = log_det + torch.sum(scale, dim=dims)
            x = torch.cat([z1, z2], dim=1).index_select(1, shuffle.perm)  # ChannelShuffle
        return x, log_det

    def forward_layers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` by the book: each normflows layer in turn (the reference the tests compare with)."""
        log_det = x.new_zeros(())
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = z.new_zeros(())
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z)
            log_det = log_det + ld
        return z, log_det
