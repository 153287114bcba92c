import shutil

import numpy as np
import pytest
import torch

from muflow_cli.weights import WeightsError, manifest, sha256_file, verify_all, weight_path


def test_every_bundled_file_matches_its_manifest_hash():
    results = verify_all()
    assert {e.name for e, _, _ in results} == {"scrfd", "yunet", "mobilenetv2_100"}
    assert all(ok for _, ok, _ in results), results


def test_manifest_records_licence_and_provenance():
    for entry in manifest().values():
        assert entry.licence and entry.source["package"] and entry.source["version"] and entry.source["path"]
        assert len(entry.sha256) == 64


def test_tampered_file_is_refused(tmp_path, monkeypatch):
    import muflow_cli.weights as w

    copy = tmp_path / "weights"
    shutil.copytree(w.weights_dir(), copy, ignore=shutil.ignore_patterns("*.muflow", "*.py"))
    data = bytearray((copy / "face_detection_yunet_2023mar_int8bq.onnx").read_bytes())
    data[1000] ^= 0xFF
    (copy / "face_detection_yunet_2023mar_int8bq.onnx").write_bytes(bytes(data))
    monkeypatch.setattr(w, "weights_dir", lambda: copy)
    w.manifest.cache_clear()
    try:
        with pytest.raises(WeightsError, match="sha256"):
            weight_path("yunet")
        assert sha256_file(copy / "scrfd_2.5g_kps.onnx") == manifest()["scrfd"].sha256
    finally:
        w.manifest.cache_clear()


def _classify(model, rgb: np.ndarray) -> torch.Tensor:
    import cv2

    h, w = rgb.shape[:2]
    s = 256 / min(h, w)
    img = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    y0, x0 = (img.shape[0] - 224) // 2, (img.shape[1] - 224) // 2
    img = img[y0 : y0 + 224, x0 : x0 + 224].astype(np.float32) / 255.0
    x = (img - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    with torch.inference_mode():
        return model(torch.from_numpy(x).permute(2, 0, 1)[None].float()).softmax(1)[0]


def test_backbone_weights_classify_imagenet_images():
    """The key-mapped MobileNetV2 weights are the real ImageNet ones: a cat is a cat, espresso is espresso."""
    import timm
    from safetensors.torch import load_file
    from skimage import data

    model = timm.create_model("mobilenetv2_100", pretrained=False)
    model.load_state_dict(load_file(str(weight_path("mobilenetv2_100"))))
    model.eval()
    cat = _classify(model, data.chelsea())
    assert int(cat.argmax()) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat
    assert float(cat[281:286].sum()) > 0.6
    coffee = _classify(model, data.coffee())
    assert int(coffee.argmax()) == 967 and float(coffee[967]) > 0.5  # espresso


def test_the_package_never_unpickles():
    """No run-time code path can unpickle a file: only the one-off scripts/ converters load .pth."""
    from pathlib import Path

    import muflow_cli

    pkg = Path(muflow_cli.__file__).parent
    for path in pkg.rglob("*.py"):
        text = path.read_text()
        for needle in ("torch.load", "pickle.load", "pickle.loads", "import pickle", "joblib.load"):
            assert needle not in text, f"{path.name} uses {needle}"
