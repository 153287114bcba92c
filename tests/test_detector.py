"""The bundle: loads what was saved, refuses what was tampered with, scores in batches."""

import json

import numpy as np
import pytest

from muflow_cli.detector import Detector, ModelError


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
    assert card["training"]["calibration_faces"] == len(default_detector.calibration) > 20


def test_round_trip_keeps_scores(tmp_path, default_detector, astronaut, face_detector):
    crop = face_detector.faces(astronaut, size=default_detector.crop_size, context=default_detector.context)[0].crop[None]
    path = default_detector.save(tmp_path / "copy.muflow")
    again = Detector.load(path)
    np.testing.assert_allclose(again.score(crop)["score"], default_detector.score(crop)["score"], rtol=1e-6)
    np.testing.assert_array_equal(again.calibration, default_detector.calibration)


def _copy_default(tmp_path, default_detector):
    return default_detector.save(tmp_path / "m.muflow")


def test_flipped_byte_is_refused(tmp_path, default_detector):
    path = _copy_default(tmp_path, default_detector)
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-10] ^= 0x01
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="tampered"):
        Detector.load(path)


def test_newer_format_is_refused_with_versions(tmp_path, default_detector):
    path = _copy_default(tmp_path, default_detector)
    card = json.loads((path / "card.json").read_text())
    card["format"] = 99
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="format 99.*format 1"):
        Detector.load(path)


def test_missing_card_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a muflow model"):
        Detector.load(tmp_path)


def test_wrong_crop_shape_is_rejected(default_detector):
    with pytest.raises(ValueError, match="crops must be"):
        default_detector.score(np.zeros((1, 64, 64, 3), np.uint8))


def test_unbundled_backbone_fails_clearly_offline():
    from muflow_cli.features import BackboneError, create_feature_extractor

    with pytest.raises(BackboneError, match="--backbone-weights"):
        create_feature_extractor("resnet50")
    with pytest.raises(BackboneError, match="safetensors"):
        create_feature_extractor("mobilenetv2_100", weights="model.pth")


def test_user_supplied_backbone_weights_load(tmp_path):
    """Any timm CNN loads from a user's .safetensors (here resnet18 with random weights, for shape only)."""
    import timm
    from safetensors.torch import save_file

    from muflow_cli.features import BackboneError, create_feature_extractor

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
    import copy

    other = copy.copy(default_detector)
    other.card = copy.deepcopy(default_detector.card)
    other.card["backbone"]["weights"] = "my_mobilenet.safetensors"
    other.card["backbone"]["weights_sha256"] = "0" * 64
    path = other.save(tmp_path / "m.muflow")
    with pytest.raises(ModelError, match="--backbone-weights"):
        Detector.load(path)


def test_edited_card_is_refused(tmp_path, default_detector):
    path = _copy_default(tmp_path, default_detector)
    card = json.loads((path / "card.json").read_text())
    card["crop"]["context"] = 2.0  # would silently change every score
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="edited or damaged"):
        Detector.load(path)


def test_save_never_replaces_a_folder_that_is_not_a_model(tmp_path, default_detector):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "keep.jpg").write_bytes(b"precious")
    with pytest.raises(ModelError, match="not a muflow model"):
        default_detector.save(photos)
    assert (photos / "keep.jpg").read_bytes() == b"precious"
    first = default_detector.save(tmp_path / "m.muflow")
    assert default_detector.save(first) == first and Detector.load(first)  # a bundle may be replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.muflow", "photos"]  # no temp folders left
