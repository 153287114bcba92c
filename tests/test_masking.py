"""Scoring only what lies inside the photo (issue #23): the pixel mask from alignment, the feature positions
it keeps, the masked likelihood, framed training copies, flat padding, and both engines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from muflow_cli.faces.align import align, content_box, template
from muflow_cli.model.card import CropSpec, ModelCard
from muflow_cli.nn.config import MIN_INSIDE
from muflow_cli.nn.flow import FastFlow
from muflow_cli.nn.framing import frame
from muflow_cli.nn.masking import masked_layer_norm, tap_masks
from muflow_cli.nn.nll import layer_nll, masked_layer_nll
from muflow_cli.nn.target import GaussianTarget


def test_the_mask_marks_exactly_the_crop_pixels_that_come_from_the_image(astronaut, face_detector):
    face = face_detector.detect(astronaut)[0]
    _, _, valid = align(astronaut, face.landmarks, 256, 1.5)
    assert valid.all()  # the astronaut's face lies well inside her photo
    x1, y1, x2, y2 = face.box.astype(int)
    tight = astronaut[y1:y2, x1:x2]  # a crop at margin 1.0 of the box: the context lies outside
    crop, _, valid = align(tight, face.landmarks - [x1, y1], 256, 1.5)
    assert 0.2 < valid.mean() < 0.8
    # Every pixel marked valid maps into the tight image, every other one outside it.
    from muflow_cli.faces.align import similarity

    inv = np.linalg.inv(np.vstack([similarity(face.landmarks - [x1, y1], template(256, 1.5)), [0, 0, 1]]))
    yy, xx = np.mgrid[0:256, 0:256]
    src = np.stack([xx, yy, np.ones_like(xx)], -1) @ inv[:2].T
    inside = (src[..., 0] >= -0.5) & (src[..., 0] <= tight.shape[1] - 0.5) & (src[..., 1] >= -0.5) & (src[..., 1] <= tight.shape[0] - 0.5)
    np.testing.assert_array_equal(valid, inside)


def test_flat_padding_is_not_the_photo(astronaut):
    padded = np.pad(astronaut, ((40, 60), (25, 0), (0, 0)), constant_values=128)
    assert content_box(padded) == (25, 40, 25 + 512, 40 + 512)
    assert content_box(astronaut) == (0, 0, 512, 512)
    assert content_box(np.zeros((50, 50, 3), np.uint8)) == (0, 0, 50, 50)  # all flat: nothing to trim


def test_a_padded_headshot_gives_the_headshots_crop(astronaut, face_detector):
    face = face_detector.detect(astronaut)[0]
    x1, y1, x2, y2 = face.box.astype(int)
    tight = np.ascontiguousarray(astronaut[y1:y2, x1:x2])
    plain = face_detector.faces(tight)[0]
    padded = face_detector.faces(np.pad(tight, ((60, 60), (60, 60), (0, 0)), constant_values=128))[0]
    assert plain.inside < 0.9 and abs(plain.inside - padded.inside) < 0.02
    # the padding is outside: it is filled by reflection of the picture, as past any photo's edge, never grey
    grey = np.all(padded.crop == 128, axis=-1)
    assert grey.mean() < 0.01 and (~padded.valid).mean() > 0.5


def test_tap_masks_keep_every_position_of_a_crop_inside_the_photo_and_drop_what_is_outside():
    valid = torch.ones(2, 128, 128, dtype=torch.uint8)
    valid[1, :, :64] = 0
    masks = tap_masks(valid, [(32, 32), (16, 16), (8, 8)])
    assert [tuple(m.shape) for m in masks] == [(2, 1, 32, 32), (2, 1, 16, 16), (2, 1, 8, 8)]
    assert all(bool(m[0].all()) for m in masks)
    for m in masks:
        w = m.shape[-1]
        assert not m[1, 0, :, : w // 2 - 1].any() and m[1, 0, :, w // 2 + 1 :].all()


def test_masked_layer_norm_and_likelihood_reduce_to_the_unmasked_ones_on_a_full_mask():
    torch.manual_seed(0)
    f = torch.randn(3, 6, 8, 8) * 2 + 1
    ones = torch.ones(3, 1, 8, 8)
    torch.testing.assert_close(masked_layer_norm(f, ones), torch.nn.functional.layer_norm(f, f.shape[1:]), atol=1e-5, rtol=1e-5)
    flow = FastFlow(6, steps=2)
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.05)
    z, log_det = flow(f)
    z2, log_det_map = flow(f, per_position=True)
    torch.testing.assert_close(z, z2)
    torch.testing.assert_close(log_det_map.sum((1, 2)), log_det, atol=1e-4, rtol=1e-5)
    target = GaussianTarget.fit(np.random.default_rng(0).normal(size=(50, 6)))
    torch.testing.assert_close(masked_layer_nll(z, log_det_map, target, ones), layer_nll(z, log_det, target), atol=1e-5, rtol=1e-5)


def test_what_lies_outside_the_mask_does_not_reach_the_likelihood_through_the_features():
    """With positions masked, the normalisation and the flows' input do not depend on what fills them."""
    torch.manual_seed(1)
    f = torch.randn(1, 6, 8, 8)
    mask = torch.ones(1, 1, 8, 8)
    mask[..., :3] = 0
    other = f.clone()
    other[..., :3] = torch.randn(1, 6, 8, 3) * 10 + 5
    torch.testing.assert_close(masked_layer_norm(f, mask), masked_layer_norm(other, mask))


def test_a_framed_copy_keeps_the_face_and_cuts_its_mask():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    valid = np.ones((128, 128), bool)
    cut_any = False
    for i in range(20):
        out, v = frame(crop, valid, np.random.default_rng(i), 1.5)
        core = slice(64 - 36, 64 + 36)
        assert v[core, core].all() and np.array_equal(out[core, core], crop[core, core])
        assert np.array_equal(out[v], crop[v])  # what is kept is the crop itself
        cut_any |= not v.all()
    assert cut_any


def test_a_bundle_from_before_masking_loads_scores_the_whole_crop_and_says_so(t1_rgb, face_detector):
    from pathlib import Path

    from muflow_cli.model.deepfake_model import DeepfakeModel

    old = DeepfakeModel.load(Path(__file__).parent / "data" / "format1.muflow")  # muflow 0.1.0's bundled model
    assert not old.masked and "predates masking" in dict(old.card.summary())["framing"]
    _assert_the_mask_is_ignored(old, t1_rgb, face_detector)


def _assert_the_mask_is_ignored(model, t1_rgb, face_detector) -> None:
    """An unmasked model gives t1's faces the same scores with half of each crop marked outside the photo."""
    crops = np.stack([f.crop for f in face_detector.faces(t1_rgb, size=model.crop_size)])
    half = np.zeros(crops.shape[:3], bool)
    half[:, :, model.crop_size // 2 :] = True
    np.testing.assert_array_equal(model.score(crops)["score"], model.score(crops, valid=half)["score"])


def test_cards_from_before_masking_read_as_unmasked():
    defaults = {f.name: f.default for f in dataclasses.fields(CropSpec)}
    assert defaults["masked"] is False and defaults["native"] is False  # a card without them: unmasked, resampled crops
    import json

    from muflow_cli.model.bundle import default_model_path

    card = json.loads((default_model_path() / "card.json").read_text())
    card["crop"].pop("masked", None)
    card["format"] = 2
    assert ModelCard.from_dict(card).crop.masked is False


@pytest.fixture(scope="module")
def masked_model(small_model):
    """The small test model (fitted with muflow fit's defaults: masked)."""
    from muflow_cli.model.deepfake_model import DeepfakeModel

    model = DeepfakeModel.load(small_model)
    assert model.masked and model.card.training.framings == 0
    return model


def test_the_onnx_graph_takes_the_mask_and_agrees_with_torch(masked_model, t1_rgb, face_detector):
    faces = face_detector.faces(t1_rgb, size=masked_model.crop_size)
    crops = np.stack([f.crop for f in faces])
    valid = np.ones(crops.shape[:3], bool)
    valid[:, :, :40] = False
    masked_model.use_engine("torch")
    ref = masked_model.score(crops, valid=valid)
    full = masked_model.score(crops)
    masked_model.use_engine("onnx")
    got = masked_model.score(crops, valid=valid)
    np.testing.assert_allclose(got["score"], ref["score"], rtol=1e-4)
    assert np.abs(full["score"] - ref["score"]).max() > 1e-3  # the mask changes what is scored
    tiny = np.zeros_like(valid)
    tiny[:, :10, :10] = True  # far less than MIN_INSIDE of the crop inside the photo
    assert tiny.mean() < MIN_INSIDE and np.isnan(masked_model.score(crops, valid=tiny)["score"]).all()


def test_an_unmasked_model_ignores_the_mask(real_folder, t1_rgb, face_detector, tmp_path):
    """A bundle fitted without masking (as every bundle before it) scores the whole crop, mask or not."""
    from conftest import fast_fit_config

    from muflow_cli.model.deepfake_model import DeepfakeModel
    from muflow_cli.pipelines.fit import fit

    fitted, _ = fit([real_folder], fast_fit_config(masked=False, framings=0, epochs=1), progress=False)
    model = DeepfakeModel.load(fitted.save(tmp_path / "unmasked.muflow"))
    assert not model.masked and "predates masking" in dict(model.card.summary())["framing"]
    _assert_the_mask_is_ignored(model, t1_rgb, face_detector)


def _square(box: np.ndarray, margin: float, w: int, h: int) -> tuple[int, int, int, int]:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = margin * max(box[2] - box[0], box[3] - box[1]) / 2
    return max(0, int(round(cx - half))), max(0, int(round(cy - half))), min(w, int(round(cx + half))), min(h, int(round(cy + half)))


def test_a_tight_crop_a_bordered_copy_and_the_photo_give_the_same_verdict(t1_path, astronaut, tmp_path):
    """Issue #23's check, on the bundled (masked) model: each face of t1.jpg and the astronaut, scanned in its
    photo, as a tight crop of its box (margin 1.0) and as that crop on a grey border, gets one verdict."""
    import cv2

    from muflow_cli.model.deepfake_model import DeepfakeModel
    from muflow_cli.pipelines.scan import ScanConfig, scan

    model = DeepfakeModel.load()
    assert model.masked
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut[..., ::-1])
    config = ScanConfig(provenance=False)
    base = scan([t1_path, photo], model, config, progress=False)
    base = base[base["status"] == "ok"]
    assert len(base) == 7
    variants = []
    for j, row in enumerate(base.itertuples()):
        image = cv2.imread(str(row.file))
        x1, y1, x2, y2 = _square(np.array([row.x1, row.y1, row.x2, row.y2]), 1.0, image.shape[1], image.shape[0])
        tight = image[y1:y2, x1:x2]
        pad = max(tight.shape[:2]) // 2
        for name, img in (("tight", tight), ("bordered", cv2.copyMakeBorder(tight, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128,) * 3))):
            cv2.imwrite(str(tmp_path / f"{j}_{name}.png"), img)
            variants.append((j, name))
    table = scan([tmp_path / f"{j}_{name}.png" for j, name in variants], model, config, progress=False)
    for j, name in variants:
        rows = table[(table["file"].astype(str).str.endswith(f"/{j}_{name}.png")) & (table["status"] == "ok")]
        assert len(rows) >= 1, f"face {j} lost as {name}"
        got = rows.iloc[int(np.argmax(rows["det_score"].to_numpy(float)))]
        ref = base.iloc[j]
        assert got["verdict"] == ref["verdict"], f"face {j} {name}: {got['verdict']} (p {got['p_value']:.3f}) vs {ref['verdict']} (p {ref['p_value']:.3f})"
