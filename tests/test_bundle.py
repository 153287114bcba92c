"""The bundle on disk: loads what was saved, refuses what was tampered with, never replaces a non-bundle."""

import json
from pathlib import Path

import pytest

from muflow_cli.model.bundle import CARD, ModelError, NotABundleError, read_bundle
from muflow_cli.model.card import ModelCard
from muflow_cli.model.deepfake_model import DeepfakeModel

FORMAT_1 = Path(__file__).parent / "data" / "format1.muflow"  # the bundled model of muflow 0.1.0, as it shipped


def test_a_format_1_model_reads_as_a_typed_card():
    """Bundles written before the card was typed (format 1, e.g. the 0.1.0 default model) still load, every field read."""
    raw = json.loads((FORMAT_1 / CARD).read_text())
    assert raw["format"] == 1
    card, tensors, sha = read_bundle(FORMAT_1)
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
    with pytest.raises(ModelError, match="format 99.*format 4"):
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


def test_the_bundled_model_holds_200_calibration_faces_whose_p_values_rank(t1_path):
    """The default model (scripts/make_default_model.py) is calibrated on >= 200 faces of folders it was not fitted on, so its
    smallest two-sided p-value is <= 0.01; the domain check is silent on its own calibration faces and on t1.jpg."""
    from muflow_cli.model.bundle import default_model_path
    from muflow_cli.pipelines.scan import ScanConfig, scan

    card, tensors, _ = read_bundle(default_model_path())
    assert card.format == 3 and card.crop.masked and card.calibration.faces == len(tensors["calibration"]) >= 200
    assert card.calibration.source == "calibrate" and card.calibration.group_by == "folder"  # whole folders held out
    assert card.training.group_by == "folder" and card.training.augment == 1 and card.training.framings == 0
    model = DeepfakeModel.load()
    assert model.calibration.min_p() <= 0.01
    assert not model.calibration.domain_check(model.calibration.p_values(model.calibration.scores), 0.05).mismatch
    t1 = scan([t1_path], model, ScanConfig(), progress=False)
    assert not model.calibration.domain_check(t1["p_value"].to_numpy(float), 0.05).mismatch
