"""The ONNX Runtime scoring graph gives torch's scores on real faces, at any batch size; its disk cache."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.model.engines.base import EngineError
from muflow_cli.model.engines.choose import build_engine
from muflow_cli.model.engines.graph_cache import GraphCache
from muflow_cli.model.engines.onnx_engine import OPSET, OnnxEngine
from muflow_cli.model.engines.probe import PROBE_KIND, TOLERANCE, max_relative_gap
from muflow_cli.model.engines.torch_engine import TorchEngine
from muflow_cli.nn.flow import ChannelShuffle
from muflow_cli.nn.target import GaussianTarget


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


def _engine_for(name, backbone, model, device, crop_size, cache_key=None, backbone_key=None):
    """The engine the chooser picks for a torch model already built (a cached graph is checked against it)."""
    return build_engine(name, lambda: (backbone, model), device, crop_size, cache_key, backbone_key, torch_built=True)


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
        _engine_for("onnx", default_detector.backbone, default_detector.model, torch.device("meta"), 256)


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
    spinning = engine(torch.from_numpy(real_crops), None, False)[0]
    engine.set_spinning(False)
    try:
        np.testing.assert_array_equal(engine(torch.from_numpy(real_crops), None, False)[0], spinning)
    finally:
        engine.set_spinning(True)


def test_auto_falls_back_to_torch_when_the_graph_fails_or_disagrees(monkeypatch, default_detector):
    """An exporter that raises, or a graph off by more than TOLERANCE: auto warns and uses torch; onnx refuses."""
    import muflow_cli.model.engines.choose as engine

    args = (default_detector.backbone, default_detector.model, torch.device("cpu"), 256)
    monkeypatch.setattr(engine, "max_relative_gap", lambda a, b: 10 * TOLERANCE)
    with pytest.warns(UserWarning, match="differ from torch"):
        assert isinstance(_engine_for("auto", *args), TorchEngine)
    with pytest.raises(EngineError, match="differ from torch"):
        _engine_for("onnx", *args)

    def broken_export(*a, **k):
        raise RuntimeError("exporter gone")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.warns(UserWarning, match="exporter gone"):
        assert isinstance(_engine_for("auto", *args), TorchEngine)
    with pytest.raises(EngineError, match="exporter gone"):
        _engine_for("onnx", *args)


# -- the on-disk graph cache ---------------------------------------------------------


@pytest.fixture(scope="module")
def exported_graph(default_detector) -> bytes:
    """The default model's graph, exported in memory (no cache involved)."""
    return OnnxEngine.export(default_detector.backbone, default_detector.model, default_detector.crop_size).graph


def _build(det, cache_key):
    """The ONNX engine built with the torch model at hand (a cached graph is checked against it)."""
    return _engine_for("onnx", det.backbone, det.model, torch.device("cpu"), det.crop_size, cache_key=cache_key,
                         backbone_key=det.backbone_sha256)


def _entry(det) -> tuple[GraphCache, dict, Path, Path]:
    cache = GraphCache.default()
    fields = GraphCache.fields(det.tensors_sha256, det.crop_size, OPSET, det.backbone_sha256)
    return (cache, fields, *cache.paths(fields))


def test_graph_cache_second_build_loads_and_scores_like_the_in_memory_export(default_detector, exported_graph, real_crops, tmp_path, monkeypatch):
    monkeypatch.setenv("MUFLOW_CACHE_DIR", str(tmp_path))
    bundled = DeepfakeModel.load()  # the session's default_detector may have been saved elsewhere (a new sha) by then
    key = bundled.tensors_sha256
    first = _build(default_detector, key)
    assert first.source == "export"
    _, _, graph_file, sidecar = _entry(bundled)
    assert graph_file.read_bytes() == first.graph
    assert json.loads(sidecar.read_text())["sha256"] == hashlib.sha256(first.graph).hexdigest()
    second = _build(default_detector, key)
    assert second.source == "cache" and second.graph == first.graph
    crops = torch.from_numpy(real_crops)
    in_memory = OnnxEngine(exported_graph)
    got, want = second(crops, None, True), in_memory(crops, None, True)
    np.testing.assert_array_equal(got[0], want[0])
    for a, b in zip(got[1], want[1]):
        np.testing.assert_array_equal(a, b)
    # DeepfakeModel.engine passes the bundle's tensor hash as the key: it finds the same entry.
    assert bundled.use_engine("onnx").engine.source == "cache"


def test_graph_cache_corrupt_entry_is_deleted_and_rebuilt(default_detector, exported_graph, tmp_path, monkeypatch):
    monkeypatch.setenv("MUFLOW_CACHE_DIR", str(tmp_path))
    cache, fields, graph_file, sidecar = _entry(default_detector)
    assert cache.store(fields, exported_graph)
    data = bytearray(graph_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights: ORT would load it and score wrongly
    graph_file.write_bytes(bytes(data))
    rebuilt = _build(default_detector, fields["model_sha256"])
    assert rebuilt.source == "export"
    assert graph_file.read_bytes() == rebuilt.graph  # the entry was written anew, whole
    assert json.loads(sidecar.read_text())["sha256"] == hashlib.sha256(rebuilt.graph).hexdigest()
    assert _build(default_detector, fields["model_sha256"]).source == "cache"


def test_graph_cache_entry_that_fails_the_probe_is_replaced(default_detector, exported_graph, tmp_path, monkeypatch):
    """An intact entry whose scores disagree with torch (say, stored for other backbone weights) is never used."""
    import muflow_cli.model.engines.choose as engine

    monkeypatch.setenv("MUFLOW_CACHE_DIR", str(tmp_path))
    cache, fields, graph_file, _ = _entry(default_detector)
    assert cache.store(fields, exported_graph)
    real_gap, calls = engine.max_relative_gap, []

    def gap_failing_once(a, b):
        calls.append(1)
        return 10 * TOLERANCE if len(calls) == 1 else real_gap(a, b)

    monkeypatch.setattr(engine, "max_relative_gap", gap_failing_once)
    rebuilt = _build(default_detector, fields["model_sha256"])
    assert rebuilt.source == "export" and len(calls) == 2 and graph_file.is_file()


def test_graph_cache_checks_every_entry(tmp_path):
    """Unit test of the cache alone: truncated, corrupt, stale, half-written entries are deleted, never returned."""
    cache = GraphCache(tmp_path)
    fields = {"format": 2, "model_sha256": "ab" * 32, "backbone_sha256": None, "crop_size": 256, "opset": OPSET,
              "torch": "t", "onnxruntime": "o", "muflow": "m"}
    graph_file, sidecar = cache.paths(fields)
    assert cache.load_entry(fields) is None  # nothing there
    payload = bytes(range(256)) * 64

    def damaged(edit) -> bool:
        assert cache.store(fields, payload) and cache.load_entry(fields)[0] == payload
        edit()
        gone = cache.load_entry(fields) is None and not graph_file.exists() and not sidecar.exists()
        return gone

    assert damaged(lambda: graph_file.write_bytes(payload[:-100]))  # truncated
    assert damaged(lambda: graph_file.write_bytes(payload[:-1] + b"\x00"))  # same size, other bytes
    assert damaged(lambda: sidecar.write_text(sidecar.read_text().replace('"torch": "t"', '"torch": "old"')))  # stale fields
    assert damaged(lambda: sidecar.write_text("{not json"))
    assert damaged(lambda: sidecar.unlink())  # a graph without its sidecar (a writer killed in between)
    assert damaged(lambda: graph_file.unlink())
    probe = {"kind": "k", "crops_sha256": "cd" * 32, "layers": [[0.5, 1.25]]}
    assert cache.store(fields, payload, probe) and cache.load_entry(fields) == (payload, probe)
    sidecar.write_text(sidecar.read_text().replace("1.25", "1.5"))  # the stored probe scores, edited
    assert cache.load_entry(fields) is None and not graph_file.exists() and not sidecar.exists()
    assert not list(tmp_path.rglob("*.part"))  # no temporary files left behind
    readonly = GraphCache(tmp_path / "file")
    (tmp_path / "file").write_text("not a folder")
    assert readonly.store(fields, payload) is False  # an unwritable cache costs time, never an error


def test_graph_cache_switch(monkeypatch, tmp_path):
    monkeypatch.setenv("MUFLOW_CACHE_DIR", str(tmp_path / "c"))
    assert GraphCache.default().dir == tmp_path / "c" / "graphs"
    for off in ("0", "false", "off"):
        monkeypatch.setenv("MUFLOW_GRAPH_CACHE", off)
        assert GraphCache.default() is None


# -- the warm start: a cached graph scores without torch --------------------------------


def _probe_edited(sidecar: Path, edit, rehash: bool = True) -> None:
    """Apply ``edit`` to the sidecar's stored probe; ``rehash``: keep its own sha256 consistent (a sidecar
    that is intact, yet holds wrong reference scores), else leave the old digest (a damaged sidecar)."""
    from muflow_cli.model.engines.graph_cache import _meta_digest

    meta = json.loads(sidecar.read_text())
    edit(meta["probe"])
    if rehash:
        meta["meta_sha256"] = _meta_digest(meta)
    sidecar.write_text(json.dumps(meta))


def test_a_cached_graph_loads_without_building_torch_parts_and_scores_alike(real_crops, tmp_path, monkeypatch):
    monkeypatch.setenv("MUFLOW_CACHE_DIR", str(tmp_path))
    cold = DeepfakeModel.load()
    assert cold._parts.built  # nothing cached: built at load, as before the cache
    assert cold.engine.source == "export"
    _, _, _, sidecar = _entry(cold)
    probe = json.loads(sidecar.read_text())["probe"]
    assert probe["kind"] == PROBE_KIND and len(probe["layers"]) == 3
    warm = DeepfakeModel.load()
    assert not warm._parts.built and warm.backbone_sha256 == cold.backbone_sha256
    assert warm.engine.source == "cache" and not warm._parts.built  # checked against the stored probe scores
    np.testing.assert_array_equal(warm.score(real_crops)["layers"], cold.score(real_crops)["layers"])
    assert warm.model is not None and warm._parts.built  # the torch side is still there on demand
    torch_warm = DeepfakeModel.load().use_engine("torch")
    assert isinstance(torch_warm.engine, TorchEngine)
    assert max_relative_gap(torch_warm.score(real_crops)["layers"], warm.score(real_crops)["layers"]) <= TOLERANCE


def test_a_cached_graph_with_wrong_stored_probe_scores_is_exported_again(tmp_path, monkeypatch):
    """An intact sidecar whose reference scores disagree with the graph: never trusted, rebuilt with torch."""
    monkeypatch.setenv("MUFLOW_CACHE_DIR", str(tmp_path))
    assert DeepfakeModel.load().engine.source == "export"
    _, _, graph_file, sidecar = _entry(DeepfakeModel.load())
    good = json.loads(sidecar.read_text())["probe"]["layers"]

    def shift(probe):
        probe["layers"][1][0] += 0.01

    _probe_edited(sidecar, shift)
    det = DeepfakeModel.load()
    assert not det._parts.built  # the entry is intact: its check comes with the engine
    assert det.engine.source == "export" and det._parts.built
    assert json.loads(sidecar.read_text())["probe"]["layers"] == good and graph_file.is_file()  # written anew
    assert DeepfakeModel.load().engine.source == "cache"


def test_a_damaged_or_probe_less_sidecar_means_torch_at_load(tmp_path, monkeypatch, default_detector):
    monkeypatch.setenv("MUFLOW_CACHE_DIR", str(tmp_path))
    assert DeepfakeModel.load().engine.source == "export"
    cache, fields, graph_file, sidecar = _entry(DeepfakeModel.load())

    def shift(probe):
        probe["layers"][0][0] += 1.0

    _probe_edited(sidecar, shift, rehash=False)  # a sidecar that no longer matches its own sha256
    det = DeepfakeModel.load()
    assert det._parts.built and not sidecar.exists() and not graph_file.exists()  # deleted at once
    assert det.engine.source == "export" and sidecar.exists()
    for edit in (lambda p: p.update(crops_sha256="0" * 64), lambda p: p.update(kind="other"), lambda p: p.pop("layers")):
        _probe_edited(sidecar, edit)  # intact, but for other probe crops, or without scores
        det = DeepfakeModel.load()
        assert det._parts.built and not sidecar.exists()
        assert det.engine.source == "export"
    graph = graph_file.read_bytes()
    assert cache.store(fields, graph)  # an entry without any probe (as a format-1 entry had)
    assert DeepfakeModel.load()._parts.built
    # With the torch model at hand, such an entry is checked against it, as before.
    assert cache.store(fields, graph)
    assert _build(default_detector, fields["model_sha256"]).source == "cache"


def test_a_warm_scan_does_not_import_torch(tmp_path, t1_path):
    """The whole `muflow scan` command in a fresh process, after another filled the cache: no torch, no timm,
    and the same table as the process that exported the graph."""
    import os
    import subprocess
    import sys

    import muflow_cli

    code = (
        "import sys\n"
        "from muflow_cli.cli import app\n"
        "try:\n"
        "    app(sys.argv[1:], standalone_mode=False)\n"
        "finally:\n"
        "    print('torch' in sys.modules, 'timm' in sys.modules, 'normflows' in sys.modules)\n"
    )
    env = {**os.environ, "MUFLOW_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(Path(muflow_cli.__file__).parent.parent), os.environ.get("PYTHONPATH", "")])}
    env.pop("MUFLOW_GRAPH_CACHE", None)
    imported = []
    for name in ("cold", "warm"):
        proc = subprocess.run([sys.executable, "-c", code, "scan", str(t1_path), "--csv", str(tmp_path / f"{name}.csv"), "-q"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr
        imported.append(proc.stdout.split())
    assert imported == [["True", "True", "True"], ["False", "False", "False"]]
    assert (tmp_path / "warm.csv").read_bytes() == (tmp_path / "cold.csv").read_bytes()
    assert len((tmp_path / "warm.csv").read_text().splitlines()) == 7  # the header and six faces
