"""Where the torch parts run, and the batch size that suits it.

Choosing ``auto`` on a machine that cannot have a GPU does not import torch (a second of a
one-image scan): :func:`device_name` answers ``cpu`` from the operating system's device nodes,
and asks torch only where a GPU could be there.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from muflow_cli.errors import MuflowError

if TYPE_CHECKING:
    import torch


class DeviceError(MuflowError):
    """A device was asked for that this machine does not have."""


def _no_gpu_possible() -> bool:
    """True only where torch cannot see a CUDA (or ROCm) device: macOS, or Linux without the NVIDIA,
    WSL or AMD device nodes every driver creates. Elsewhere (Windows, nodes present): unknown, False."""
    if sys.platform == "darwin":
        return True
    if sys.platform.startswith("linux"):
        return not (glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/dxg") or os.path.exists("/dev/kfd"))
    return False


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, without importing torch where no GPU can be there."""
    if "torch" not in sys.modules and _no_gpu_possible():
        return False
    import torch

    return torch.cuda.is_available()


def device_name(device: str | torch.device = "auto") -> str:
    """The device ``pick_device`` would choose, as text (``cpu``, ``cuda``, ``cuda:1``); torch is
    imported only to check a device other than the CPU."""
    if not isinstance(device, str):
        return str(device)
    if device == "cpu" or (device == "auto" and not cuda_available()):
        return "cpu"
    return str(pick_device(device))


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when torch sees one, else the CPU; ``cpu``/``cuda[:N]`` as named."""
    import torch

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


def device_type(device: str | torch.device) -> str:
    """``cpu`` or ``cuda`` (the kind, without an index) of a device or its name."""
    return str(getattr(device, "type", device)).split(":")[0]


def default_batch_size(device: str | torch.device) -> int:
    """Faces scored per batch when the user does not say.

    Measured on a 2-core CPU (benchmarks/scoring.py): batch 8 is the fastest or within noise of it
    for both engines (eager torch: ~25 % more faces/s than 32, depthwise convolutions spill the
    cache at large batches; ONNX Runtime: flat from 1 to 8, a few % slower at 32). CUDA: 32, not
    measured yet.
    """
    return 8 if device_type(device) == "cpu" else 32


def _cpu_has_bf16() -> bool:
    """Native bfloat16 arithmetic (AVX512-BF16 or AMX, from /proc/cpuinfo): elsewhere oneDNN emulates it,
    and a bf16 step is no faster than an fp32 one."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_precision(requested: str, device: str | torch.device) -> str:
    """``fp32``/``bf16`` as asked; ``auto``: bf16 where the hardware does it natively (a CUDA device with
    bf16, a CPU with AVX512-BF16 or AMX), else fp32. benchmarks/fit_precision.py: a bf16-trained model's
    scores differ from fp32's by far less than two fp32 seeds differ (docs/performance.md)."""
    if requested != "auto":
        return requested
    if device_type(device) == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if _cpu_has_bf16() else "fp32"
