"""A fitted µFlow deepfake model: its card, frozen backbone, flows and Gaussians, and calibration.

``DeepfakeModel.load(path).score(crops)`` turns aligned face crops into fakeness scores;
``.calibration`` turns scores into p-values and verdicts. Persistence (and its integrity
checks) lives in bundle.py, the scoring engines in engine.py, devices in device.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .version import __version__
from .bundle import ModelError, default_model_path, read_bundle, write_bundle
from .calibration import Calibration
from .card import FORMAT_VERSION, BackboneSpec, CalibrationInfo, CropSpec, FaceDetectorSpec, LayerSpec, ModelCard, TrainingInfo
from .device import pick_device
from .engine import OnnxEngine, TorchEngine, check_engine_name, create_engine
from .features import BackboneCard, FeatureExtractor
from .model import FlowConfig, MuFlowModel
from .weights import sha256_file


class DeepfakeModel:
    """Scores aligned face crops; ``calibration`` says how unusual a score is for real faces."""

    def __init__(self, card: ModelCard, backbone: FeatureExtractor, model: MuFlowModel, calibration: Calibration,
                 tensors_sha256: str | None = None) -> None:
        self.card = card
        self.backbone = backbone
        self.model = model.eval()
        self.calibration = calibration
        self.tensors_sha256 = tensors_sha256  # the bundle's identity once saved or loaded (None while unsaved)
        # Tensors kept for people, not scoring: `report.averages`, `report.faces` (uint8 samples, fit_report.py).
        self.extras: dict[str, torch.Tensor] = {}
        self.device = torch.device("cpu")
        self.engine_name = "auto"
        self._engine: TorchEngine | OnnxEngine | None = None

    @property
    def crop_size(self) -> int:
        return self.card.crop.size

    @property
    def context(self) -> float:
        return self.card.crop.context

    @property
    def layer_names(self) -> list[str]:
        return self.card.layer_names

    def to(self, device: str | torch.device) -> "DeepfakeModel":
        self.device = pick_device(device)
        self.backbone.to(self.device)
        self.model.to(self.device)
        self._engine = None
        return self

    def use_engine(self, name: str = "auto") -> "DeepfakeModel":
        """Score with ``auto`` (ONNX Runtime on CPU, torch on CUDA), ``torch`` or ``onnx`` (see engine.py)."""
        check_engine_name(name)
        self.engine_name, self._engine = name, None
        return self

    @property
    def engine(self) -> TorchEngine | OnnxEngine:
        """The scoring engine, built on first use (the ONNX export takes about a second)."""
        if self._engine is None:
            self._engine = create_engine(self.engine_name, self.backbone, self.model, self.device, self.crop_size,
                                         cache_key=self.tensors_sha256)
        return self._engine

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

    def with_calibration(self, scores: np.ndarray, info: CalibrationInfo, card: ModelCard | None = None) -> "DeepfakeModel":
        """The same flows (shared, not copied, engine included) with new calibration scores and card."""
        other = DeepfakeModel(replace(card or self.card, calibration=info), self.backbone, self.model,
                              Calibration(scores, info.tail))
        other.device, other.engine_name, other._engine = self.device, self.engine_name, self._engine
        other.extras = dict(self.extras)
        return other

    # -- persistence ----------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write the bundle atomically (bundle.py); a folder that is not a bundle is never replaced."""
        self.card = replace(self.card, muflow_version=__version__, format=FORMAT_VERSION)
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors["calibration"] = torch.from_numpy(self.calibration.scores.copy())
        tensors.update({k: v for k, v in self.extras.items() if k.startswith("report.")})
        self.tensors_sha256 = write_bundle(Path(path), self.card, tensors)
        return Path(path)

    @classmethod
    def load(cls, path: Path | str | None = None, backbone_weights: Path | None = None,
             download_backbone: bool = False) -> "DeepfakeModel":
        """Load and verify a bundle (the bundled demonstration model when ``path`` is None)."""
        path = Path(path) if path is not None else default_model_path()
        card, tensors, sha = read_bundle(path)
        bb = card.backbone
        bcard = BackboneCard(name=bb.name, taps=bb.taps, mean=bb.mean, std=bb.std,
                             weights=bb.weights if bb.weights_sha256 is None else None)
        if backbone_weights is not None:
            if bb.weights_sha256 and sha256_file(Path(backbone_weights)) != bb.weights_sha256:
                raise ModelError(f"{backbone_weights} is not the backbone file this model was fitted with")
        elif not download_backbone and (bb.weights_sha256 or bb.weights == "timm-pretrained"):
            # Scoring with other backbone weights than the fit's would give meaningless scores.
            raise ModelError(
                f"{path} was fitted with backbone weights {bb.weights!r}, which are not bundled; "
                "pass the same file with --backbone-weights (or --download-backbone if it came from timm)"
            )
        backbone = FeatureExtractor(bcard, weights=backbone_weights, download=download_backbone)
        model = MuFlowModel(card.channels, card.flow)
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"{path} does not match its card: {exc}") from None
        det = cls(card, backbone, model, Calibration(tensors["calibration"].numpy(), card.calibration.tail), sha)
        det.extras = {k: v for k, v in tensors.items() if k.startswith("report.")}
        return det


def new_card(
    *,
    backbone: FeatureExtractor,
    backbone_weights: Path | None,
    crop: CropSpec,
    face_detector: FaceDetectorSpec,
    flow: FlowConfig,
    calibration: CalibrationInfo,
    training: TrainingInfo,
) -> ModelCard:
    """The card of a freshly fitted model."""
    bc = backbone.card
    return ModelCard(
        backbone=BackboneSpec(
            name=bc.name, taps=tuple(bc.taps), mean=tuple(bc.mean), std=tuple(bc.std),
            weights=backbone_weights.name if backbone_weights else (bc.weights or "timm-pretrained"),
            weights_sha256=sha256_file(backbone_weights) if backbone_weights else None,
        ),
        layers=tuple(LayerSpec(c, s) for c, s in zip(backbone.channels, backbone.strides)),
        crop=crop,
        face_detector=face_detector,
        flow=flow,
        calibration=calibration,
        training=training,
        muflow_version=__version__,
    )
