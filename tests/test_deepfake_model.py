"""The deepfake model: scores in batches, keeps its scores through save/load, needs its own backbone weights."""

from dataclasses import replace

import numpy as np
import pytest

from muflow_cli.model.bundle import ModelError
from muflow_cli.model.deepfake_model import DeepfakeModel


def test_default_model_loads_and_scores_t1(default_detector, face_detector, t1_rgb):
    faces = face_detector.faces(t1_rgb, size=default_detector.crop_size, context=default_detector.context)
    crops = np.stack([f.crop for f in faces])
    one_by_one = np.concatenate([default_detector.score(crops[i : i + 1])["score"] for i in range(len(crops))])
    batched = default_detector.score(crops, batch_size=4)
    assert batched["layers"].shape == (6, 3)
    np.testing.assert_allclose(batched["score"], one_by_one, rtol=1e-4)
    np.testing.assert_allclose(batched["score"], batched["layers"].mean(1), rtol=1e-6)
    assert np.all(np.isfinite(batched["score"]))
    card = default_detector.card
    assert card.calibration.faces == len(default_detector.calibration) >= 200  # re-calibrated: scripts/make_default_model.py


def test_round_trip_keeps_scores(tmp_path, default_detector, astronaut, face_detector):
    crop = face_detector.faces(astronaut, size=default_detector.crop_size, context=default_detector.context)[0].crop[None]
    path = default_detector.save(tmp_path / "copy.muflow")
    again = DeepfakeModel.load(path)
    np.testing.assert_allclose(again.score(crop)["score"], default_detector.score(crop)["score"], rtol=1e-6)
    np.testing.assert_array_equal(again.calibration.scores, default_detector.calibration.scores)
    assert again.card == replace(default_detector.card, format=3) and again.tensors_sha256 == default_detector.tensors_sha256  # save records it


def test_wrong_crop_shape_is_rejected(default_detector):
    with pytest.raises(ValueError, match="crops must be"):
        default_detector.score(np.zeros((1, 64, 64, 3), np.uint8))


def test_unbundled_backbone_fails_clearly_offline():
    from muflow_cli.nn.features import BackboneError, create_feature_extractor

    with pytest.raises(BackboneError, match="--backbone-weights"):
        create_feature_extractor("resnet50")
    with pytest.raises(BackboneError, match="safetensors"):
        create_feature_extractor("mobilenetv2_100", weights="model.pth")


def test_user_supplied_backbone_weights_load(tmp_path):
    """Any timm CNN loads from a user's .safetensors (here resnet18 with random weights, for shape only)."""
    import timm
    from safetensors.torch import save_file

    from muflow_cli.nn.features import BackboneError, create_feature_extractor

    state = timm.create_model("resnet18", pretrained=False).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "r18.safetensors"))
    fx = create_feature_extractor("resnet18", weights=tmp_path / "r18.safetensors")
    assert fx.channels == [64, 128, 256] and fx.strides == [4, 8, 16]
    import torch

    feats = fx(torch.zeros(2, 64, 64, 3, dtype=torch.uint8))
    assert [tuple(f.shape) for f in feats] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4)]
    save_file({"fc.weight": state["fc.weight"].contiguous()}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(BackboneError, match="does not fit resnet18"):
        create_feature_extractor("resnet18", weights=tmp_path / "wrong.safetensors")


def test_model_fitted_on_other_backbone_weights_needs_them(tmp_path, default_detector):
    """Scoring with other backbone weights than the fit's would be meaningless: refused, with the way out."""
    card = default_detector.card
    card = replace(card, backbone=replace(card.backbone, weights="my_mobilenet.safetensors", weights_sha256="0" * 64))
    other = DeepfakeModel(card, default_detector.backbone, default_detector.model, default_detector.calibration)
    path = other.save(tmp_path / "m.muflow")
    with pytest.raises(ModelError, match="--backbone-weights"):
        DeepfakeModel.load(path)
