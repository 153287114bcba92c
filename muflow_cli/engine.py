"""Scoring engines: backbone + flows + Gaussian run eagerly in torch, or as one ONNX Runtime graph.

Why two: on CPU, eager torch spends about a quarter of its time in separate batch-norm passes
and many small element-wise ops between convolutions. ONNX Runtime folds batch norm into the
convolutions, fuses activations and runs blocked convolution kernels: the same scores at about
2x the faces/s for the default model (docs/performance.md). On CUDA, torch is used (muflow does
not depend on onnxruntime-gpu).

The ONNX graph is exported in memory from the loaded model each time a detector builds it
(about a second, nothing written to disk, nothing from outside loaded), with a dynamic batch
axis. It is then checked against torch on a probe batch; where the two disagree by more than
``TOLERANCE`` (relative, per layer), or the export fails, muflow says so and scores with torch.
On real faces the two agree to about 1e-6 nats/dim (tests/test_engine.py).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import nn

from .errors import MuflowError
from .features import FeatureExtractor
from .model import MuFlowModel

ENGINES = ("auto", "torch", "onnx")
TOLERANCE = 1e-4  # |onnx - torch| <= TOLERANCE * max(1, |torch|), per face and layer
OPSET = 17


class EngineError(MuflowError):
    """The ONNX engine was asked for by name and cannot be built or does not match torch."""


class ScoringGraph(nn.Module):
    """uint8 crops (B, S, S, 3) -> (per-layer NLL (B, L), residual map of layer 1, ..., of layer L)."""

    def __init__(self, backbone: FeatureExtractor, model: MuFlowModel) -> None:
        super().__init__()
        self.backbone = backbone
        self.model = model

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(self.backbone.features(crops), with_maps=True)
        return (out["layers"], *out["maps"])


class TorchEngine:
    """Eager torch on the detector's device."""

    name = "torch"

    def __init__(self, backbone: FeatureExtractor, model: MuFlowModel, device: torch.device) -> None:
        self.backbone, self.model, self.device = backbone, model, device

    def set_spinning(self, on: bool) -> None:
        """Nothing to set: torch's own thread pool decides."""

    @torch.inference_mode()
    def __call__(self, crops: torch.Tensor, with_maps: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        out = self.model(self.backbone(crops.to(self.device)), with_maps=with_maps)
        return out["layers"].cpu().numpy(), [m.cpu().numpy() for m in out.get("maps", [])]


class OnnxEngine:
    """The whole scoring graph in one ONNX Runtime session (CPU)."""

    name = "onnx"

    def __init__(self, backbone: FeatureExtractor, model: MuFlowModel, crop_size: int, threads: int | None = None) -> None:
        graph = ScoringGraph(backbone, model).eval()
        n_layers = len(model.flows)
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes about constant spatial sizes, deprecation notices
            torch.onnx.export(
                graph,
                (torch.zeros(2, crop_size, crop_size, 3, dtype=torch.uint8),),
                buf,
                dynamo=False,
                opset_version=OPSET,
                input_names=["crops"],
                output_names=["layers"] + [f"map{i}" for i in range(n_layers)],
                dynamic_axes={name: {0: "batch"} for name in ["crops", "layers"] + [f"map{i}" for i in range(n_layers)]},
            )
        self._graph = buf.getvalue()
        self._threads = threads if threads is not None else torch.get_num_threads()
        self._sessions: dict[bool, object] = {}
        self.set_spinning(True)

    def set_spinning(self, on: bool) -> None:
        """Whether idle pool threads spin (fastest alone: 100 vs 84 faces/s) or sleep (fastest when the
        scan's detection workers share the cores: 24.1 vs 27.8 s end to end; docs/performance.md)."""
        import onnxruntime as ort

        if on not in self._sessions:  # one session per setting, built on first use (~0.1 s)
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = self._threads
            opts.log_severity_level = 3
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if on else "0")
            self._sessions[on] = ort.InferenceSession(self._graph, sess_options=opts, providers=["CPUExecutionProvider"])
        self.session = self._sessions[on]

    def __call__(self, crops: torch.Tensor, with_maps: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        outs = self.session.run(None, {"crops": np.ascontiguousarray(np.asarray(crops, dtype=np.uint8))})
        return outs[0], (outs[1:] if with_maps else [])


def probe_crops(crop_size: int, n: int = 3) -> torch.Tensor:
    """Smooth, face-sized synthetic crops: bounded scores, so a relative tolerance means something."""
    yy, xx = np.mgrid[0:crop_size, 0:crop_size] / crop_size
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        base = 128 + 60 * np.sin(2 * np.pi * (xx * (i + 1) + yy * (2 - i % 2)))[..., None] * np.array([1.0, 0.8, 0.6])
        out.append(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8))
    return torch.from_numpy(np.stack(out))


def max_relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a))))


def check_engine_name(name: str) -> None:
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {name!r}")


def create_engine(
    name: str, backbone: FeatureExtractor, model: MuFlowModel, device: torch.device, crop_size: int
) -> TorchEngine | OnnxEngine:
    """``auto``: ONNX Runtime on CPU when it builds and matches torch, else torch; ``torch``/``onnx``: as named."""
    check_engine_name(name)
    torch_engine = TorchEngine(backbone, model, device)
    if name == "torch" or (name == "auto" and device.type != "cpu"):
        return torch_engine
    if device.type != "cpu":
        raise EngineError("--engine onnx runs on the CPU; use --device cpu or --engine torch")
    cause: Exception | None = None
    try:
        onnx_engine = OnnxEngine(backbone, model, crop_size)
        probe = probe_crops(crop_size)
        gap = max_relative_gap(torch_engine(probe, False)[0], onnx_engine(probe, False)[0])
        if gap <= TOLERANCE:
            return onnx_engine
        problem = f"the ONNX graph's scores differ from torch's by {gap:.2g} (relative) > {TOLERANCE:g}"
    except Exception as exc:  # the exporter and ORT raise many kinds
        cause, problem = exc, f"the ONNX scoring graph could not be built ({type(exc).__name__}: {exc})"
    if name == "onnx":
        raise EngineError(problem) from cause
    warnings.warn(f"muflow: scoring with torch: {problem}", stacklevel=2)
    return torch_engine
