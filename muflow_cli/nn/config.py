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
