"""The CUDA path end to end: `muflow fit` and `muflow scan` on a GPU, scores as on the CPU.

Marked ``cuda``; skipped where torch sees no CUDA device (this project's CI). Run on a GPU machine:
``pytest -m cuda tests/test_cuda.py``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import FAST_FIT
from typer.testing import CliRunner

from muflow_cli.cli import app
from muflow_cli.model.device import cuda_available

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not cuda_available(), reason="no CUDA device: the CUDA path is not run here")]
runner = CliRunner()


def test_fit_and_scan_on_cuda_score_like_the_cpu(tmp_path, real_folder, t1_path):
    model = tmp_path / "gpu.muflow"
    res = runner.invoke(app, ["fit", str(real_folder), "-o", str(model), *FAST_FIT, "--device", "cuda"])
    assert res.exit_code == 0, res.output
    tables = {}
    for device in ("cuda", "cpu"):
        out = tmp_path / f"{device}.csv"
        res = runner.invoke(app, ["scan", str(t1_path), "--model", str(model), "--device", device, "--csv", str(out), "-q"])
        assert res.exit_code == 0, res.output
        tables[device] = pd.read_csv(out)
    assert len(tables["cuda"]) == 6
    np.testing.assert_allclose(tables["cuda"]["score"], tables["cpu"]["score"], rtol=1e-3)  # TF32/cuDNN vs CPU kernels
    assert (tables["cuda"]["verdict"] == tables["cpu"]["verdict"]).all()
