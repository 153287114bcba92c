"""The ONNX Runtime scoring graph gives torch's scores on real faces, at any batch size."""

import numpy as np
import pytest
import torch

from muflow_cli.deepfake_model import DeepfakeModel
from muflow_cli.engine import TOLERANCE, EngineError, OnnxEngine, TorchEngine, create_engine, max_relative_gap
from muflow_cli.flow import ChannelShuffle
from muflow_cli.target import GaussianTarget


@pytest.fixture(scope="module")
def real_crops(default_detector, face_detector, t1_rgb, astronaut):
    size, context = default_detector.crop_size, default_detector.context
    faces = face_detector.faces(t1_rgb, size=size, context=context) + face_detector.faces(astronaut, size=size, context=context)
    return np.stack([f.crop for f in faces])


@pytest.fixture(scope="module")
def engines():
    onnx_det = DeepfakeModel.load().use_engine("onnx")
    torch_det = DeepfakeModel.load().use_engine("torch")
    return onnx_det, torch_det


def test_auto_is_onnx_on_cpu_and_torch_is_torch(engines):
    onnx_det, torch_det = engines
    assert isinstance(onnx_det.engine, OnnxEngine)
    assert isinstance(torch_det.engine, TorchEngine)
    assert DeepfakeModel.load().engine.name == "onnx"


def test_onnx_scores_match_torch_on_real_faces(engines, real_crops):
    onnx_det, torch_det = engines
    assert len(real_crops) == 7
    ref = torch_det.score(real_crops, batch_size=8, with_maps=True)
    for batch in (1, 3, 8):  # the graph was exported at batch 2: the batch axis is truly dynamic
        got = onnx_det.score(real_crops, batch_size=batch, with_maps=True)
        # Stated tolerance; measured ~1e-6 nats/dim on these faces, against a spread of ~0.05 between them.
        assert max_relative_gap(ref["layers"], got["layers"]) <= TOLERANCE
        assert np.abs(ref["score"] - got["score"]).max() <= TOLERANCE
        for a, b in zip(ref["maps"], got["maps"]):
            assert a.shape == b.shape
            assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    assert ref["score"].std() > 100 * TOLERANCE  # the tolerance is far below the differences between faces


def test_onnx_verdicts_equal_torch_verdicts(engines, real_crops):
    onnx_det, torch_det = engines
    p_onnx = onnx_det.calibration.p_values(onnx_det.score(real_crops)["score"])
    p_torch = torch_det.calibration.p_values(torch_det.score(real_crops)["score"])
    np.testing.assert_array_equal(p_onnx, p_torch)


def test_empty_batch_and_bad_crops(engines):
    onnx_det, _ = engines
    out = onnx_det.score(np.zeros((0, 256, 256, 3), np.uint8), with_maps=True)
    assert out["score"].shape == (0,) and out["maps"] == []
    with pytest.raises(ValueError):
        onnx_det.score(np.zeros((1, 256, 256, 3), np.float32))


def test_engine_names(default_detector):
    with pytest.raises(ValueError):
        DeepfakeModel.load().use_engine("tensorrt")
    with pytest.raises(EngineError):
        create_engine("onnx", default_detector.backbone, default_detector.model, torch.device("meta"), 256)


def test_channel_shuffle_round_trip_and_zero_log_det():
    flow = ChannelShuffle(6)
    x = torch.randn(3, 6, 4, 4)
    z, ld = flow(x)
    back, ld_inv = flow.inverse(z)
    torch.testing.assert_close(back, x)
    assert not torch.equal(z, x)
    assert ld.ndim == 0 and float(ld) == 0.0 and float(ld_inv) == 0.0


def test_target_inverse_factor_follows_loaded_state():
    rng = np.random.default_rng(0)
    fitted = GaussianTarget.fit(rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5)))
    fresh = GaussianTarget(5)
    fresh.load_state_dict(fitted.state_dict())
    assert "chol_inv" not in fitted.state_dict()  # derived, never saved
    torch.testing.assert_close(fresh.chol_inv @ fresh.chol, torch.eye(5), atol=1e-5, rtol=0)
    x = torch.randn(4, 5)
    torch.testing.assert_close(fresh.log_prob(x), fitted.log_prob(x))


def test_spinning_changes_speed_not_scores(engines, real_crops):
    onnx_det, _ = engines
    engine = onnx_det.engine
    spinning = engine(torch.from_numpy(real_crops), False)[0]
    engine.set_spinning(False)
    try:
        np.testing.assert_array_equal(engine(torch.from_numpy(real_crops), False)[0], spinning)
    finally:
        engine.set_spinning(True)


def test_auto_falls_back_to_torch_when_the_graph_fails_or_disagrees(monkeypatch, default_detector):
    """An exporter that raises, or a graph off by more than TOLERANCE: auto warns and uses torch; onnx refuses."""
    import muflow_cli.engine as engine

    args = (default_detector.backbone, default_detector.model, torch.device("cpu"), 256)
    monkeypatch.setattr(engine, "max_relative_gap", lambda a, b: 10 * TOLERANCE)
    with pytest.warns(UserWarning, match="differ from torch"):
        assert isinstance(create_engine("auto", *args), TorchEngine)
    with pytest.raises(EngineError, match="differ from torch"):
        create_engine("onnx", *args)

    def broken_export(*a, **k):
        raise RuntimeError("exporter gone")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.warns(UserWarning, match="exporter gone"):
        assert isinstance(create_engine("auto", *args), TorchEngine)
    with pytest.raises(EngineError, match="exporter gone"):
        create_engine("onnx", *args)
