"""SCRFD's patched graph (faces/scrfd_graph.py): made once with onnx, then read from the user cache."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from muflow_cli.faces import scrfd_graph
from muflow_cli.faces.detect import FaceDetector
from muflow_cli.weights import manifest, weight_path

SOURCE_SHA256 = manifest()["scrfd"].sha256


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x.box, y.box) and x.det_score == y.det_score
                                    and np.array_equal(x.landmarks, y.landmarks) for x, y in zip(a, b))


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MUFLOW_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MUFLOW_GRAPH_CACHE", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def patched() -> bytes:
    return scrfd_graph.patch_any_size(weight_path("scrfd").read_bytes())


def test_the_cached_graph_gives_exactly_the_in_memory_patchs_faces(cache, monkeypatch, t1_rgb, patched):
    monkeypatch.setenv("MUFLOW_GRAPH_CACHE", "0")
    in_memory = FaceDetector("scrfd").detect(t1_rgb)
    assert not (cache / "detectors").exists()  # the cache switched off writes nothing
    monkeypatch.delenv("MUFLOW_GRAPH_CACHE")
    first = FaceDetector("scrfd").detect(t1_rgb)  # patches and writes the cache
    graph_path, meta_path = scrfd_graph.cache_paths(SOURCE_SHA256)
    assert graph_path.read_bytes() == patched
    meta = json.loads(meta_path.read_text())
    assert meta["source_sha256"] == SOURCE_SHA256 and meta["bytes"] == len(patched) and len(meta["sha256"]) == 64

    def no_patch(source):
        raise AssertionError("patched again although the cache holds the graph")

    monkeypatch.setattr(scrfd_graph, "patch_any_size", no_patch)
    cached = FaceDetector("scrfd").detect(t1_rgb)
    assert len(in_memory) == 6 and _same(in_memory, first) and _same(in_memory, cached)


@pytest.mark.parametrize("damage", ["truncate", "flip", "sidecar", "no sidecar", "no graph"])
def test_a_damaged_cache_entry_is_found_and_made_again(cache, patched, damage):
    path = weight_path("scrfd")
    assert scrfd_graph.any_size_graph(path, SOURCE_SHA256) == patched
    graph_path, meta_path = scrfd_graph.cache_paths(SOURCE_SHA256)
    if damage == "truncate":
        graph_path.write_bytes(patched[: len(patched) // 2])
    elif damage == "flip":
        data = bytearray(patched)
        data[len(data) // 2] ^= 0xFF
        graph_path.write_bytes(bytes(data))
    elif damage == "sidecar":
        meta_path.write_text("{not json")
    elif damage == "no sidecar":
        meta_path.unlink()
    else:
        graph_path.unlink()
    assert scrfd_graph.cached(SOURCE_SHA256) is None
    assert scrfd_graph.any_size_graph(path, SOURCE_SHA256) == patched
    assert scrfd_graph.cached(SOURCE_SHA256) == patched  # rewritten whole


def test_a_cache_folder_that_cannot_be_written_patches_in_memory(monkeypatch, tmp_path, patched):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("MUFLOW_CACHE_DIR", str(blocked))
    assert scrfd_graph.any_size_graph(weight_path("scrfd"), SOURCE_SHA256) == patched
    assert blocked.read_text() == "not a folder"


def test_a_warm_detector_imports_no_onnx(cache):
    scrfd_graph.any_size_graph(weight_path("scrfd"), SOURCE_SHA256)  # fills the cache
    code = ("import sys, numpy as np\nfrom muflow_cli.faces.detect import FaceDetector\n"
            "FaceDetector('scrfd').detect(np.zeros((100, 120, 3), np.uint8))\n"
            "print(sorted(m for m in ('onnx', 'insightface', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
