"""The bundle on disk: loads what was saved, refuses what was tampered with, never replaces a non-bundle."""

import json

import pytest

from muflow_cli.bundle import CARD, ModelError, NotABundleError, default_model_path, read_bundle
from muflow_cli.card import ModelCard
from muflow_cli.deepfake_model import DeepfakeModel


def test_the_bundled_format_1_model_reads_as_a_typed_card():
    """weights/default.muflow was written before the card was typed (format 1): it still loads, every field read."""
    raw = json.loads((default_model_path() / CARD).read_text())
    assert raw["format"] == 1
    card, tensors, sha = read_bundle(default_model_path())
    assert card.format == 1 and sha == raw["tensors"]["sha256"]
    assert card.backbone.mean == tuple(raw["backbone"]["mean"]) and card.face_detector.kind == raw["detector"]["kind"]
    assert card.layer_names == ["s4", "s8", "s16"] and card.calibration.faces == raw["training"]["calibration_faces"]
    assert card.training.data.startswith("photos and video frames")
    assert ModelCard.from_dict(card.to_dict()) == card  # the typed form round-trips
    assert len(tensors["calibration"]) == card.calibration.faces


def _copy_default(tmp_path, default_detector):
    return default_detector.save(tmp_path / "m.muflow")


def test_flipped_byte_is_refused(tmp_path, default_detector):
    path = _copy_default(tmp_path, default_detector)
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-10] ^= 0x01
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="tampered"):
        DeepfakeModel.load(path)


def test_newer_format_is_refused_with_versions(tmp_path, default_detector):
    path = _copy_default(tmp_path, default_detector)
    card = json.loads((path / "card.json").read_text())
    card["format"] = 99
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="format 99.*format 2"):
        DeepfakeModel.load(path)


def test_missing_card_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a muflow model"):
        DeepfakeModel.load(tmp_path)


def test_edited_card_is_refused(tmp_path, default_detector):
    path = _copy_default(tmp_path, default_detector)
    card = json.loads((path / "card.json").read_text())
    card["crop"]["context"] = 2.0  # would silently change every score
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="edited or damaged"):
        DeepfakeModel.load(path)


def test_save_never_replaces_a_folder_that_is_not_a_model(tmp_path, default_detector):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "keep.jpg").write_bytes(b"precious")
    with pytest.raises(NotABundleError, match="not a muflow model"):
        default_detector.save(photos)
    assert (photos / "keep.jpg").read_bytes() == b"precious"
    first = default_detector.save(tmp_path / "m.muflow")
    assert default_detector.save(first) == first and DeepfakeModel.load(first)  # a bundle may be replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.muflow", "photos"]  # no temp folders left
