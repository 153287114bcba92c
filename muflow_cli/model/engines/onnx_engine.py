"""The ONNX engine: backbone + flows + Gaussian as one ONNX Runtime graph on the CPU.

Why: on CPU, eager torch spends about a quarter of its time in separate batch-norm passes and many
small element-wise ops between convolutions. ONNX Runtime folds batch norm into the convolutions,
fuses activations and runs blocked convolution kernels: the same scores at about 2x the faces/s for
the default model (docs/performance.md). On CUDA, torch is used (muflow does not depend on
onnxruntime-gpu). Where the graph comes from and whether it may score is choose.py's job.

This module imports no torch: the export is torch_engine.py's, imported on first need.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import numpy as np

from muflow_cli.onnx_session import session

if TYPE_CHECKING:
    import torch

    from muflow_cli.nn.features import FeatureExtractor
    from muflow_cli.nn.flow_model import MuFlowModel

OPSET = 17


def default_threads() -> int:
    """ONNX Runtime's intra-op threads: torch's when torch is loaded (as muflow always did); else
    ``OMP_NUM_THREADS`` when set; else 0, ONNX Runtime's own default: one per physical core, as torch's."""
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "")), 0)
    except ValueError:
        return 0


class OnnxEngine:
    """The whole scoring graph in one ONNX Runtime session (CPU).

    ``source`` says where the graph came from: ``"export"`` (traced in this process) or ``"cache"``."""

    name = "onnx"

    def __init__(self, graph: bytes, threads: int | None = None, source: str = "export") -> None:
        self.graph = graph
        self.source = source
        self._threads = threads if threads is not None else default_threads()
        self._sessions: dict[bool, object] = {}
        self._spinning = True

    @classmethod
    def export(cls, backbone: FeatureExtractor, model: MuFlowModel, crop_size: int, threads: int | None = None) -> OnnxEngine:
        """An engine for a freshly exported graph of ``backbone`` + ``model`` (not checked against torch)."""
        from muflow_cli.model.engines.torch_engine import export_graph

        return cls(export_graph(backbone, model, crop_size, OPSET), threads)

    def set_spinning(self, on: bool) -> None:
        """Whether idle pool threads spin (fastest alone: 100 vs 84 faces/s) or sleep (fastest when the
        scan's detection workers share the cores: 24.1 vs 27.8 s end to end; docs/performance.md)."""
        self._spinning = on

    def session(self, spinning: bool):
        """The ORT session for one spinning setting, built on first use (~0.1 s each)."""
        if spinning not in self._sessions:
            self._sessions[spinning] = session(self.graph, self._threads, spinning)
        return self._sessions[spinning]

    def run(self, crops: torch.Tensor | np.ndarray, valid: torch.Tensor | np.ndarray | None, with_maps: bool,
            spinning: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        """A masked model's graph takes ``valid`` too (None: every pixel inside); an unmasked one's does not."""
        sess = self.session(spinning)
        feed = {"crops": np.ascontiguousarray(np.asarray(crops, dtype=np.uint8))}
        if any(i.name == "valid" for i in sess.get_inputs()):
            feed["valid"] = (np.ones(feed["crops"].shape[:3], np.uint8) if valid is None
                             else np.ascontiguousarray(np.asarray(valid, dtype=np.uint8)))
        outs = sess.run(None, feed)
        return outs[0], (outs[1:] if with_maps else [])

    def __call__(self, crops: torch.Tensor | np.ndarray, valid: torch.Tensor | np.ndarray | None,
                 with_maps: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.run(crops, valid, with_maps, self._spinning)
