"""SCRFD's graph for any input size, patched once and kept in muflow's user cache.

The bundled SCRFD-2.5G graph is exported for 640x640: fixed shapes, and its two FPN upsamplings name
their output sizes. Making the input symbolic and the upsamplings "x2" gives the same outputs at 640
(to 1e-6) and lets one session run small canvases for the zoomed-out pass and large tiles for small
faces, at a cost proportional to their area.

Patching needs the ``onnx`` package, whose import alone takes longer than a one-image scan's detection
(0.5-0.8 s of a warm scan on a 2-core machine, benchmarks/startup.py), so the patched graph is cached:
``cache_root()/detectors/scrfd-<source sha256>-p<PATCH_VERSION>.onnx``, and beside it a JSON sidecar
recording the source's sha256, the patch version, and the patched graph's size and sha256. A file that
does not match its sidecar (truncated, damaged, unreadable) is patched again and rewritten; both files
are written atomically, the sidecar last. The patched bytes are the same whichever way they are made,
so detections are too. ``MUFLOW_GRAPH_CACHE=0`` patches in memory every time; so does a cache folder
that cannot be written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from muflow_cli.inputs.atomic import atomic_write_bytes
from muflow_cli.user_cache import cache_enabled, cache_root

PATCH_VERSION = 1  # bump when patch_any_size() makes other bytes from the same source


def patch_any_size(source: bytes) -> bytes:
    """The SCRFD graph ``source`` with a symbolic input size and "x2" FPN upsamplings (imports onnx)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(source)
    for node in model.graph.node:
        if node.op_type == "Resize" and len(node.input) == 4:  # (X, roi, scales, sizes)
            name = f"{node.name}_x2"
            model.graph.initializer.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), name))
            node.input[2] = name
            del node.input[3]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[1].dim_param = "anchors"
    del model.graph.value_info[:]
    return model.SerializeToString()


def cache_paths(source_sha256: str, root: Path | None = None) -> tuple[Path, Path]:
    """(patched graph, sidecar) in the cache for the source graph with this sha256."""
    folder = Path(root if root is not None else cache_root()) / "detectors"
    stem = f"scrfd-{source_sha256}-p{PATCH_VERSION}"
    return folder / f"{stem}.onnx", folder / f"{stem}.json"


def _sidecar(source_sha256: str, graph: bytes) -> dict:
    return {"source_sha256": source_sha256, "patch": PATCH_VERSION, "bytes": len(graph),
            "sha256": hashlib.sha256(graph).hexdigest()}


def cached(source_sha256: str) -> bytes | None:
    """The cached patched graph, when it is there and matches its sidecar; else None."""
    graph_path, meta_path = cache_paths(source_sha256)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        graph = graph_path.read_bytes()
    except (OSError, ValueError):
        return None
    return graph if meta == _sidecar(source_sha256, graph) else None


def any_size_graph(path: Path, source_sha256: str) -> bytes:
    """The patched graph of the SCRFD file ``path`` (whose sha256, checked by the caller, is
    ``source_sha256``): from the cache, else patched (and cached when the cache is on and writable)."""
    if not cache_enabled():
        return patch_any_size(Path(path).read_bytes())
    graph = cached(source_sha256)
    if graph is not None:
        return graph
    graph = patch_any_size(Path(path).read_bytes())
    graph_path, meta_path = cache_paths(source_sha256)
    try:
        atomic_write_bytes(graph_path, graph)
        atomic_write_bytes(meta_path, (json.dumps(_sidecar(source_sha256, graph), indent=2) + "\n").encode("utf-8"))
    except OSError:
        pass  # a cache that cannot be written only costs time
    return graph
