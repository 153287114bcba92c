"""The trainable part of µFlow as a plain nn.Module: one FastFlow and one Gaussian target per layer."""

from __future__ import annotations

import torch
from torch import nn

from muflow_cli.nn.config import FlowConfig
from muflow_cli.nn.flow import FastFlow
from muflow_cli.nn.nll import layer_nll, masked_layer_nll, masked_layer_parts, masked_residual_map, residual_map
from muflow_cli.nn.target import GaussianTarget

PARTS = ("face", "residual", "logdet")  # the score's parts (parts()), in the order they are returned


class MuFlowModel(nn.Module):
    """Layer-normalised feature maps -> per-layer NLL (nats/dim) and the total score."""

    def __init__(self, channels: list[int], config: FlowConfig = FlowConfig()) -> None:  # noqa: B008 (frozen)
        super().__init__()
        self.config = config
        self.flows = nn.ModuleList(
            FastFlow(c, config.steps, config.hidden_ratio, config.conv3x3_only, config.clamp) for c in channels
        )
        self.targets = nn.ModuleList(GaussianTarget(c) for c in channels)
        # Training only (fit --precision bf16): the flows run under bfloat16 autocast, the Gaussian NLL in
        # float32. Scoring, export and saved models are always float32.
        self.bf16_flows = False
        # Whether scores count only the feature positions inside the photo (nn/masking.py); the card's crop.masked.
        self.masked = False

    def forward(self, feats: list[torch.Tensor], with_maps: bool = False, masks: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """``masks`` (per layer (B, 1, H, W), nn/masking.py): score only those positions; None: every position."""
        layers, maps = [], []
        for i, (x, flow, target) in enumerate(zip(feats, self.flows, self.targets)):
            mask = masks[i] if masks is not None else None
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16_flows):
                z, log_det = flow(x.float(), per_position=mask is not None)
            z, log_det = z.float(), log_det.float()
            if mask is None:
                layers.append(layer_nll(z, log_det, target))
            else:
                mask = mask.to(z.dtype)
                layers.append(masked_layer_nll(z, log_det, target, mask))
            if with_maps:
                maps.append(residual_map(z) if mask is None else masked_residual_map(z, mask))
        per_layer = torch.stack(layers, dim=1)
        out = {"layers": per_layer, "score": per_layer.mean(1)}
        if with_maps:
            out["maps"] = maps
        return out

    def parts(self, feats: list[torch.Tensor], masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """(B, 3, L): per layer, the score's parts (nn/nll.masked_layer_parts, PARTS order); they sum to ``layers``."""
        out = []
        for i, (x, flow, target) in enumerate(zip(feats, self.flows, self.targets)):
            z, log_det = flow(x.float(), per_position=True)
            mask = masks[i].to(z.dtype) if masks is not None else torch.ones_like(z[:, :1])
            out.append(torch.stack(masked_layer_parts(z.float(), log_det.float(), target, mask), dim=1))
        return torch.stack(out, dim=2)
