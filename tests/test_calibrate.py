"""muflow calibrate: new calibration scores from the user's reals, the same scores for every face."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from muflow_cli.choices import GROUP_BY, GROUP_UNITS
from muflow_cli.cli import app
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.calibrate import CalibrateConfig, CalibrateError, calibrate, heldout_fpr
from muflow_cli.pipelines.scan import ScanConfig, scan

runner = CliRunner()


@pytest.mark.parametrize("tail", ["two", "upper"])
def test_the_heldout_check_keeps_the_promised_rate_on_exchangeable_scores(tail):
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(200), 3)
    scores = np.repeat(rng.normal(size=200), 3) + rng.normal(0, 0.1, size=600)  # faces of a group alike
    rate, counted = heldout_fpr(scores, groups, 0.1, tail, folds=5)
    assert counted == 600 and rate <= 0.1 + 3 * np.sqrt(0.1 * 0.9 / 200)  # 200 independent groups
    assert heldout_fpr(scores, groups, 0.1, tail, folds=500) is None  # fewer groups than folds


FORMAT_1 = Path(__file__).parent / "data" / "format1.muflow"  # muflow 0.1.0's bundled model: 64 calibration faces


def test_calibrating_a_mismatched_model_on_one_source_stops_it_flagging_that_source(tmp_path, real_folder, t1_path):
    """Before: 0.1.0's demo model flags 4 of t1's 6 real faces and warns; calibrated on other photos of the same
    group (files cut, flipped and resized from t1 and the astronaut), it flags none, with the same scores."""
    old = DeepfakeModel.load(FORMAT_1)
    before = scan([t1_path], old, ScanConfig(), progress=False)
    assert (before["verdict"] == "fake").sum() >= 3
    assert old.calibration.domain_check(before["p_value"].to_numpy(float), 0.05).mismatch
    model, report = calibrate([real_folder], old, CalibrateConfig(group_by="folder"), progress=False)
    assert report.faces == len(model.calibration) == 36 and report.previous_faces == 64 and report.groups == 2
    assert any("the faces come from 2 folders:" in w for w in report.warnings)  # each unit named in words
    assert set(GROUP_UNITS) == set(GROUP_BY) and "autos" not in " ".join(GROUP_UNITS.values())
    assert model.card.calibration.source == "calibrate" and model.card.calibration.faces == 36
    assert model.card.training == old.card.training  # the fit is untouched
    after = scan([t1_path], model, ScanConfig(), progress=False)
    np.testing.assert_array_equal(after["score"].to_numpy(float), before["score"].to_numpy(float))
    assert (after["verdict"] == "fake").sum() == 0
    assert not model.calibration.domain_check(after["p_value"].to_numpy(float), 0.05).mismatch
    saved = DeepfakeModel.load(model.save(tmp_path / "cal.muflow"))
    np.testing.assert_array_equal(saved.calibration.scores, model.calibration.scores)


def test_too_few_reals_is_a_clear_error(tmp_path, t1_path, small_model):
    with pytest.raises(CalibrateError, match="found 6 usable real faces"):
        calibrate([t1_path], DeepfakeModel.load(small_model), progress=False)


def test_calibrate_command_writes_a_model_that_scans_with_the_same_scores(tmp_path, real_folder, small_model, t1_path):
    out = tmp_path / "cal.muflow"
    res = runner.invoke(app, ["calibrate", str(real_folder), "-m", str(small_model), "-o", str(out), "--group-by", "folder"])
    assert res.exit_code == 0, res.output
    assert "36" in res.output and "held-out false-positive rate" in res.output
    card = json.loads((out / "card.json").read_text())
    assert card["calibration"]["source"] == "calibrate" and card["calibration"]["faces"] == 36
    tables = []
    for m in (small_model, out):
        csv = tmp_path / f"{m.name}.csv"
        assert runner.invoke(app, ["scan", str(t1_path), "-m", str(m), "--csv", str(csv), "-q"]).exit_code == 0
        tables.append(pd.read_csv(csv))
    pd.testing.assert_series_equal(tables[0]["score"], tables[1]["score"])
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(t1_path, photos / "keep.jpg")
    res = runner.invoke(app, ["calibrate", str(real_folder), "-m", str(small_model), "-o", str(photos)])
    assert res.exit_code == 2 and "not a muflow model" in res.output and (photos / "keep.jpg").exists()
