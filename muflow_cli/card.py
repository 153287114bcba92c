"""The model card: a typed, frozen description of a fitted model, stored as ``card.json``.

It says everything needed to rebuild the pipeline — backbone (with its input statistics),
layers, crop, face detector, flow — and what the model was fitted and calibrated on. Every
field is read by muflow; nothing is edited after the card exists (``dataclasses.replace``
makes a new one). ``from_dict`` reads format 1 (muflow 0.1 before the card was typed) and 2.

Plain data only: reading a card never imports torch (the flows are built from ``FlowConfig``
in model.py, when they are needed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

FORMAT_VERSION = 2


@dataclass(frozen=True)
class FlowConfig:
    """The flows' shape: coupling steps per layer, subnet width, kernels, log-scale clamp (model.py builds them)."""

    steps: int = 8
    hidden_ratio: float = 1.0
    conv3x3_only: bool = False
    clamp: float = 2.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    taps: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str  # bundled manifest name, a user file's name, or "timm-pretrained"
    weights_sha256: str | None = None  # set when the weights were a user file: the same file must be given to load


@dataclass(frozen=True)
class LayerSpec:
    channels: int
    stride: int

    @property
    def name(self) -> str:
        return f"s{self.stride}"


@dataclass(frozen=True)
class CropSpec:
    size: int
    context: float


@dataclass(frozen=True)
class FaceDetectorSpec:
    kind: str = "scrfd"
    threshold: float = 0.5

    def build(self, kind: str | None = None, threshold: float | None = None, threads: int = 0, min_face: float = 0.0):
        """A :class:`faces.FaceDetector` of this kind, unless ``kind``/``threshold`` override it.

        ``threads``: onnxruntime intra-op threads (0: all cores; 1 for one of several parallel workers);
        ``min_face``: the smallest face (px) to look for in large images (tiles; 0: off)."""
        from .faces import FaceDetector

        return FaceDetector(kind or self.kind, threshold or self.threshold, threads=threads, min_face=min_face)


@dataclass(frozen=True)
class CalibrationInfo:
    """How the calibration scores were obtained: by ``fit`` (held-out faces) or ``calibrate``."""

    tail: str = "two"
    faces: int | None = None
    source: str = "fit"  # "fit": held out from the fit set; "calibrate": the user's reals
    files: int | None = None
    group_by: str | None = None
    date: str | None = None


@dataclass(frozen=True)
class TrainingInfo:
    date: str = ""
    seed: int = 0
    images: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    faces: int = 0
    fit_faces: int = 0
    calibration_faces: int = 0
    k: int = 0
    averages: int = 0
    epochs: int = 0
    batch_size: int = 0
    lr: float = 0.0
    final_loss: float = float("nan")
    calibration_mean_score: float = float("nan")
    min_face_px: float = 0.0
    group_by: str = "file"
    augment: int = 0  # degraded copies of each fit face in flow training
    data: str = ""  # a free-text description of the fit data (set by scripts/make_default_model.py)
    groups: int = 0  # photos, videos or folders the faces came from (the calibration split's unit; 0 in older cards)
    losses: list[float] = field(default_factory=list)  # training loss per epoch (empty in older cards)
    precision: str = "fp32"  # the flows' training precision (fp32 or bf16 autocast; scoring is always fp32)


@dataclass(frozen=True)
class ModelCard:
    backbone: BackboneSpec
    layers: tuple[LayerSpec, ...]
    crop: CropSpec
    face_detector: FaceDetectorSpec
    flow: FlowConfig
    calibration: CalibrationInfo
    training: TrainingInfo
    muflow_version: str = ""
    format: int = FORMAT_VERSION

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def channels(self) -> list[int]:
        return [layer.channels for layer in self.layers]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (lists for tuples), without the tensor file's hash (bundle.py adds it)."""
        d = asdict(self)
        d["backbone"]["taps"] = list(self.backbone.taps)
        d["backbone"]["mean"], d["backbone"]["std"] = list(self.backbone.mean), list(self.backbone.std)
        d["layers"] = [asdict(layer) for layer in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        """Read a card of format 1 or 2 (unknown keys of format 1 — template, objective, sizes — are dropped)."""
        bb = d["backbone"]
        training = {k: v for k, v in d.get("training", {}).items() if k in _names(TrainingInfo)}
        calib = {k: v for k, v in d.get("calibration", {}).items() if k in _names(CalibrationInfo)}
        if "faces" not in calib and "calibration_faces" in training:
            calib["faces"] = training["calibration_faces"]
        return cls(
            backbone=BackboneSpec(
                name=bb["name"], taps=tuple(bb["taps"]), mean=tuple(bb["mean"]), std=tuple(bb["std"]),
                weights=bb.get("weights", ""), weights_sha256=bb.get("weights_sha256"),
            ),
            layers=tuple(LayerSpec(int(layer["channels"]), int(layer["stride"])) for layer in d["layers"]),
            crop=CropSpec(int(d["crop"]["size"]), float(d["crop"]["context"])),
            face_detector=FaceDetectorSpec(**d.get("face_detector", d.get("detector", {}))),
            flow=FlowConfig(**d["flow"]),
            calibration=CalibrationInfo(**calib),
            training=TrainingInfo(**training),
            muflow_version=d.get("muflow_version", ""),
            format=int(d.get("format", FORMAT_VERSION)),
        )


def _names(cls) -> set[str]:
    return {f.name for f in fields(cls)}
