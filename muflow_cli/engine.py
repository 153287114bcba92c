"""Scoring engines: backbone + flows + Gaussian run eagerly in torch, or as one ONNX Runtime graph.

Why two: on CPU, eager torch spends about a quarter of its time in separate batch-norm passes
and many small element-wise ops between convolutions. ONNX Runtime folds batch norm into the
convolutions, fuses activations and runs blocked convolution kernels: the same scores at about
2x the faces/s for the default model (docs/performance.md). On CUDA, torch is used (muflow does
not depend on onnxruntime-gpu).

The ONNX graph is exported from the loaded model with a dynamic batch axis. Exporting traces
the model and takes seconds, most of a one-image scan, so a saved model's graph is cached on
disk (:class:`GraphCache`, keyed by the model's tensor sha256 and the versions that shape the
export); an unsaved model is exported in memory every time. Whatever its source, the graph is
checked against torch on a probe batch before it scores: a cached graph that disagrees is
deleted and exported afresh, and where an exported graph disagrees by more than ``TOLERANCE``
(relative, per layer), or the export fails, muflow says so and scores with torch.
On real faces the two agree to about 1e-6 nats/dim (tests/test_engine.py).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import nn

from .choices import ENGINES  # re-exported
from .errors import MuflowError
from .features import FeatureExtractor
from .graphcache import GraphCache
from .model import MuFlowModel

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


def export_graph(backbone: FeatureExtractor, model: MuFlowModel, crop_size: int) -> bytes:
    """The scoring graph as ONNX bytes, batch axis dynamic (seconds: the tracer runs the whole model)."""
    graph = ScoringGraph(backbone, model).eval()
    outputs = ["layers"] + [f"map{i}" for i in range(len(model.flows))]
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
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in ["crops", *outputs]},
        )
    return buf.getvalue()


class OnnxEngine:
    """The whole scoring graph in one ONNX Runtime session (CPU).

    ``source`` says where the graph came from: ``"export"`` (traced in this process) or ``"cache"``."""

    name = "onnx"

    def __init__(self, graph: bytes, threads: int | None = None, source: str = "export") -> None:
        self.graph = graph
        self.source = source
        self._threads = threads if threads is not None else torch.get_num_threads()
        self._sessions: dict[bool, object] = {}
        self._spinning = True

    @classmethod
    def export(cls, backbone: FeatureExtractor, model: MuFlowModel, crop_size: int, threads: int | None = None) -> OnnxEngine:
        """An engine for a freshly exported graph of ``backbone`` + ``model`` (not checked against torch)."""
        return cls(export_graph(backbone, model, crop_size), threads)

    def set_spinning(self, on: bool) -> None:
        """Whether idle pool threads spin (fastest alone: 100 vs 84 faces/s) or sleep (fastest when the
        scan's detection workers share the cores: 24.1 vs 27.8 s end to end; docs/performance.md)."""
        self._spinning = on

    def session(self, spinning: bool):
        """The ORT session for one spinning setting, built on first use (~0.1 s each)."""
        if spinning not in self._sessions:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = self._threads
            opts.log_severity_level = 3
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
            self._sessions[spinning] = ort.InferenceSession(self.graph, sess_options=opts, providers=["CPUExecutionProvider"])
        return self._sessions[spinning]

    def run(self, crops: torch.Tensor | np.ndarray, with_maps: bool, spinning: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        outs = self.session(spinning).run(None, {"crops": np.ascontiguousarray(np.asarray(crops, dtype=np.uint8))})
        return outs[0], (outs[1:] if with_maps else [])

    def __call__(self, crops: torch.Tensor, with_maps: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.run(crops, with_maps, self._spinning)


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
    name: str,
    backbone: FeatureExtractor,
    model: MuFlowModel,
    device: torch.device,
    crop_size: int,
    cache_key: str | None = None,
) -> TorchEngine | OnnxEngine:
    """``auto``: ONNX Runtime on CPU when it builds and matches torch, else torch; ``torch``/``onnx``: as named.

    ``cache_key`` identifies the model's tensors (a saved bundle's sha256): with it the graph comes
    from, or goes to, the on-disk :class:`GraphCache`; without it, it is exported in memory."""
    check_engine_name(name)
    torch_engine = TorchEngine(backbone, model, device)
    if name == "torch" or (name == "auto" and device.type != "cpu"):
        return torch_engine
    if device.type != "cpu":
        raise EngineError("--engine onnx runs on the CPU; use --device cpu or --engine torch")
    cause: Exception | None = None
    try:
        onnx_engine, problem = _checked_onnx_engine(torch_engine, backbone, model, crop_size, cache_key)
        if onnx_engine is not None:
            return onnx_engine
    except Exception as exc:  # the exporter and ORT raise many kinds
        cause, problem = exc, f"the ONNX scoring graph could not be built ({type(exc).__name__}: {exc})"
    if name == "onnx":
        raise EngineError(problem) from cause
    warnings.warn(f"muflow: scoring with torch: {problem}", stacklevel=2)
    return torch_engine


def _single_threaded(torch_engine: TorchEngine, crops: torch.Tensor) -> np.ndarray:
    """Torch's per-layer scores of a few ``crops`` on one thread, for the probe check.

    Why one: a 3-crop batch gains little from more, and torch's OpenMP threads, when other work
    holds the cores, wait on each other: 6 s instead of 0.2 s for the probe on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch_engine(crops, False)[0]
    finally:
        torch.set_num_threads(threads)


def _checked_onnx_engine(
    torch_engine: TorchEngine, backbone: FeatureExtractor, model: MuFlowModel, crop_size: int, cache_key: str | None
) -> tuple[OnnxEngine | None, str]:
    """An ONNX engine whose probe scores match torch's, from the cache or a fresh export; else (None, why)."""
    probe = probe_crops(crop_size)
    expected = _single_threaded(torch_engine, probe)

    def gap(engine: OnnxEngine) -> float:
        # The probe builds the non-spinning session: the one a scan scores with (scan.py), so it is built once.
        return max_relative_gap(expected, engine.run(probe, False, spinning=False)[0])

    cache = GraphCache.default() if cache_key else None
    fields = GraphCache.fields(cache_key, crop_size, OPSET) if cache is not None else None
    if cache is not None:
        graph = cache.load(fields)
        if graph is not None:
            try:
                engine = OnnxEngine(graph, source="cache")
                if gap(engine) <= TOLERANCE:
                    return engine, ""
            except Exception:  # intact bytes that ORT refuses: as wrong as a graph that disagrees
                pass
            cache.discard(fields)  # intact but not this model's graph: never used again, exported afresh
    engine = OnnxEngine.export(backbone, model, crop_size)
    found = gap(engine)
    if found > TOLERANCE:
        return None, f"the ONNX graph's scores differ from torch's by {found:.2g} (relative) > {TOLERANCE:g}"
    if cache is not None:
        cache.store(fields, engine.graph)
    return engine, ""
