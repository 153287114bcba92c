"""A fitted µFlow deepfake model: its card, frozen backbone, flows and Gaussians, and calibration.

``DeepfakeModel.load(path).score(crops)`` turns aligned face crops into fakeness scores;
``.calibration`` turns scores into p-values and verdicts. Persistence (and its integrity
checks) lives in bundle.py, the scoring engines in engines/ (choose.py picks one), devices in device.py.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from muflow_cli.model.bundle import ModelError, default_model_path, read_bundle, write_bundle
from muflow_cli.model.card import FORMAT_VERSION, BackboneSpec, CalibrationInfo, CropSpec, FaceDetectorSpec, LayerSpec, ModelCard, TrainingInfo
from muflow_cli.model.device import device_name, device_type, pick_device
from muflow_cli.model.engines.base import ScoringEngine, check_engine_name
from muflow_cli.model.engines.choose import CachedGraph, build_engine, find_cached_graph
from muflow_cli.nn.config import MIN_INSIDE, FlowConfig
from muflow_cli.stats.calibration import Calibration
from muflow_cli.stats.strata import Strata
from muflow_cli.version import __version__
from muflow_cli.weights import manifest, sha256_file, weight_path

if TYPE_CHECKING:
    import torch

    from muflow_cli.faces.face import Face
    from muflow_cli.nn.features import FeatureExtractor
    from muflow_cli.nn.flow_model import MuFlowModel


# Calibration scores per processing stratum (stats/strata.py), as two flat tensors; absent in older bundles.
STRATA_CODES, STRATA_SCORES = "calibration.strata.codes", "calibration.strata.scores"


class _TorchParts:
    """The backbone and the flows, built on first need (shared by the models :meth:`DeepfakeModel.with_calibration` makes)."""

    def __init__(self, backbone: FeatureExtractor | None = None, model: MuFlowModel | None = None,
                 build: Callable[[], tuple[FeatureExtractor, MuFlowModel]] | None = None) -> None:
        self.backbone, self.model, self._build = backbone, (model.eval() if model is not None else None), build

    @property
    def built(self) -> bool:
        return self.backbone is not None

    def get(self, device: str) -> tuple[FeatureExtractor, MuFlowModel]:
        if self.backbone is None:
            backbone, model = self._build()
            if device != "cpu":
                backbone.to(device)
                model.to(device)
            self.backbone, self.model, self._build = backbone, model.eval(), None
        return self.backbone, self.model


def _is_tensor(x: Any) -> bool:
    return "torch" in sys.modules and isinstance(x, sys.modules["torch"].Tensor)


class DeepfakeModel:
    """Scores aligned face crops; ``calibration`` says how unusual a score is for real faces.

    Loaded from a bundle whose ONNX scoring graph is in the cache (engines/graph_cache.py), it scores on the
    CPU without torch: the backbone and flows (``backbone``, ``model``) are built, and torch imported,
    only when something needs them (the torch engine, an export, ``save``, ``fit``).
    """

    def __init__(self, card: ModelCard, backbone: FeatureExtractor | None, model: MuFlowModel | None, calibration: Calibration,
                 tensors_sha256: str | None = None) -> None:
        self.card = card
        self._parts = _TorchParts(backbone, model)
        self.calibration = calibration
        self.tensors_sha256 = tensors_sha256  # the bundle's identity once saved or loaded (None while unsaved)
        # The backbone weights' sha256 when the card pins them (the graph cache's key; None: checked with torch).
        self.backbone_sha256: str | None = None
        # Tensors kept for people, not scoring: `report.averages`, `report.faces` (uint8 samples, fit_report.py).
        self._extras: dict[str, Any] = {}
        self._device = "cpu"  # torch's name for it: "cpu", "cuda", "cuda:1"
        self.engine_name = "auto"
        self._engine: ScoringEngine | None = None
        self._cached: CachedGraph | None = None  # the cache entry load() found, for the first engine

    @property
    def crop_size(self) -> int:
        return self.card.crop.size

    @property
    def context(self) -> float:
        return self.card.crop.context

    @property
    def layer_names(self) -> list[str]:
        return self.card.layer_names

    @property
    def backbone(self) -> FeatureExtractor:
        """The frozen backbone (torch), built on first use."""
        return self._parts.get(self._device)[0]

    @property
    def model(self) -> MuFlowModel:
        """The flows and Gaussians (torch), built on first use."""
        return self._parts.get(self._device)[1]

    @property
    def device(self) -> torch.device:
        """Where the torch parts run (imports torch; :attr:`device_type` does not)."""
        return pick_device(self._device)

    @property
    def device_type(self) -> str:
        """``cpu`` or ``cuda``."""
        return device_type(self._device)

    @property
    def extras(self) -> dict[str, torch.Tensor]:
        if any(not _is_tensor(v) for v in self._extras.values()):  # read as numpy by load(): torch on first use
            import torch

            self._extras = {k: v if _is_tensor(v) else torch.from_numpy(v) for k, v in self._extras.items()}
        return self._extras

    @extras.setter
    def extras(self, value: dict[str, Any]) -> None:
        self._extras = dict(value)

    def to(self, device: str | torch.device) -> "DeepfakeModel":
        self._device = device_name(device)
        if self._parts.built:
            self._parts.backbone.to(self._device)
            self._parts.model.to(self._device)
        self._engine = None
        return self

    def use_engine(self, name: str = "auto", check: bool = False) -> DeepfakeModel:
        """Score with ``auto`` (ONNX Runtime on CPU, torch on CUDA), ``torch`` or ``onnx`` (engines/choose.py).

        ``check``: build the engine now, so that a named engine that cannot run fails before any work starts."""
        check_engine_name(name)
        self.engine_name, self._engine = name, None
        if check:
            _ = self.engine
        return self

    @property
    def engine(self) -> ScoringEngine:
        """The scoring engine, built on first use (the ONNX export takes seconds; a cached graph, no torch)."""
        if self._engine is None:
            cached, self._cached = self._cached, None
            self._engine = build_engine(self.engine_name, lambda: self._parts.get(self._device), self._device, self.crop_size,
                                        cache_key=self.tensors_sha256, backbone_key=self.backbone_sha256,
                                        torch_built=self._parts.built, cached=cached)
        return self._engine

    @property
    def masked(self) -> bool:
        """Whether scores count only what lies inside the photo (nn/masking.py); False for bundles from before."""
        return self.card.crop.masked

    @property
    def native(self) -> bool:
        """Whether faces are scored at native resolution (faces/native.py): ``score_faces`` then scores each
        face's native crops and pools them; the faces must come with them (``native=`` of faces.stage)."""
        return self.card.crop.native

    def score_faces(self, faces: list[Face], batch_size: int = 32, with_maps: bool = False,
                    transform: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """:meth:`score` of found faces: their aligned crops, or, for a native model, their native crops pooled per
        face (``card.crop.pool``). ``transform`` changes the crops first (a JPEG round trip: the stability check).
        A native model's ``maps`` are its crops' maps laid over the face's window (faces/native.window_map): where its
        aligned crop lies, so they are drawn over that crop as a standard model's are."""
        from muflow_cli.faces.face import valid_masks

        if not self.native:
            crops = np.stack([f.crop for f in faces]) if faces else np.zeros((0, self.crop_size, self.crop_size, 3), np.uint8)
            return self.score(crops if transform is None else transform(crops), batch_size, with_maps, valid_masks(faces))
        from muflow_cli.faces.native import pool_scores, window_map

        if any(f.native is None for f in faces):
            raise ValueError("this model scores faces at native resolution: find them with native=True (faces/stage.py)")
        units = [f.native for f in faces]
        crops = np.concatenate([u.crops for u in units]) if units else np.zeros((0, self.crop_size, self.crop_size, 3), np.uint8)
        owner = np.repeat(np.arange(len(units)), [len(u) for u in units])
        out = self.score(crops if transform is None else transform(crops), batch_size, with_maps,
                         np.concatenate([u.valid for u in units]) if units else None, min_inside=0.0)
        layers = pool_scores(out["layers"], owner, len(faces), self.card.crop.pool)
        layers[[f.inside < MIN_INSIDE for f in faces]] = np.nan  # as :meth:`score` says of a crop mostly outside the photo
        res = {"score": layers.astype(np.float32).mean(1, dtype=np.float32).astype(np.float64), "layers": layers}
        if with_maps:
            res["maps"] = [np.stack([window_map(m[owner == k], u, self.crop_size // ly.stride) for k, u in enumerate(units)])
                           if units else np.zeros((0, self.crop_size // ly.stride, self.crop_size // ly.stride))
                           for m, ly in zip(out["maps"], self.card.layers)]
        return res

    def score(self, crops: Any, batch_size: int = 32, with_maps: bool = False, valid: Any = None,
              min_inside: float = MIN_INSIDE) -> dict[str, np.ndarray]:
        """Scores of (B, S, S, 3) uint8 RGB aligned crops: ``score`` (B,), ``layers`` (B, L), ``maps`` if asked.

        ``valid`` (B, S, S) bool: the crop pixels that come from the photo (``Face.valid``; None: all of them).
        A masked model scores only those; a face with less than ``min_inside`` of its crop inside gets NaN (too
        little of it is in the photo to say anything). An unmasked model ignores ``valid``."""
        if not _is_tensor(crops):
            crops = np.asarray(crops)
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (self.crop_size, self.crop_size, 3) or str(crops.dtype) not in ("uint8", "torch.uint8"):
            raise ValueError(f"crops must be (B, {self.crop_size}, {self.crop_size}, 3) uint8, got {tuple(crops.shape)} {crops.dtype}")
        if valid is not None:
            valid = np.asarray(valid)
            if valid.shape != tuple(crops.shape[:3]):
                raise ValueError(f"valid must be {tuple(crops.shape[:3])}, like the crops, got {valid.shape}")
            valid = valid.astype(np.uint8, copy=False)
        if len(crops) == 0:
            res = {"score": np.zeros(0), "layers": np.zeros((0, len(self.layer_names)))}
            if with_maps:
                res["maps"] = []
            return res
        layers, maps = [], []
        for i in range(0, len(crops), batch_size):
            part = valid[i : i + batch_size] if valid is not None and self.masked else None
            lay, mp = self.engine(crops[i : i + batch_size], part, with_maps)
            layers.append(lay)
            maps.append(mp)
        per_layer = np.concatenate(layers).astype(np.float64)
        if valid is not None and self.masked:
            per_layer[valid.mean(axis=(1, 2)) < min_inside] = np.nan
        # The score is the mean over layers, taken in float32 as the model does (same numbers from either engine).
        res = {"score": per_layer.astype(np.float32).mean(1, dtype=np.float32).astype(np.float64), "layers": per_layer}
        if with_maps:
            res["maps"] = [np.concatenate([m[j] for m in maps]) for j in range(len(self.layer_names))]
        return res

    def score_parts(self, crops: np.ndarray, valid: np.ndarray | None = None, batch_size: int = 32) -> dict[str, np.ndarray]:
        """The score's parts per face (nn/nll.masked_layer_parts), each the mean over layers as the score is:
        ``face`` (the average faces' Gaussian), ``residual``, ``logdet``; they sum to the score. Torch, on the
        model's device: a diagnostic (``muflow eval --parts``), not the scan's hot path."""
        import torch

        from muflow_cli.model.engines.torch_engine import score_parts
        from muflow_cli.nn.flow_model import PARTS

        backbone, model = self._parts.get(self._device)
        out = []
        with torch.inference_mode():
            for i in range(0, len(crops), batch_size):
                v = torch.from_numpy(np.asarray(valid[i:i + batch_size], np.uint8)).to(self._device) if valid is not None else None
                out.append(score_parts(backbone, model, torch.from_numpy(np.asarray(crops[i:i + batch_size])).to(self._device), v).cpu().numpy())
        parts = np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(PARTS), len(self.layer_names)))
        return {name: parts[:, k].mean(1) for k, name in enumerate(PARTS)}

    def with_calibration(self, scores: np.ndarray, info: CalibrationInfo, card: ModelCard | None = None,
                         strata: Strata | None = None) -> "DeepfakeModel":
        """The same flows (shared, not copied, engine included) with new calibration scores (and processing
        strata: stats/strata.py; None: none) and card."""
        other = DeepfakeModel(replace(card or self.card, calibration=info), None, None, Calibration(scores, info.tail, strata))
        other._parts, other.backbone_sha256 = self._parts, self.backbone_sha256
        other._device, other.engine_name, other._engine = self._device, self.engine_name, self._engine
        other._extras = dict(self._extras)
        return other

    # -- persistence ----------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write the bundle atomically (bundle.py); a folder that is not a bundle is never replaced."""
        import torch

        self.card = replace(self.card, muflow_version=__version__, format=min(FORMAT_VERSION, self.card.crop.format))
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors["calibration"] = torch.from_numpy(self.calibration.scores.copy())
        if self.calibration.strata is not None:
            codes, scores = self.calibration.strata.pairs()
            tensors[STRATA_CODES], tensors[STRATA_SCORES] = torch.from_numpy(codes), torch.from_numpy(scores)
        tensors.update({k: v for k, v in self.extras.items() if k.startswith("report.")})
        self.tensors_sha256 = write_bundle(Path(path), self.card, tensors)
        return Path(path)

    @classmethod
    def load(cls, path: Path | str | None = None, backbone_weights: Path | None = None,
             download_backbone: bool = False) -> "DeepfakeModel":
        """Load and verify a bundle (the bundled demonstration model when ``path`` is None).

        When the graph cache holds this bundle's scoring graph (and the card pins its backbone weights),
        the backbone and flows are not built: a CPU scan then runs without importing torch."""
        path = Path(path) if path is not None else default_model_path()
        card, tensors, sha = read_bundle(path, framework="np")
        bb = card.backbone
        if backbone_weights is not None:
            given = sha256_file(Path(backbone_weights))
            if bb.weights_sha256 and given != bb.weights_sha256:
                raise ModelError(f"{backbone_weights} is not the backbone file this model was fitted with")
            pinned: str | None = given
        elif not download_backbone and (bb.weights_sha256 or bb.weights == "timm-pretrained"):
            # Scoring with other backbone weights than the fit's would give meaningless scores.
            raise ModelError(
                f"{path} was fitted with backbone weights {bb.weights!r}, which are not bundled; "
                "pass the same file with --backbone-weights (or --download-backbone if it came from timm)"
            )
        elif download_backbone or not bb.weights:
            pinned = None  # timm's download (or whatever FeatureExtractor says about none): not pinned here
        else:
            weight_path(bb.weights)  # the bundled file, its sha256 checked against the manifest
            pinned = manifest()[bb.weights].sha256
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}

        def build() -> tuple[FeatureExtractor, MuFlowModel]:
            import torch

            from muflow_cli.nn.features import BackboneCard, FeatureExtractor
            from muflow_cli.nn.flow_model import MuFlowModel

            bcard = BackboneCard(name=bb.name, taps=bb.taps, mean=bb.mean, std=bb.std,
                                 weights=bb.weights if bb.weights_sha256 is None else None)
            backbone = FeatureExtractor(bcard, weights=backbone_weights, download=download_backbone)
            model = MuFlowModel(card.channels, card.flow)
            model.masked = card.crop.masked
            try:
                model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
            except RuntimeError as exc:
                raise ModelError(f"{path} does not match its card: {exc}") from None
            return backbone, model

        strata = Strata.from_pairs(tensors[STRATA_CODES], tensors[STRATA_SCORES]) if STRATA_CODES in tensors else None
        det = cls(card, None, None, Calibration(tensors["calibration"], card.calibration.tail, strata), sha)
        det._parts = _TorchParts(build=build)
        det.backbone_sha256 = pinned
        det._extras = {k: v for k, v in tensors.items() if k.startswith("report.")}
        det._cached = find_cached_graph(sha, card.crop.size, pinned) if pinned is not None else None
        if det._cached is None:
            det._parts.get(det._device)  # no cached graph: build now, so that a bundle that does not fit its card fails here
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
