"""Native resolution (faces/native.py): faces never enlarged, larger faces tiled, tile scores pooled; a native fit
and scan end to end on real faces."""

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import FAST_FIT, fast_fit_config
from typer.testing import CliRunner

from muflow_cli.cli import app
from muflow_cli.faces.align import template
from muflow_cli.faces.native import native_crops, pool_scores, tile_offsets, window_map
from muflow_cli.faces.options import FaceFinding
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.fit import collect_faces, gather_faces
from muflow_cli.pipelines.scan import ScanConfig, scan


def _upright_face(zoom: float, size: int = 256, context: float = 1.5, shift=(100.0, 60.0)):
    """A noise image and landmarks of an upright face the standard crop would resample by ``1 / zoom``."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (900, 1000, 3), dtype=np.uint8)
    return image, template(size, context) * zoom + shift


def test_a_small_face_is_placed_1_to_1_with_the_rest_not_scored():
    image, landmarks = _upright_face(0.5)  # the window is 128 px: the standard crop would enlarge it 2x
    got = native_crops(image, landmarks)
    assert len(got) == 1 and got.scale == pytest.approx(2.0)
    valid = got.valid[0]
    assert valid.sum() == 128 * 128 and valid[64:192, 64:192].all()  # the window, at the crop's centre
    # an upright face is copied, not resampled: the window's pixels are the photo's
    x0, y0 = np.round(landmarks.mean(0) - template(256).mean(0) * 0.5).astype(int)  # the window's top-left in the image
    assert np.array_equal(got.crops[0][64:192, 64:192], image[y0:y0 + 128, x0:x0 + 128])


def test_a_large_face_is_cut_into_tiles_that_cover_its_window():
    image, landmarks = _upright_face(2.5, shift=(10.0, 10.0))  # window 640 px: 3 x 3 tiles of 256
    got = native_crops(image, landmarks)
    assert len(got) == 9 and got.scale == pytest.approx(0.4) and got.valid.all()
    assert list(tile_offsets(640, 256)) == [0, 192, 384]  # overlapping, evenly spread, the last ending at the window's edge
    corner = np.round(landmarks.mean(0) - template(256).mean(0) * 2.5).astype(int)  # the window's top-left in the image
    for k, (oy, ox) in enumerate((oy, ox) for oy in (0, 192, 384) for ox in (0, 192, 384)):
        y, x = corner[1] + oy, corner[0] + ox
        assert np.array_equal(got.crops[k], image[y:y + 256, x:x + 256])


def test_tiles_past_the_photo_are_masked_and_never_more_than_max_tiles_a_side():
    image, landmarks = _upright_face(6.0, shift=(-300.0, -200.0))  # window 1536 px, mostly past the photo's top-left
    got = native_crops(image, landmarks)
    assert len(got) == 16  # 6 tiles would cover it; at most 4 a side
    assert 0 < got.valid.mean() < 1 and not got.valid[0].any()  # the first tile lies wholly outside


def test_the_crops_maps_are_laid_over_the_face_s_window():
    """A report draws a native face's heat map over its standard crop: the crops' maps placed where they lie in the
    face's window (which the standard crop shows), overlaps averaged."""
    image, landmarks = _upright_face(0.5)  # one crop, the window (128 px) at its centre
    one = native_crops(image, landmarks)
    cells = np.full((1, 64, 64), np.nan)  # stride 4: the window is cells 16..47; left half 1, right half 2
    cells[0, 16:48, 16:32], cells[0, 16:48, 32:48] = 1.0, 2.0
    got = window_map(cells, one, 64)
    assert np.isfinite(got).all() and np.allclose(got[:, :32], 1.0) and np.allclose(got[:, 32:], 2.0)
    image, landmarks = _upright_face(2.5, shift=(10.0, 10.0))  # 3 x 3 tiles of a 640-px window
    tiles = native_crops(image, landmarks)
    got = window_map(np.arange(9.0)[:, None, None] * np.ones((9, 64, 64)), tiles, 64)
    assert np.isfinite(got).all() and got[0, 0] == pytest.approx(0.0) and got[-1, -1] == pytest.approx(8.0)
    assert 0.0 < got[32, 32] < 8.0  # the middle, where tiles overlap


def test_pooling_mean_top_and_unscored_crops():
    scores = np.array([1.0, 3.0, np.nan, 2.0, 10.0, 0.0, 1.0, 1.0, np.nan])
    owner = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2])
    assert np.allclose(pool_scores(scores, owner, 3, "mean")[:2], [2.0, 2.8])
    top = pool_scores(scores, owner, 3, "top")  # the highest quarter, rounded up: 1 of 2 crops, 2 of 5
    assert top[0] == 3.0 and top[1] == 6.0 and np.isnan(top[2])
    layers = np.stack([scores, scores + 1], axis=1)
    assert np.allclose(pool_scores(layers, owner, 3, "top")[1], [6.0, 7.0])
    with pytest.raises(ValueError, match="pooling"):
        pool_scores(scores, owner, 3, "max")


@pytest.fixture(scope="module")
def native_model(tmp_path_factory, real_folder):
    """`muflow fit --native` on the real faces, in seconds (FAST_FIT's settings, with its summary)."""
    out = tmp_path_factory.mktemp("native") / "native.muflow"
    res = CliRunner().invoke(app, ["fit", str(real_folder), "-o", str(out), "--native", *FAST_FIT[:-1]], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "native crops)" in res.output  # the summary counts faces, with their crops beside them
    return out


def test_a_native_fit_keeps_a_face_s_crops_together(real_folder):
    """Each face gives its native crops as rows (several for a large face), all in the face's group."""
    config = fast_fit_config(native=True)
    faces = gather_faces([real_folder], config, False)
    assert faces.owner is not None and len(faces.crops) == len(faces.owner) > faces.owner[-1] + 1 == 36
    assert all(len(set(faces.groups[faces.owner == k])) == 1 for k in range(36))
    with pytest.raises(ValueError, match="gather_faces"):
        collect_faces([real_folder], config, progress=False)


def test_a_native_model_pools_its_crops_as_the_fit_did(native_model, real_folder):
    """The bundle says native (format 4: an older muflow refuses it), its calibration holds one pooled score a held-out
    face, and a scan's score of a face is the mean of its native crops' scores."""
    model = DeepfakeModel.load(native_model)
    assert model.card.format == 4 and model.native and model.card.crop.pool == "mean"
    assert len(model.calibration) == model.card.calibration.faces == model.card.training.calibration_faces
    table = scan([real_folder], model, ScanConfig(), progress=False)
    faces = table[table["status"] == "ok"]
    assert len(faces) == 36 and np.isfinite(faces["score"]).all()
    first = faces.iloc[0]
    image = np.ascontiguousarray(cv2.imread(str(first["file"]))[..., ::-1])
    detector = model.card.face_detector.factory(FaceFinding())()
    face = detector.faces(image, model.crop_size, model.context, native=True)[int(first["face"])]
    crops = model.score(face.native.crops, valid=face.native.valid, min_inside=0.0)["score"]
    assert first["score"] == pytest.approx(crops.mean(), rel=1e-5)
    info = CliRunner().invoke(app, ["info", str(native_model)], env={"COLUMNS": "200"})
    assert info.exit_code == 0 and "native resolution, never enlarged" in info.output


def test_a_native_model_draws_heat_maps_over_the_aligned_crop(native_model, real_folder, tmp_path):
    model = DeepfakeModel.load(native_model)
    image = np.ascontiguousarray(cv2.imread(str(sorted(real_folder.rglob("*.png"))[0]))[..., ::-1])
    faces = model.card.face_detector.factory(FaceFinding())().faces(image, model.crop_size, model.context, native=True)
    out = model.score_faces(faces, with_maps=True)
    assert [m.shape for m in out["maps"]] == [(len(faces), 128 // ly.stride, 128 // ly.stride) for ly in model.card.layers]
    assert all(np.isfinite(m).mean() > 0.5 for m in out["maps"])  # the window is scored; only what lies outside the photo is not
    res = CliRunner().invoke(app, ["scan", str(real_folder), "--model", str(native_model), "--html", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output


def test_a_native_model_scans_video(native_model, astronaut, tmp_path):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 320))
    for i in range(10):
        frame = cv2.resize(astronaut, (320 + i, 320 + i), interpolation=cv2.INTER_AREA)[:320, :320]
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    tracks = tmp_path / "tracks.csv"
    res = CliRunner().invoke(app, ["video", str(clip), "--model", str(native_model), "--fps", "5", "--tracks", str(tracks)])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(tracks)
    assert len(got) == 1 and got["faces"].item() == 5 and np.isfinite(got["mean_score"]).all()


def test_a_native_fit_refuses_ray_before_any_work(real_folder, tmp_path):
    res = CliRunner().invoke(app, ["fit", str(real_folder), "-o", str(tmp_path / "m.muflow"), "--native", "--ray", "local", *FAST_FIT])
    assert res.exit_code != 0 and "not on Ray" in res.output


def test_native_needs_a_masked_fit_and_a_known_pool():
    from muflow_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="masked"):
        fast_fit_config(native=True, masked=False).check()
    with pytest.raises(ConfigError, match="pool"):
        fast_fit_config(native=True, pool="max").check()


def test_serve_scores_a_native_model_as_a_local_scan(native_model, astronaut, tmp_path):
    from test_serve import Server, encoded

    photo = tmp_path / "astronaut.png"
    photo.write_bytes(encoded(astronaut))
    local = scan([photo], DeepfakeModel.load(native_model), ScanConfig(), progress=False)
    server = Server(tmp_path, "--model", str(native_model))
    try:
        res = server.client.post("/v1/scan", files=[("file", ("astronaut.png", photo.read_bytes()))])
    finally:
        server.close()
    assert res.status_code == 200, res.text
    rows = [r for f in res.json()["files"] for r in f["rows"]]
    assert len(rows) == len(local) == 1 and rows[0]["score"] == pytest.approx(float(local["score"].iloc[0]), rel=1e-5)
