"""Bundled model files: where they are, what licence they carry, and whether they are intact.

Every file muflow loads from ``weights/`` is named in ``weights/manifest.json`` with its
sha256; a file whose hash does not match is refused, never used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from muflow_cli.errors import MuflowError


class WeightsError(MuflowError):
    """A model file is missing, tampered with, or cannot be had offline."""


@dataclass(frozen=True)
class WeightFile:
    """One manifest entry: a model card for a third-party file."""

    name: str
    kind: str
    file: str
    sha256: str
    licence: str
    description: str
    source: dict[str, Any]

    @property
    def path(self) -> Path:
        return weights_dir() / self.file

    @property
    def provenance(self) -> str:
        s = self.source
        return f"{s['package']}=={s['version']} ({s['dist']}) {s['path']}"


def weights_dir() -> Path:
    """The installed ``weights/`` folder (packaged as ``muflow_cli.model_files``)."""
    return Path(str(resources.files("muflow_cli.model_files")))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=1)
def manifest() -> dict[str, WeightFile]:
    data = json.loads((weights_dir() / "manifest.json").read_text(encoding="utf-8"))
    return {e["name"]: WeightFile(**e) for e in data["files"]}


@lru_cache(maxsize=None)
def _verified(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(f"{path} has sha256 {actual}, the manifest says {expected}: the file is damaged or was changed")


def weight_path(name: str) -> Path:
    """Path of a bundled file after checking its sha256 (checked once per process)."""
    try:
        entry = manifest()[name]
    except KeyError:
        raise WeightsError(f"no bundled weight file named {name!r}; known: {', '.join(manifest())}") from None
    if not entry.path.is_file():
        raise WeightsError(f"bundled file {entry.path} is missing; reinstall muflow or run scripts/fetch_weights.py --write")
    _verified(entry.path, entry.sha256)
    return entry.path


def verify_all() -> list[tuple[WeightFile, bool, str]]:
    """Hash every manifest file: ``(entry, ok, message)`` for each."""
    out = []
    for entry in manifest().values():
        if not entry.path.is_file():
            out.append((entry, False, "missing"))
            continue
        actual = sha256_file(entry.path)
        out.append((entry, actual == entry.sha256, "ok" if actual == entry.sha256 else f"sha256 {actual}"))
    return out
