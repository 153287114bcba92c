"""Shared fixtures: real images shipped with the dependencies, and small data made here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def graph_cache_dir(tmp_path_factory) -> Path:
    """Every test, and every `muflow` subprocess a test starts, caches ONNX graphs in a fresh folder:
    never the user's cache, and never what an earlier run left."""
    path = tmp_path_factory.mktemp("muflow-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MUFLOW_CACHE_DIR", str(path))
        mp.delenv("MUFLOW_GRAPH_CACHE", raising=False)
        yield path


def insightface_image(name: str) -> Path:
    spec = importlib.util.find_spec("insightface")
    assert spec and spec.origin
    return Path(spec.origin).parent / "data" / "images" / name


@pytest.fixture(scope="session")
def t1_path() -> Path:
    """insightface's group photo: 6 faces."""
    return insightface_image("t1.jpg")


@pytest.fixture(scope="session")
def t1_rgb(t1_path) -> np.ndarray:
    return cv2.imread(str(t1_path))[..., ::-1].copy()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def face_detector():
    from muflow_cli.faces.detect import FaceDetector

    return FaceDetector("scrfd")


@pytest.fixture(scope="session")
def default_detector():
    """The bundled demonstration model (a DeepfakeModel)."""
    from muflow_cli.model.deepfake_model import DeepfakeModel

    return DeepfakeModel.load()


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.fixture(scope="session")
def real_folder(tmp_path_factory, t1_rgb, astronaut) -> Path:
    """A small folder of real photos made from t1.jpg and the astronaut: crops, flips, rescales.

    Five variants of the 6-face group photo and six of the portrait: 36 faces in seconds.
    """
    root = tmp_path_factory.mktemp("reals")
    rng = np.random.default_rng(0)
    h, w = t1_rgb.shape[:2]
    for i in range(5):
        x0, y0 = rng.integers(0, 40, size=2)
        img = t1_rgb[y0 : h - rng.integers(0, 40), x0 : w - rng.integers(0, 40)]
        if i % 2:
            img = img[:, ::-1]
        s = 0.8 + 0.1 * i
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        write_rgb(root / "group" / f"t1_{i}.jpg", img)
    for i in range(6):
        img = astronaut if i % 2 == 0 else astronaut[:, ::-1]
        s = 0.7 + 0.15 * i
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        write_rgb(root / "portrait" / f"astronaut_{i}.png", img)
    return root


# real_folder's files are variants of two photos: `auto` grouping would (rightly) see two sequences.
FAST_FIT = ["--crop-size", "128", "--epochs", "2", "--flow-steps", "2", "--averages", "16", "--batch-size", "8", "--group-by", "file", "-q"]


def fast_fit_config(**changes):
    """The Python API's twin of FAST_FIT: a model in seconds (128-px crops, 2 flow steps, 2 epochs)."""
    from muflow_cli.nn.config import FlowConfig
    from muflow_cli.pipelines.fit import FitConfig

    return FitConfig(**{"crop_size": 128, "epochs": 2, "flow": FlowConfig(steps=2), "averages": 16, "batch_size": 8, "group_by": "file", **changes})


@pytest.fixture(scope="session")
def small_model(tmp_path_factory, real_folder):
    """A model fitted here in seconds on ``real_folder`` through the Python API; the path of its bundle."""
    from muflow_cli.pipelines.fit import fit

    model, _ = fit([real_folder], fast_fit_config(), progress=False)
    return model.save(tmp_path_factory.mktemp("models") / "small.muflow")
