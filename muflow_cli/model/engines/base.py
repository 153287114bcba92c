"""What every scoring engine is: crops in, per-layer scores (and residual maps) out.

Two engines satisfy it: eager torch (torch_engine.py) and one ONNX Runtime graph (onnx_engine.py);
choose.py is the one place that decides which runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from muflow_cli.choices import ENGINES
from muflow_cli.errors import MuflowError

if TYPE_CHECKING:
    from muflow_cli.nn.features import FeatureExtractor
    from muflow_cli.nn.flow_model import MuFlowModel

# The torch side, built on first need: () -> (backbone, flows).
Parts = Callable[[], "tuple[FeatureExtractor, MuFlowModel]"]


class ScoringEngine(Protocol):
    """Scores (B, S, S, 3) uint8 RGB crops: (per-layer NLL (B, L), per-layer residual maps if ``with_maps``).

    ``valid`` (B, S, S) uint8: the crop pixels that come from the photo (faces/align.py); a masked model
    scores only the positions inside it (nn/masking.py), an unmasked one ignores it."""

    name: str

    def __call__(self, crops: Any, valid: Any, with_maps: bool) -> tuple[np.ndarray, list[np.ndarray]]: ...

    def set_spinning(self, on: bool) -> None:
        """Whether idle threads spin (fastest alone) or sleep (fastest beside the scan's detection workers)."""


class EngineError(MuflowError):
    """The ONNX engine was asked for by name and cannot be built or does not match torch."""


def check_engine_name(name: str) -> None:
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {name!r}")
