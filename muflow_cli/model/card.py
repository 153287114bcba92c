"""The model card: a typed, frozen description of a fitted model, stored as ``card.json``.

It says everything needed to rebuild the pipeline — backbone (with its input statistics),
layers, crop, face detector, flow — and what the model was fitted and calibrated on. Every
field is read by muflow; nothing is edited after the card exists (``dataclasses.replace``
makes a new one). ``from_dict`` reads format 1 (muflow 0.1 before the card was typed) to 4.

Plain data only: reading a card never imports torch (the flows are built from ``FlowConfig``
in nn/flow_model.py, when they are needed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from muflow_cli.faces.options import FaceFinding
from muflow_cli.nn.config import FlowConfig
from muflow_cli.stats.calibration import calibration_cautions
from muflow_cli.stats.conformal import min_attainable_p

if TYPE_CHECKING:
    from muflow_cli.faces.detect import FaceDetector

FORMAT_VERSION = 4  # 3: crop.masked (an older muflow would score a masked model without its mask); 4: crop.native


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
    # Scores only the feature positions inside the photo (nn/masking.py); False: a bundle from before
    # masking (format <= 2), scored as it was fitted, over the whole crop.
    masked: bool = False
    # Faces scored at native resolution (faces/native.py): never enlarged, tiles of larger faces pooled by
    # ``pool`` ("mean" or "top"). A native card is format 4: an older muflow refuses it instead of resampling.
    native: bool = False
    pool: str = "mean"

    @property
    def format(self) -> int:
        """The oldest card format that describes this crop (what a bundle with it is written as)."""
        return 4 if self.native else 3

    def words(self) -> str:
        """The crop in words (``muflow info``)."""
        if not self.native:
            return f"{self.size} px, context {self.context:g}"
        return (f"native resolution, never enlarged: faces up to {self.size} px a side (context {self.context:g}) 1:1, "
                f"larger ones as {self.size}-px tiles pooled by {'their mean' if self.pool == 'mean' else 'the top quarter'}")


@dataclass(frozen=True)
class FaceDetectorSpec:
    kind: str = "scrfd"
    threshold: float = 0.5

    def factory(self, finding: FaceFinding, threads: int = 1) -> Callable[[], FaceDetector] | None:
        """What builds the detector ``finding`` asks for, this one where it names none (None: pre-aligned crops).

        ``threads``: onnxruntime intra-op threads (1 for one of several parallel workers; 0: all cores)."""
        return finding.detector_factory(self.kind, self.threshold, threads)


@dataclass(frozen=True)
class CalibrationInfo:
    """How the calibration scores were obtained: by ``fit`` (held-out faces) or ``calibrate``."""

    tail: str = "two"
    faces: int | None = None
    source: str = "fit"  # "fit": held out from the fit set; "calibrate": the user's reals
    files: int | None = None
    group_by: str | None = None
    date: str | None = None
    tail_probe_auc: float | None = None  # fit --tail auto: P[a smooth copy of a held-out real scores higher]; None: not probed
    # Calibration faces per processing stratum (stats/strata.py), by name; empty: one pooled stratum (older models)
    strata: dict[str, int] = field(default_factory=dict)
    strata_sources: int = 0  # photos re-processed to fill the strata
    # The forward check (pipelines/drift.py): calibrated on the earlier part of the held-out faces, the share of
    # the later part flagged at forward_at; None: not measured (too few faces, or calibrated before it existed)
    forward_fpr: float | None = None
    forward_faces: int = 0
    forward_at: float = 0.05


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
    framings: int = 0  # framed copies of each fit face in flow training (a masked fit: nn/framing.py)
    data: str = ""  # a free-text description of the fit data (set by scripts/make_default_model.py)
    groups: int = 0  # photos, videos or folders the faces came from (the calibration split's unit; 0 in older cards)
    losses: list[float] = field(default_factory=list)  # training loss per epoch (empty in older cards)
    precision: str = "fp32"  # the flows' training precision (fp32 or bf16 autocast; scoring is always fp32)
    split: str = ""  # how calibration was held out: "groups" (whole groups) or "tails" (the later part of each sequence)
    calibration_groups: int = 0  # groups with faces in calibration
    gap_faces: int = 0  # faces left out between the fitted and held-out part of sequences


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

    def summary(self) -> list[tuple[str, str]]:
        """What the card says, as (what, value) lines a person reads: what the model was fitted on, when,
        how, and how it was calibrated (``muflow info``; the JSON card is ``to_dict``)."""
        t, c = self.training, self.calibration
        skipped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in t.skipped.items()) or "none"
        groups = f"from {t.groups} groups (by {t.group_by})" if t.groups else f"(split by {t.group_by})"
        split = {"groups": f"whole groups held out ({t.calibration_groups} of {t.groups})",
                 "tails": f"the later part of each sequence held out, {t.gap_faces} faces left out between "
                          f"({t.calibration_groups} of {t.groups} groups in calibration)"}.get(t.split, "not recorded (fitted before the split was recorded)")
        calibrated = f"{c.faces} faces" if c.faces is not None else "unknown"
        if c.source == "calibrate":
            calibrated += f" of {c.files} files, by muflow calibrate" + (f" on {c.date}" if c.date else "")
        else:
            calibrated += " held out of the fit set"
        min_p = min_attainable_p(c.faces, c.tail) if c.faces else float("nan")
        groups_held = t.calibration_groups if c.source != "calibrate" else 0
        cautions = calibration_cautions(c.faces, groups_held, min_p) if c.faces else []
        return [
            ("fitted", f"{t.date or 'unknown date'} (muflow {self.muflow_version or 'before 0.2'}, card format {self.format})"),
            ("fit data", t.data or "not described"),
            ("images", f"{t.images} read, skipped: {skipped}"),
            ("faces", f"{t.faces} {groups}: {t.fit_faces} fitted, {t.calibration_faces} held out to calibrate"),
            ("split", split),
            ("averages", f"{t.averages} average faces of {t.k} crops each"),
            ("backbone", f"{self.backbone.name}, layers " + ", ".join(f"{ly.name} ({ly.channels} ch)" for ly in self.layers)),
            ("crop", f"{self.crop.words()}; face detector {self.face_detector.kind} "
                     f"(threshold {self.face_detector.threshold:g})"),
            ("framing", (f"scores only what lies inside the photo (masked); trained with {t.framings} framed "
                         f"cop{'y' if t.framings == 1 else 'ies'} of each fit face") if self.crop.masked else
             "predates masking: the whole crop is scored, with what alignment fills in past a photo's edge, so a "
             "headshot's score depends on its border; refit with this muflow to mask it"),
            ("flows", f"{self.flow.steps} coupling steps, hidden ratio {self.flow.hidden_ratio:g}, clamp {self.flow.clamp:g}"),
            ("training", f"{t.epochs} epochs, batch {t.batch_size}, lr {t.lr:g}, {t.precision}, "
                         f"augment {t.augment}, final loss {t.final_loss:.4f} nats/dim"),
            ("calibration", calibrated),
            ("p-values", ("two-sided" if c.tail == "two" else "upper tail") + " by default; the smallest is " + (f"{min_p:.4f}" if c.faces else "unknown")
             + ("" if c.tail_probe_auc is None else f"; tail chosen by the smooth-copy probe (AUC {c.tail_probe_auc:.2f})")),
            *((("strata", strata_text(c)),) if c.strata else ()),
            *((("drift", forward_text(c)),) if c.forward_fpr is not None else ()),
            *(("caution", text) for text in cautions),
        ]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        """Read a card of format 1 to 4 (unknown keys of format 1 — template, objective, sizes — are dropped)."""
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
            crop=CropSpec(int(d["crop"]["size"]), float(d["crop"]["context"]), bool(d["crop"].get("masked", False)),
                          bool(d["crop"].get("native", False)), str(d["crop"].get("pool", "mean"))),
            face_detector=FaceDetectorSpec(**d.get("face_detector", d.get("detector", {}))),
            flow=FlowConfig(**d["flow"]),
            calibration=CalibrationInfo(**calib),
            training=TrainingInfo(**training),
            muflow_version=d.get("muflow_version", ""),
            format=int(d.get("format", FORMAT_VERSION)),
        )


def strata_text(c: CalibrationInfo) -> str:
    """The processing strata in words (``muflow info``, the fit and calibrate summaries)."""
    from muflow_cli.stats.strata import MIN_STRATUM_FACES

    cells = ", ".join(f"{k} {v}" for k, v in c.strata.items())
    usable = sum(v >= MIN_STRATUM_FACES for v in c.strata.values())
    return (f"p-values against calibration faces processed like the scanned face: {usable} of {len(c.strata)} strata "
            f"hold {MIN_STRATUM_FACES}+ faces ({cells}; copies of {c.strata_sources} photos)")


def forward_text(c: CalibrationInfo) -> str:
    """The forward check in words: what a user should expect on faces later than the calibration, with the
    bound its few faces allow and its short horizon said, so that "0 %" is never read as a promise."""
    from muflow_cli.stats.drift import forward_bound

    return (f"one step later in the same footage or photo sets this model flags about {c.forward_fpr:.0%} of reals at "
            f"{c.forward_at:g}, at most {forward_bound(c.forward_fpr, c.forward_faces):.0%} at 95 % confidence (forward check: "
            f"calibrated on the earlier held-out faces, {c.forward_faces} later ones scored); footage further on can "
            "drift further — calibrate on recent reals (muflow calibrate)")


def _names(cls) -> set[str]:
    return {f.name for f in fields(cls)}
