"""The fit's settings, what it reports, and its error: what the fit's stages all read and write (pipelines/fit.py)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from muflow_cli.choices import CACHE_PLACES, FIT_PRESETS, NATIVE_POOLS, PRECISIONS
from muflow_cli.errors import ConfigError, MuflowError
from muflow_cli.faces.options import FaceFinding
from muflow_cli.inputs.files import GROUP_BY
from muflow_cli.model.card import FaceDetectorSpec
from muflow_cli.nn.config import FlowConfig
from muflow_cli.stats.calibration import check_fit_tail

MIN_FACES = 20


class FitError(MuflowError):
    """The data cannot give a model (too few faces, training diverged)."""


@dataclass
class FitConfig:
    crop_size: int = 256
    context: float = 1.5
    faces: FaceFinding = field(default_factory=FaceFinding)  # detector (None: SCRFD), down to which size, or pre-aligned crops
    min_face_px: float = 24.0  # smaller faces carry too little detail to learn from
    backbone: str = "mobilenetv2_100"
    backbone_weights: Path | None = None
    download_backbone: bool = False
    taps: tuple[int, ...] | None = None
    flow: FlowConfig = field(default_factory=FlowConfig)
    k: int | None = None
    averages: int | None = None
    calibration_fraction: float = 0.2
    group_by: str = "auto"  # faces that share a group stay on one side of the split (auto: near-duplicates by content)
    epochs: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-5
    precision: str = "auto"  # flows' training: fp32, bf16 autocast, or auto (bf16 where native: device.training_precision)
    seed: int = 0
    tail: str = "auto"  # auto: upper unless smooth copies of the held-out reals score low (stats/calibration.choose_tail)
    cache: str = "auto"  # where the feature cache lives: auto (RAM while it needs <= half the free memory), memory, disk
    cache_dir: Path | None = None  # folder for an on-disk cache (default: the system's temporary folder)
    device: str = "auto"
    augment: int = 0  # degraded copies of each fit face in flow training (augment.py); 0: none
    # Score only what lies inside the photo (nn/masking.py). False: the unmasked model of before (comparisons).
    masked: bool = True
    # Copies of each fit face cut as a headshot is (nn/framing.py). 0 since issue #32: each copy is one more
    # presentation per epoch, and the doubled training flagged more later real frames (36 % against 22 % at 0.05)
    # and unseen-source reals (pooled 4 of 29 against 1); a face cut tight to its box moves 30 % more without them
    # (docs/performance.md, "Masking or framed copies").
    framings: int = 0
    # Score faces at native resolution (faces/native.py): never enlarged; tiles of larger faces pooled by ``pool``
    # (mean or top). Off by default: measured against the standard crop in docs/performance.md, "Native resolution".
    native: bool = False
    pool: str = "mean"
    data_note: str = ""  # free text about the fit data, kept in the card
    # Calibrate per processing stratum (stats/strata.py): the calibration photos re-saved and shrunk over a grid
    # and scored again (pipelines/strata_calibration.py); False: one pooled calibration, as before
    strata: bool = True

    def check(self) -> None:
        """Every rule on the settings, checked before a single face is collected."""
        if self.crop_size < 64 or self.crop_size % 16:
            raise ConfigError("crop size must be a multiple of 16, at least 64 (the backbone's stride is 16)")
        self.faces.check()
        if self.group_by not in GROUP_BY:
            raise ConfigError(f"group_by must be one of {', '.join(GROUP_BY)}")
        if not 0.05 <= self.calibration_fraction <= 0.5:
            raise ConfigError("calibration fraction must lie in [0.05, 0.5]")
        if self.cache not in CACHE_PLACES:
            raise ConfigError(f"cache must be one of {', '.join(CACHE_PLACES)}")
        check_fit_tail(self.tail)
        if self.batch_size < 2 or self.lr <= 0 or (self.epochs is not None and self.epochs < 1):
            raise ConfigError("batch size must be at least 2, lr positive and epochs at least 1")
        if not 0 <= self.augment <= 8:
            raise ConfigError("augment must lie in [0, 8] copies per face")
        if not 0 <= self.framings <= 8 or (self.framings and not self.masked):
            raise ConfigError("framings must lie in [0, 8] copies per face, and needs a masked fit")
        if self.native and not self.masked:
            raise ConfigError("a native-resolution fit needs a masked fit: what lies around a small face is not scored")
        if self.pool not in NATIVE_POOLS:
            raise ConfigError(f"pool must be one of {', '.join(NATIVE_POOLS)}")
        if self.context < 1:
            raise ConfigError("context must be at least 1 (the template's own framing)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}")
        from muflow_cli.nn.features import backbone_card  # torch: not at import (the CLI's --help stays fast)

        if backbone_card(self.backbone).weights is None and self.backbone_weights is None and not self.download_backbone:
            # said before collecting faces (hours on a big folder), not when the backbone is built after it
            raise ConfigError(
                f"no weights for backbone {self.backbone!r} ship with muflow: pass --backbone-weights FILE.safetensors "
                "(timm's parameter names; python scripts/convert_pth.py IN.pth OUT.safetensors converts a .pth)"
            )


@dataclass(frozen=True)
class FitPreset:
    """A named fit configuration, with where its numbers come from: asked for by name, not assembled from options."""

    name: str
    fields: tuple[tuple[str, object], ...]  # FitConfig fields it sets
    flow_steps: int
    source: str

    def config(self, **given: object) -> FitConfig:
        """The preset's FitConfig; ``given`` (what the user set explicitly) wins over it."""
        return FitConfig(**{**dict(self.fields), "flow": FlowConfig(steps=self.flow_steps), **given})


PRESETS: dict[str, FitPreset] = {
    "paper": FitPreset(
        "paper",
        (("backbone", "resnet50"), ("taps", (1, 2, 3)), ("k", 500), ("averages", 1000), ("crop_size", 256)),
        flow_steps=8,
        source="µFlow (Pontorno et al., ECCV 2026): ImageNet ResNet-50 stages 1-3, k = 500 crops per average face, "
               "M = 1000 averages, 256-px aligned crops, 8-step FastFlow flows; fitted on FFHQ (70,000 faces). "
               "ResNet-50 weights do not ship with muflow: --backbone-weights",
    ),
}
assert tuple(PRESETS) == FIT_PRESETS


@dataclass
class FitReport:
    files: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    faces: int = 0
    fit_faces: int = 0
    training_faces: int = 0  # fit faces and their augmented copies (what the flows train on)
    precision: str = "fp32"  # what the flows were trained in (FitConfig.precision resolved for the device)
    calibration_faces: int = 0
    crops: dict[str, int] | None = None  # a native fit's crops (all, fit, calibration); None: one crop a face
    split: dict[str, Any] = field(default_factory=dict)  # how calibration was held out (stats/splits.py): kind, groups, gap
    links: dict[str, int] = field(default_factory=dict)  # how --group-by auto made its groups (stats/near_duplicates.py)
    k: int = 0
    averages: int = 0
    epochs: int = 0
    losses: list[float] = field(default_factory=list)
    calibration_mean: float = float("nan")
    tail: str = ""  # the tail stored in the model (FitConfig.tail, or what auto chose)
    tail_probe_auc: float = float("nan")  # auto: P[a smooth copy of a held-out real scores above a held-out real]
    forward_fpr: float | None = None  # the forward check (stats/drift.py) at FORWARD_FPR; None: too few faces
    forward_faces: int = 0
    strata: dict[str, int] = field(default_factory=dict)  # calibration faces per processing stratum
    seconds: dict[str, float] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # where the feature cache lived, and its size
    warnings: list[str] = field(default_factory=list)  # for the person who ran the fit (the CLI prints them)
    estimate: dict[str, float] = field(default_factory=dict)  # seconds per remaining stage, measured before it ran

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_epochs(n_fit: int) -> int:
    """About 6,000 presentations of the fit faces (~375 Adam steps at batch 16), within [8, 60] epochs.

    Each epoch also presents every fit face's copies (:func:`copies_per_face`): ``--framings 1`` or ``--augment 1``
    makes about 12,000 presentations. Counting the copies too (half the epochs) was measured in domain with one
    framed copy and not adopted: later real frames were flagged less (20.5 % against 36.4 % at 0.05) but GAN faces
    were ranked worse after re-saving and shrinking (AUC 0.74-0.80 against 0.82-0.87); dropping the framed copies
    instead (the default since) flagged 21.6 % (docs/performance.md, "Masking or framed copies").
    Checked on held-out reals only (benchmarks/fit_epochs.py): on a 24-face fit their NLL still falls up to the
    60-epoch cap (by 0.024 nats/dim from 32 to 60, the smallest step); a 120-face fit still falls steeply between 8
    and 16 of its 50 epochs.
    """
    return int(min(60, max(8, math.ceil(6000 / max(n_fit, 1)))))


def copies_per_face(config: FitConfig) -> int:
    """How many training faces each fit face becomes: itself, ``augment`` degraded copies and ``framings`` framed
    ones (nn/augment.AugmentedRows; FitConfig.check allows framed copies on a masked fit only)."""
    return 1 + config.augment + config.framings


def detector_spec(config: FitConfig) -> FaceDetectorSpec:
    """The face detector the model is fitted with, and that its scans use unless told otherwise."""
    default = FaceDetectorSpec()
    return FaceDetectorSpec(config.faces.detector or default.kind, config.faces.threshold or default.threshold)
