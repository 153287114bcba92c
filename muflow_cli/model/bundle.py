"""The model bundle on disk: a folder with ``card.json`` and ``model.safetensors``.

Each file vouches for the other: the card records the tensor file's sha256 and the format
version, the tensor file's safetensors metadata records the card's sha256. Reading checks all
three and refuses a mismatch, so neither file can be edited silently. Nothing is unpickled.
Writing is atomic (a temporary folder renamed into place) and never replaces a folder that is
not a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muflow_cli.errors import MuflowError
from muflow_cli.model.card import FORMAT_VERSION, ModelCard
from muflow_cli.version import __version__
from muflow_cli.weights import sha256_file, weights_dir

if TYPE_CHECKING:
    import torch

CARD = "card.json"
TENSORS = "model.safetensors"
DEFAULT_MODEL = "default.muflow"


class ModelError(MuflowError):
    """A bundle that is missing, damaged, tampered with, or from an incompatible version."""


class NotABundleError(ModelError):
    """An output path that exists and is not a bundle: choosing another path is the user's fix."""

    exit_code = 2


def default_model_path() -> Path:
    return weights_dir() / DEFAULT_MODEL


def is_bundle(path: Path) -> bool:
    return (Path(path) / CARD).is_file()


def check_output(path: Path) -> None:
    """Refuse an output path that exists and is not a bundle (a folder of photos, a file)."""
    path = Path(path)
    if path.exists() and not is_bundle(path):
        raise NotABundleError(f"{path} exists and is not a muflow model; choose another output path")


def card_digest(card: dict[str, Any]) -> str:
    """sha256 of a card's canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(card, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def write_bundle(path: Path, card: ModelCard, tensors: dict[str, torch.Tensor]) -> str:
    """Write ``card`` and ``tensors`` atomically to the folder ``path``; returns the tensor file's sha256."""
    from safetensors.torch import save_file

    path = Path(path)
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = card.to_dict()
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / TENSORS),
                  metadata={"card_sha256": card_digest(doc)})
        sha = sha256_file(tmp / TENSORS)
        doc["tensors"] = {"file": TENSORS, "sha256": sha}
        (tmp / CARD).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        for p in tmp.iterdir():
            os.chmod(p, 0o644)
        os.chmod(tmp, 0o755)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=".old-", dir=path.parent))
            os.replace(path, old / "bundle")
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sha


def read_bundle(path: Path, framework: str = "pt") -> tuple[ModelCard, dict[str, Any], str]:
    """(card, tensors, tensor sha256) of a verified bundle; raises :class:`ModelError` otherwise.

    ``framework``: ``pt`` for torch tensors, ``np`` for numpy arrays (read without importing torch)."""
    from safetensors import safe_open

    if framework == "np":
        from safetensors.numpy import load_file
    else:
        from safetensors.torch import load_file

    path = Path(path)
    card_path = path / CARD
    if not card_path.is_file():
        raise ModelError(f"{path} is not a muflow model (no {CARD}); fit one with `muflow fit DIR -o {path}`")
    try:
        doc = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{card_path}: unreadable card: {exc}") from None
    fmt = doc.get("format")
    if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
        raise ModelError(
            f"{path} has model format {fmt} (written by muflow {doc.get('muflow_version', '?')}); "
            f"this muflow {__version__} reads format {FORMAT_VERSION} and older: upgrade muflow"
        )
    tensor_path = path / doc["tensors"]["file"]
    if not tensor_path.is_file():
        raise ModelError(f"{tensor_path} is missing")
    actual = sha256_file(tensor_path)
    if actual != doc["tensors"]["sha256"]:
        raise ModelError(
            f"{tensor_path} has sha256 {actual} but its card says {doc['tensors']['sha256']}: "
            "the model was damaged or tampered with; refusing to load it"
        )
    with safe_open(str(tensor_path), framework="np") as fh:  # the metadata only
        vouched = (fh.metadata() or {}).get("card_sha256")
    if vouched != card_digest({k: v for k, v in doc.items() if k != "tensors"}):
        raise ModelError(f"{card_path} does not match the card its tensors were saved with: it was edited or damaged; refusing to load it")
    try:
        card = ModelCard.from_dict(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{card_path}: malformed card ({type(exc).__name__}: {exc})") from None
    return card, load_file(str(tensor_path)), actual
