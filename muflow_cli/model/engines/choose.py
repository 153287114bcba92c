"""The one place that chooses the scoring engine: eager torch, or one ONNX Runtime graph, cached or exported.

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
torch_engine.py, imported on first need.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from muflow_cli.model.device import device_type, pick_device
from muflow_cli.model.engines.base import EngineError, Parts, ScoringEngine, check_engine_name
from muflow_cli.model.engines.graph_cache import GraphCache
from muflow_cli.model.engines.onnx_engine import OPSET, OnnxEngine
from muflow_cli.model.engines.probe import PROBE_KIND, TOLERANCE, max_relative_gap, probe_crops, probe_digest, probe_valid, stored_reference

if TYPE_CHECKING:
    import torch

    from muflow_cli.model.engines.torch_engine import TorchEngine


@dataclass(frozen=True)
class CachedGraph:
    """A cache entry read (and checked against its sidecar) already: its fields, the graph, the stored probe."""

    fields: dict[str, Any]
    graph: bytes
    probe: dict[str, Any] | None


def build_engine(
    name: str,
    parts: Parts,
    device: torch.device | str,
    crop_size: int,
    cache_key: str | None = None,
    backbone_key: str | None = None,
    torch_built: bool = False,
    cached: CachedGraph | None = None,
) -> ScoringEngine:
    """``auto``: ONNX Runtime on CPU when it builds and matches torch, else torch; ``torch``/``onnx``: as named.

    The torch model is built only if needed: ``parts()`` returns it. ``cache_key`` identifies the model's
    tensors (a saved bundle's sha256): with it the graph comes from, or goes to, the on-disk
    :class:`GraphCache`; without it, it is exported in memory. A cached graph is checked against the torch
    model when ``torch_built`` (it costs nothing to build then), else against the probe scores stored in
    its entry: then torch is never imported.
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
    from muflow_cli.model.engines.torch_engine import TorchEngine

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
    if stored_reference(entry[1], probe_digest(probe_crops(crop_size))) is None:
        cache.discard(fields)  # no usable probe: checked with torch, it would be exported again anyway
        return None
    return CachedGraph(fields, *entry)


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
    probe, probe_mask = probe_crops(crop_size), probe_valid(crop_size)
    digest = probe_digest(probe)
    torch_scores: list[np.ndarray] = []

    def expected() -> np.ndarray:
        """Torch's per-layer scores of the probe (the model is built, and torch imported, on first call)."""
        if not torch_scores:
            from muflow_cli.model.engines.torch_engine import single_threaded_layers

            torch_scores.append(single_threaded_layers(_torch_engine(parts, device), probe, probe_mask))
        return torch_scores[0]

    def gap(engine: OnnxEngine, reference: np.ndarray) -> float:
        # The probe builds the non-spinning session: the one a scan scores with (pipelines/scan.py), so it is built once.
        got = engine.run(probe, probe_mask, False, spinning=False)[0]
        if got.shape != reference.shape:
            return float("inf")
        return max_relative_gap(reference, got)

    cache = GraphCache.default() if cache_key else None
    fields = _fields(cache_key, crop_size, backbone_key) if cache is not None else None
    if cache is not None:
        if cached is not None and cached.fields == fields:
            entry: tuple[bytes, dict | None] | None = (cached.graph, cached.probe)
        else:
            entry = cache.load_entry(fields)
        if entry is not None:
            graph, stored = entry
            try:
                reference = expected() if torch_built else stored_reference(stored, digest)
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
