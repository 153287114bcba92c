"""What makes two runs the same run: the one rule that ``--resume`` (scan, video, Ray, fit) checks.

Every config field counts, nested options objects included, except the settings that change where or
how fast the work runs and never a row or a model.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

# Where or how fast the work runs: threads, the feature cache's place, the device.
IDENTITY_FREE = ("workers", "cache", "cache_dir", "device")


def jsonable(value: Any) -> Any:
    """Configs (dataclasses, paths, tuples) as plain JSON data."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def run_settings(kind: str, model_sha256: str | None, config: Any, paths: list[str] | None) -> dict[str, Any]:
    """The identity of a run: its kind, the model, every config field but :data:`IDENTITY_FREE`, the inputs."""
    fields = {k: v for k, v in jsonable(config).items() if k not in IDENTITY_FREE}
    return {"kind": kind, "model": model_sha256, **fields, "paths": paths}
