"""The detector bundle: a folder with ``card.json`` and ``model.safetensors``.

The card says everything needed to rebuild the pipeline (backbone, taps, crop size and
template, face detector, flow configuration) and what the model was fitted on; the tensors
hold the flows, the Gaussian targets and the sorted calibration scores. The card records the
tensor file's sha256 and the format version, and the tensor file's metadata records the card's
sha256: loading checks all three and refuses a mismatch, so neither file can be edited silently.
Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .engine import OnnxEngine, TorchEngine, check_engine_name, create_engine
from .faces import template
from .features import FeatureExtractor, backbone_card
from .model import FlowConfig, MuFlowModel
from .score import TAILS, min_attainable_p, p_values
from .weights import WeightsError, sha256_file, weights_dir

FORMAT_VERSION = 1
CARD = "card.json"
TENSORS = "model.safetensors"
DEFAULT_MODEL = "default.muflow"


class ModelError(WeightsError):
    """A bundle that is missing, damaged, tampered with, or from an incompatible version."""


def card_digest(card: dict[str, Any]) -> str:
    """sha256 of a card's canonical JSON (sorted keys, no spaces)."""
    import hashlib

    return hashlib.sha256(json.dumps(card, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def default_model_path() -> Path:
    return weights_dir() / DEFAULT_MODEL


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but torch sees no CUDA device")
    return torch.device(device)


class Detector:
    """A fitted µFlow detector: ``Detector.load(path).score(crops)``."""

    def __init__(self, card: dict[str, Any], backbone: FeatureExtractor, model: MuFlowModel, calibration: np.ndarray) -> None:
        self.card = card
        self.backbone = backbone
        self.model = model.eval()
        self.calibration = np.sort(np.asarray(calibration, dtype=np.float64))
        self.device = torch.device("cpu")
        self.engine_name = "auto"
        self._engine: TorchEngine | OnnxEngine | None = None

    # -- properties from the card -------------------------------------------------
    @property
    def crop_size(self) -> int:
        return int(self.card["crop"]["size"])

    @property
    def context(self) -> float:
        return float(self.card["crop"]["context"])

    @property
    def layer_names(self) -> list[str]:
        return [f"s{layer['stride']}" for layer in self.card["layers"]]

    @property
    def default_tail(self) -> str:
        return self.card.get("calibration", {}).get("tail", "two")

    def face_detector(self, kind: str | None = None, threshold: float | None = None, threads: int = 0):
        """The face detector this model was fitted with, unless ``kind``/``threshold`` override it.

        ``threads``: onnxruntime intra-op threads (0: all cores; 1 for one of several parallel workers)."""
        from .faces import FaceDetector

        card = self.card.get("detector", {})
        return FaceDetector(kind or card.get("kind", "scrfd"), threshold or card.get("threshold", 0.5), threads=threads)

    def to(self, device: str | torch.device) -> "Detector":
        self.device = pick_device(device) if isinstance(device, str) else device
        self.backbone.to(self.device)
        self.model.to(self.device)
        self._engine = None
        return self

    def use_engine(self, name: str = "auto") -> "Detector":
        """Score with ``auto`` (ONNX Runtime on CPU, torch on CUDA), ``torch`` or ``onnx`` (see engine.py)."""
        check_engine_name(name)
        self.engine_name, self._engine = name, None
        return self

    @property
    def engine(self) -> TorchEngine | OnnxEngine:
        """The scoring engine, built on first use (the ONNX export takes about a second)."""
        if self._engine is None:
            self._engine = create_engine(self.engine_name, self.backbone, self.model, self.device, self.crop_size,
                                         cache_key=self.card.get("tensors", {}).get("sha256"))
        return self._engine

    # -- scoring --------------------------------------------------------------------
    def score(self, crops: np.ndarray | torch.Tensor, batch_size: int = 32, with_maps: bool = False) -> dict[str, np.ndarray]:
        """Scores of (B, S, S, 3) uint8 RGB aligned crops: ``score`` (B,), ``layers`` (B, L), ``maps`` if asked."""
        crops = torch.as_tensor(np.asarray(crops) if not isinstance(crops, torch.Tensor) else crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.crop_size, self.crop_size, 3) or crops.dtype != torch.uint8:
            raise ValueError(f"crops must be (B, {self.crop_size}, {self.crop_size}, 3) uint8, got {tuple(crops.shape)} {crops.dtype}")
        if len(crops) == 0:
            res = {"score": np.zeros(0), "layers": np.zeros((0, len(self.layer_names)))}
            if with_maps:
                res["maps"] = []
            return res
        layers, maps = [], []
        for i in range(0, len(crops), batch_size):
            lay, mp = self.engine(crops[i : i + batch_size], with_maps)
            layers.append(lay)
            maps.append(mp)
        per_layer = np.concatenate(layers).astype(np.float64)
        # The score is the mean over layers, taken in float32 as the model does (same numbers from either engine).
        res = {"score": per_layer.astype(np.float32).mean(1, dtype=np.float32).astype(np.float64), "layers": per_layer}
        if with_maps:
            res["maps"] = [np.concatenate([m[j] for m in maps]) for j in range(len(self.layer_names))]
        return res

    def p_values(self, scores: np.ndarray, tail: str | None = None) -> np.ndarray:
        return p_values(scores, self.calibration, tail or self.default_tail)

    def min_p(self, tail: str | None = None) -> float:
        return min_attainable_p(len(self.calibration), tail or self.default_tail)

    # -- persistence ----------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write the bundle atomically (a temp folder renamed into place)."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.exists() and not (path / CARD).is_file():
            # Replacing a bundle is fine; replacing anything else (a folder of photos) never is.
            raise ModelError(f"{path} exists and is not a muflow model; choose another output path")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        tensors["calibration"] = torch.from_numpy(self.calibration.copy())
        card = dict(self.card)
        card["format"] = FORMAT_VERSION
        card["muflow_version"] = __version__
        card.pop("tensors", None)
        # Each file vouches for the other: the tensors carry the card's hash, the card the tensors'.
        save_file(tensors, str(tmp / TENSORS), metadata={"card_sha256": card_digest(card)})
        card["tensors"] = {"file": TENSORS, "sha256": sha256_file(tmp / TENSORS)}
        (tmp / CARD).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n", encoding="utf-8")
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
        self.card = card
        return path

    @classmethod
    def load(
        cls, path: Path | str | None = None, backbone_weights: Path | None = None, download_backbone: bool = False
    ) -> "Detector":
        """Load and verify a bundle (the default model when ``path`` is None)."""
        from safetensors.torch import load_file

        path = Path(path) if path is not None else default_model_path()
        card_path = path / CARD
        if not card_path.is_file():
            raise ModelError(f"{path} is not a muflow model (no {CARD}); fit one with `muflow fit DIR -o {path}`")
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{card_path}: unreadable card: {exc}") from None
        fmt = card.get("format")
        if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
            raise ModelError(
                f"{path} has model format {fmt} (written by muflow {card.get('muflow_version', '?')}); "
                f"this muflow {__version__} reads format {FORMAT_VERSION} and older: upgrade muflow"
            )
        tensor_path = path / card["tensors"]["file"]
        if not tensor_path.is_file():
            raise ModelError(f"{tensor_path} is missing")
        actual = sha256_file(tensor_path)
        if actual != card["tensors"]["sha256"]:
            raise ModelError(
                f"{tensor_path} has sha256 {actual} but its card says {card['tensors']['sha256']}: "
                "the model was damaged or tampered with; refusing to load it"
            )
        from safetensors import safe_open

        with safe_open(str(tensor_path), framework="pt") as fh:
            vouched = (fh.metadata() or {}).get("card_sha256")
        if vouched != card_digest({k: v for k, v in card.items() if k != "tensors"}):
            raise ModelError(f"{card_path} does not match the card its tensors were saved with: it was edited or damaged; refusing to load it")
        tensors = load_file(str(tensor_path))
        bb = card["backbone"]
        bcard = backbone_card(bb["name"], tuple(bb["taps"]))
        if backbone_weights is not None:
            if bb.get("weights_sha256") and sha256_file(Path(backbone_weights)) != bb["weights_sha256"]:
                raise ModelError(f"{backbone_weights} is not the backbone file this model was fitted with")
        elif not download_backbone and (bb.get("weights_sha256") or bb.get("weights") != bcard.weights):
            # Scoring with other backbone weights than the fit's would give meaningless scores.
            raise ModelError(
                f"{path} was fitted with backbone weights {bb.get('weights')!r}, which are not bundled; "
                "pass the same file with --backbone-weights (or --download-backbone if it came from timm)"
            )
        backbone = FeatureExtractor(bcard, weights=backbone_weights, download=download_backbone)
        model = MuFlowModel([layer["channels"] for layer in card["layers"]], FlowConfig(**card["flow"]))
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"{tensor_path} does not match its card: {exc}") from None
        return cls(card, backbone, model, tensors["calibration"].numpy())


def new_card(
    *,
    backbone: FeatureExtractor,
    backbone_weights: Path | None,
    crop_size: int,
    context: float,
    detector: dict[str, Any],
    flow: FlowConfig,
    tail: str,
    training: dict[str, Any],
) -> dict[str, Any]:
    """The JSON card of a freshly fitted detector."""
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {TAILS}")
    size = crop_size
    return {
        "format": FORMAT_VERSION,
        "muflow_version": __version__,
        "backbone": {
            "name": backbone.card.name,
            "taps": list(backbone.card.taps),
            "mean": list(backbone.card.mean),
            "std": list(backbone.card.std),
            "weights": str(backbone_weights.name) if backbone_weights else (backbone.card.weights or "timm-pretrained"),
            "weights_sha256": sha256_file(backbone_weights) if backbone_weights else None,
        },
        "layers": [
            {"channels": c, "stride": s, "size": size // s} for c, s in zip(backbone.channels, backbone.strides)
        ],
        "crop": {"size": size, "context": context, "template": template(size, context).round(3).tolist()},
        "detector": detector,
        "flow": flow.to_dict(),
        "objective": "density: Gaussian on the spatial mean + standard normal on the residual (docs/method.md)",
        "calibration": {"tail": tail},
        "training": training,
    }
