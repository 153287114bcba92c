"""Where the torch parts run, and the batch size that suits it."""

from __future__ import annotations

import torch

from .errors import MuflowError


class DeviceError(MuflowError):
    """A device was asked for that this machine does not have."""


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when torch sees one, else the CPU; ``cpu``/``cuda[:N]`` as named."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but torch sees no CUDA device")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {device!r}: use auto, cpu or cuda[:N]") from exc


def default_batch_size(device: torch.device) -> int:
    """Faces scored per batch when the user does not say.

    Measured on a 2-core CPU (benchmarks/scoring.py): batch 8 is the fastest or within noise of it
    for both engines (eager torch: ~25 % more faces/s than 32, depthwise convolutions spill the
    cache at large batches; ONNX Runtime: flat from 1 to 8, a few % slower at 32). CUDA: 32, not
    measured yet.
    """
    return 8 if device.type == "cpu" else 32
