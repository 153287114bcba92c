"""The on-disk cache of exported ONNX scoring graphs: a saved model's graph is exported once, not every run.

Why: tracing the model for the export takes seconds, most of a one-image scan's time; with the
graph cached, a scan does not even import torch (choose.py). A graph depends on the model's
tensors, the backbone's weights, the torch exporter, the ONNX Runtime that runs it, muflow's
graph code, the crop size and the opset; the entry's name hashes all of them, so anything that
changes gives another entry. An entry is ``KEY.onnx`` plus ``KEY.json``, which records the
fields, the graph's sha256 and size, the probe (the sha256 of a deterministic batch of crops,
probe.probe_crops, and torch's per-layer scores of it when the graph was exported), and the
sha256 of all that. Both files are written to a temporary name and renamed into place, the
sidecar last, so a reader sees whole files or none. Nothing is unpickled: the sidecar is JSON.

Nothing in it is trusted: an entry whose sidecar is missing, unreadable, for other fields, not
matching its own sha256, or whose graph has another size or sha256 (truncated, corrupt) is
deleted and the graph exported again. The sha256s find damage, not tampering (whoever can write
the folder can rewrite both files); what keeps a wrong graph from ever scoring is the probe
check in choose.py, made on every graph, cached or not: the graph's scores of the probe must
match torch's, the live model's when torch is loaded, else the ones stored at export. ONNX
Runtime graphs hold no code, only operators.

Where: muflow's user cache folder (user_cache.py: ``MUFLOW_CACHE_DIR`` if set, else the user's cache
folder); set ``MUFLOW_GRAPH_CACHE=0`` to export in memory every run (as muflow did before the cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from muflow_cli.user_cache import CACHE_DIR_ENV, SWITCH_ENV, cache_enabled, cache_root  # noqa: F401  (re-exported)

ENTRY_FORMAT = 3  # bump when what an entry holds changes without any version below changing (2: the probe; 3: masks)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class GraphCache:
    """Exported graphs under ``root/graphs``, looked up by a dict of fields (see :meth:`fields`)."""

    def __init__(self, root: Path | None = None) -> None:
        self.dir = Path(root if root is not None else cache_root()) / "graphs"

    @classmethod
    def default(cls) -> GraphCache | None:
        """The user's graph cache, or None when switched off by ``MUFLOW_GRAPH_CACHE=0``."""
        return cls() if cache_enabled() else None

    @staticmethod
    def fields(model_key: str, crop_size: int, opset: int, backbone_key: str | None = None) -> dict[str, Any]:
        """Everything an exported graph depends on besides the code that traces it. ``backbone_key``: the
        backbone weights' sha256 when the model names its weights (None: the caller checks with torch)."""
        import onnxruntime

        from muflow_cli.version import __version__

        return {
            "format": ENTRY_FORMAT,
            "model_sha256": model_key,
            "backbone_sha256": backbone_key,
            "crop_size": int(crop_size),
            "opset": int(opset),
            "torch": torch_version(),
            "onnxruntime": onnxruntime.__version__,
            "muflow": __version__,
        }

    def paths(self, fields: dict[str, Any]) -> tuple[Path, Path]:
        """(graph file, sidecar) of the entry for ``fields``."""
        name = _sha256(json.dumps(fields, sort_keys=True).encode("utf-8"))[:32]
        return self.dir / f"{name}.onnx", self.dir / f"{name}.json"

    def load_entry(self, fields: dict[str, Any]) -> tuple[bytes, dict[str, Any] | None] | None:
        """(graph, probe) of the entry for ``fields`` after checking it against its sidecar; None (and the
        entry deleted) when it is missing, incomplete, corrupt, truncated or for other fields. ``probe`` is
        what :meth:`store` was given (None if nothing)."""
        graph_path, meta_path = self.paths(fields)
        if not graph_path.exists() and not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            data = graph_path.read_bytes()
            intact = (
                isinstance(meta, dict)
                and meta.get("meta_sha256") == _meta_digest(meta)
                and meta.get("fields") == fields
                and meta.get("bytes") == len(data)
                and meta.get("sha256") == _sha256(data)
                and (meta.get("probe") is None or isinstance(meta.get("probe"), dict))
            )
        except (OSError, ValueError):
            intact = False
        if not intact:
            self.discard(fields)
            return None
        return data, meta.get("probe")

    def store(self, fields: dict[str, Any], graph: bytes, probe: dict[str, Any] | None = None) -> bool:
        """Write the entry atomically, with ``probe`` (JSON data) in its sidecar; False (and nothing left
        behind) when the folder is not writable.

        A cache that cannot be written only costs time, so this never raises for it."""
        graph_path, meta_path = self.paths(fields)
        meta: dict[str, Any] = {"fields": fields, "sha256": _sha256(graph), "bytes": len(graph), "probe": probe}
        meta["meta_sha256"] = _meta_digest(meta)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(graph_path, graph)
            _atomic_write(meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8"))
            return True
        except OSError:
            self.discard(fields)
            return False

    def discard(self, fields: dict[str, Any]) -> None:
        """Delete the entry for ``fields`` (sidecar first: a graph without a sidecar is never used)."""
        for path in reversed(self.paths(fields)):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass


def _meta_digest(meta: dict[str, Any]) -> str:
    """sha256 of a sidecar's canonical JSON, without its own digest: an edited or damaged sidecar is found."""
    rest = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return _sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def torch_version() -> str:
    """The installed torch's version, read without importing torch: its distribution's metadata, the same
    whether torch is loaded or not (``torch.__version__`` may carry a build label the metadata lacks)."""
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        import torch

        return torch.__version__


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
