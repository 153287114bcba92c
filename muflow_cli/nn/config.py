"""The flows' configuration, torch-free: the model card stores it, nn/flow_model.py builds from it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlowConfig:
    """The flows' shape: coupling steps per layer, subnet width, kernels, log-scale clamp (nn/flow_model.py builds them)."""

    steps: int = 8
    hidden_ratio: float = 1.0
    conv3x3_only: bool = False
    clamp: float = 2.0


# Masking (nn/masking.py), torch-free so that a scan's scoring path reads them without importing torch.
WINDOW_CELLS = 3  # the window around a feature position, in cells of its tap's stride (odd: centred)
MIN_SHARE = 0.5  # the share of that window inside the photo for the position to be scored
MIN_INSIDE = 0.2  # below this share of its crop inside the photo a face is not scored (its row says so)
