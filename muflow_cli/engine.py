"""Scoring engines: backbone + flows + Gaussian run eagerly in torch, or as one ONNX Runtime graph.

Why two: on CPU, eager torch spends about a quarter of its time in separate batch-norm passes
and many small element-wise ops between convolutions. ONNX Runtime folds batch norm into the
convolutions, fuses activations and runs blocked convolution kernels: the same scores at about
2x the faces/s for the default model (docs/performance.md). On CUDA, torch is used (muflow does
not depend on onnxruntime-gpu).

The ONNX graph is exported from the loaded model with a dynamic batch axis. Exporting traces
the model and takes seconds, most of a one-image scan, so a saved model's graph is cached on
disk (:class:`GraphCache`, keyed by the model's tensor sha256, its backbone weights' sha256 and
the versions that shape the export); an unsaved model is exported in memory every time.

Whatever its source, the graph is checked against torch on a probe batch (:func:`probe_crops`)
before it scores. A freshly exported graph is checked against the torch model itself, and its
entry in the cache stores the probe and torch's scores of it. A cached graph is checked against
the live torch model when that is built anyway, else against those stored scores: then no torch
is imported at all (about 4 s of a one-image scan on a 2-core machine). A cached graph that
disagrees is deleted and exported afresh; where an exported graph disagrees by more than
``TOLERANCE`` (relative, per layer), or the export fails, muflow says so and scores with torch.
On real faces the two agree to about 1e-6 nats/dim (tests/test_engine.py).

This module imports no torch: the torch side (eager engine, export, torch's probe scores) is
torch_engine.py, imported on first need; ``TorchEngine`` is still importable from here.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .choices import ENGINES  # re-exported
from .device import device_type, pick_device
from .errors import MuflowError
from .graphcache import GraphCache

if TYPE_CHECKING:
    import torch

    from .features import FeatureExtractor
    from .model import MuFlowModel
    from .torch_engine import TorchEngine

TOLERANCE = 1e-4  # |onnx - torch| <= TOLERANCE * max(1, |torch|), per face and layer
OPSET = 17
PROBE_KIND = "sinusoid-rgb-noise/seed0/n3"  # what probe_crops draws; stored with each cache entry

# The torch side, built on first need: () -> (backbone, flows).
Parts = Callable[[], "tuple[FeatureExtractor, MuFlowModel]"]
# A cache entry read (and checked) already: (fields, graph, probe).
CachedGraph = tuple[dict, bytes, dict | None]


class EngineError(MuflowError):
    """The ONNX engine was asked for by name and cannot be built or does not match torch."""


def __getattr__(name: str):
    # The torch-side names, importable from here as before, loaded (with torch) only when asked for.
    if name in ("TorchEngine", "ScoringGraph", "export_graph"):
        from . import torch_engine

        return getattr(torch_engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        from .torch_engine import export_graph

        return cls(export_graph(backbone, model, crop_size, OPSET), threads)

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

    def __call__(self, crops: torch.Tensor | np.ndarray, with_maps: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.run(crops, with_maps, self._spinning)


def probe_crops(crop_size: int, n: int = 3) -> np.ndarray:
    """Smooth, face-sized synthetic crops (uint8, (n, S, S, 3)): bounded scores, so a relative tolerance
    means something. Deterministic; a cache entry stores their sha256 (:func:`probe_digest`), so a numpy
    that drew other numbers would be noticed, never compared against scores of other crops. Read-only
    (made once per size and process)."""
    return _probe_crops(int(crop_size), int(n))


@functools.lru_cache(maxsize=4)
def _probe_crops(crop_size: int, n: int) -> np.ndarray:
    yy, xx = np.mgrid[0:crop_size, 0:crop_size] / crop_size
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        base = 128 + 60 * np.sin(2 * np.pi * (xx * (i + 1) + yy * (2 - i % 2)))[..., None] * np.array([1.0, 0.8, 0.6])
        out.append(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8))
    crops = np.stack(out)
    crops.setflags(write=False)
    return crops


def probe_digest(crops: np.ndarray) -> str:
    """sha256 of the probe crops' shape and bytes."""
    h = hashlib.sha256(repr(crops.shape).encode("ascii"))
    h.update(np.ascontiguousarray(crops, dtype=np.uint8).tobytes())
    return h.hexdigest()


def max_relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a))))


def check_engine_name(name: str) -> None:
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {name!r}")


def create_engine(
    name: str,
    backbone: FeatureExtractor,
    model: MuFlowModel,
    device: torch.device | str,
    crop_size: int,
    cache_key: str | None = None,
    backbone_key: str | None = None,
) -> TorchEngine | OnnxEngine:
    """``auto``: ONNX Runtime on CPU when it builds and matches torch, else torch; ``torch``/``onnx``: as named.

    ``cache_key`` identifies the model's tensors (a saved bundle's sha256): with it the graph comes
    from, or goes to, the on-disk :class:`GraphCache`; without it, it is exported in memory. Every
    graph, cached or not, is checked against this torch model (see :func:`build_engine`)."""
    return build_engine(name, lambda: (backbone, model), device, crop_size, cache_key, backbone_key, torch_built=True)


def build_engine(
    name: str,
    parts: Parts,
    device: torch.device | str,
    crop_size: int,
    cache_key: str | None = None,
    backbone_key: str | None = None,
    torch_built: bool = False,
    cached: CachedGraph | None = None,
) -> TorchEngine | OnnxEngine:
    """:func:`create_engine` with the torch model built only if needed: ``parts()`` returns it.

    A cached graph is checked against the torch model when ``torch_built`` (it costs nothing to build
    then), else against the probe scores stored in its entry: then torch is never imported.
    ``cached``: the entry for these fields, already read and checked by :func:`find_cached_graph`."""
    check_engine_name(name)
    kind = device_type(device)
    if name == "torch" or (name == "auto" and kind != "cpu"):
        return _torch_engine(parts, device)
    if kind != "cpu":
        raise EngineError("--engine onnx runs on the CPU; use --device cpu or --engine torch")
    cause: Exception | None = None
    try:
        onnx_engine, problem = _checked_onnx_engine(parts, device, crop_size, cache_key, backbone_key, torch_built, cached)
        if onnx_engine is not None:
            return onnx_engine
    except Exception as exc:  # the exporter and ORT raise many kinds
        cause, problem = exc, f"the ONNX scoring graph could not be built ({type(exc).__name__}: {exc})"
    if name == "onnx":
        raise EngineError(problem) from cause
    warnings.warn(f"muflow: scoring with torch: {problem}", stacklevel=2)
    return _torch_engine(parts, device)


def _torch_engine(parts: Parts, device: torch.device | str) -> TorchEngine:
    from .torch_engine import TorchEngine

    backbone, model = parts()
    return TorchEngine(backbone, model, pick_device(device))


def _fields(cache_key: str, crop_size: int, backbone_key: str | None) -> dict:
    return GraphCache.fields(cache_key, crop_size, OPSET, backbone_key)


def find_cached_graph(cache_key: str | None, crop_size: int, backbone_key: str | None) -> CachedGraph | None:
    """The cache's entry for this model, read and checked against its sidecar (not yet run: see
    :func:`build_engine`), with a stored probe; None when there is none or the cache is off."""
    cache = GraphCache.default() if cache_key else None
    if cache is None:
        return None
    fields = _fields(cache_key, crop_size, backbone_key)
    entry = cache.load_entry(fields)
    if entry is None:
        return None
    if _stored_reference(entry[1], probe_digest(probe_crops(crop_size))) is None:
        cache.discard(fields)  # no usable probe: checked with torch, it would be exported again anyway
        return None
    return (fields, *entry)


def _stored_reference(probe: dict[str, Any] | None, digest: str) -> np.ndarray | None:
    """Torch's per-layer scores of the probe as stored at export; None unless they are for these very crops."""
    if not isinstance(probe, dict) or probe.get("kind") != PROBE_KIND or probe.get("crops_sha256") != digest:
        return None
    try:
        layers = np.asarray(probe["layers"], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        return None
    return layers if layers.ndim == 2 and np.all(np.isfinite(layers)) else None


def _checked_onnx_engine(
    parts: Parts,
    device: torch.device | str,
    crop_size: int,
    cache_key: str | None,
    backbone_key: str | None,
    torch_built: bool,
    cached: CachedGraph | None,
) -> tuple[OnnxEngine | None, str]:
    """An ONNX engine whose probe scores match torch's, from the cache or a fresh export; else (None, why)."""
    probe = probe_crops(crop_size)
    digest = probe_digest(probe)
    torch_scores: list[np.ndarray] = []

    def expected() -> np.ndarray:
        """Torch's per-layer scores of the probe (the model is built, and torch imported, on first call)."""
        if not torch_scores:
            from .torch_engine import single_threaded_layers

            torch_scores.append(single_threaded_layers(_torch_engine(parts, device), probe))
        return torch_scores[0]

    def gap(engine: OnnxEngine, reference: np.ndarray) -> float:
        # The probe builds the non-spinning session: the one a scan scores with (scan.py), so it is built once.
        got = engine.run(probe, False, spinning=False)[0]
        if got.shape != reference.shape:
            return float("inf")
        return max_relative_gap(reference, got)

    cache = GraphCache.default() if cache_key else None
    fields = _fields(cache_key, crop_size, backbone_key) if cache is not None else None
    if cache is not None:
        if cached is not None and cached[0] == fields:
            entry: tuple[bytes, dict | None] | None = (cached[1], cached[2])
        else:
            entry = cache.load_entry(fields)
        if entry is not None:
            graph, stored = entry
            try:
                reference = expected() if torch_built else _stored_reference(stored, digest)
                if reference is not None:
                    engine = OnnxEngine(graph, source="cache")
                    if gap(engine, reference) <= TOLERANCE:
                        return engine, ""
            except Exception:  # intact bytes that ORT refuses: as wrong as a graph that disagrees
                pass
            cache.discard(fields)  # intact but not this model's graph: never used again, exported afresh
    backbone, model = parts()
    engine = OnnxEngine.export(backbone, model, crop_size)
    reference = expected()
    found = gap(engine, reference)
    if found > TOLERANCE:
        return None, f"the ONNX graph's scores differ from torch's by {found:.2g} (relative) > {TOLERANCE:g}"
    if cache is not None:
        cache.store(fields, engine.graph, {"kind": PROBE_KIND, "crops_sha256": digest, "layers": reference.tolist()})
    return engine, ""
