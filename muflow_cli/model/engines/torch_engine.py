"""The torch side of scoring: eager torch as an engine, the traced ONNX export, torch's probe scores.

Apart from onnx_engine.py and choose.py so that choosing and running an ONNX engine imports no torch: a scan whose
scoring graph is cached never needs this module (choose.py imports it on first need).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import nn

from muflow_cli.nn.features import FeatureExtractor
from muflow_cli.nn.flow_model import MuFlowModel


class ScoringGraph(nn.Module):
    """uint8 crops (B, S, S, 3) [and, for a masked model, uint8 valid (B, S, S)] -> (per-layer NLL (B, L),
    residual map of layer 1, ..., of layer L)."""

    def __init__(self, backbone: FeatureExtractor, model: MuFlowModel) -> None:
        super().__init__()
        self.backbone = backbone
        self.model = model

    def forward(self, crops: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = score_features(self.backbone, self.model, crops, valid, True)
        return (out["layers"], *out["maps"])


def score_features(backbone: FeatureExtractor, model: MuFlowModel, crops: torch.Tensor, valid: torch.Tensor | None,
                   with_maps: bool) -> dict[str, torch.Tensor]:
    """The model's outputs for ``crops``: masked by ``valid`` when the model is (``model.masked``), else over the whole crop."""
    if model.masked:
        if valid is None:
            valid = torch.ones(crops.shape[:3], dtype=torch.uint8, device=crops.device)
        feats, masks = backbone.masked_features(crops, valid)
        return model(feats, with_maps=with_maps, masks=masks)
    return model(backbone.features(crops), with_maps=with_maps)


def score_parts(backbone: FeatureExtractor, model: MuFlowModel, crops: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """(B, 3, L): the score's parts per layer (MuFlowModel.parts), masked as :func:`score_features` masks."""
    if model.masked:
        if valid is None:
            valid = torch.ones(crops.shape[:3], dtype=torch.uint8, device=crops.device)
        feats, masks = backbone.masked_features(crops, valid)
        return model.parts(feats, masks)
    return model.parts(backbone.features(crops))


class TorchEngine:
    """Eager torch on the detector's device."""

    name = "torch"

    def __init__(self, backbone: FeatureExtractor, model: MuFlowModel, device: torch.device) -> None:
        self.backbone, self.model, self.device = backbone, model, device

    def set_spinning(self, on: bool) -> None:
        """Nothing to set: torch's own thread pool decides."""

    @torch.inference_mode()
    def __call__(self, crops: torch.Tensor | np.ndarray, valid: torch.Tensor | np.ndarray | None,
                 with_maps: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        valid = torch.as_tensor(valid).to(self.device) if valid is not None else None
        out = score_features(self.backbone, self.model, torch.as_tensor(crops).to(self.device), valid, with_maps)
        return out["layers"].cpu().numpy(), [m.cpu().numpy() for m in out.get("maps", [])]


def export_graph(backbone: FeatureExtractor, model: MuFlowModel, crop_size: int, opset: int) -> bytes:
    """The scoring graph as ONNX bytes, batch axis dynamic (seconds: the tracer runs the whole model)."""
    graph = ScoringGraph(backbone, model).eval()
    outputs = ["layers"] + [f"map{i}" for i in range(len(model.flows))]
    inputs = ["crops", "valid"] if model.masked else ["crops"]  # an unmasked model's graph is as it always was
    example = (torch.zeros(2, crop_size, crop_size, 3, dtype=torch.uint8),)
    if model.masked:
        example += (torch.ones(2, crop_size, crop_size, dtype=torch.uint8),)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes about constant spatial sizes, deprecation notices
        torch.onnx.export(
            graph,
            example,
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in [*inputs, *outputs]},
        )
    return buf.getvalue()


def single_threaded_layers(engine: TorchEngine, crops: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Torch's per-layer scores of a few ``crops`` on one thread, for the probe check.

    Why one: a 3-crop batch gains little from more, and torch's OpenMP threads, when other work
    holds the cores, wait on each other: 6 s instead of 0.2 s for the probe on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return engine(torch.from_numpy(np.array(crops, dtype=np.uint8)), torch.from_numpy(np.array(valid, dtype=np.uint8)), False)[0]  # writable copies
    finally:
        torch.set_num_threads(threads)
