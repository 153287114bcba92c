"""Fitting through the Python API: the split never cuts a group, settings are checked before any work."""

import numpy as np
import pytest
import torch
from conftest import fast_fit_config

from muflow_cli.errors import ConfigError
from muflow_cli.faces.options import FaceFinding
from muflow_cli.pipelines.fit import FitConfig, FitError, fit, split_by_group


def test_the_split_keeps_groups_whole_and_holds_about_the_fraction():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), rng.integers(1, 6, size=40))
    cal = split_by_group(groups, 0.2, np.random.default_rng(1))
    for g in np.unique(groups):
        assert len(set(cal[groups == g])) == 1  # a group is all calibration or all fit
    assert 0.1 <= cal.mean() <= 0.3
    again = split_by_group(groups, 0.2, np.random.default_rng(1))
    assert np.array_equal(cal, again)  # seeded


def test_the_split_of_single_faces_hits_the_fraction():
    cal = split_by_group(np.arange(100), 0.2, np.random.default_rng(0))
    assert cal.sum() == 20


@pytest.mark.parametrize("change, message", [
    ({"group_by": "person"}, "group_by"), ({"crop_size": 100}, "multiple of 16"),
    ({"calibration_fraction": 0.9}, "calibration fraction"), ({"faces": FaceFinding(detector="mtcnn")}, "face detector"),
    ({"tail": "lower"}, "tail"), ({"cache": "cloud"}, "cache"),
])
def test_bad_settings_are_refused_before_any_face_is_collected(tmp_path, change, message):
    missing = tmp_path / "does-not-exist"  # would fail later, when the faces are collected
    with pytest.raises(ConfigError, match=message):
        fit([missing], FitConfig(**change), progress=False)


def test_a_fit_through_the_api_gives_a_calibrated_model(real_folder):
    model, report = fit([real_folder], fast_fit_config(), progress=False)
    assert report.faces == 36 and report.fit_faces + report.calibration_faces == 36
    assert len(model.calibration) == report.calibration_faces == model.card.calibration.faces
    assert model.card.training.faces == 36 and model.card.crop.size == 128
    assert report.warnings and "smallest p-value" in report.warnings[0]  # 7 calibration faces cannot flag at 5 %


def test_too_few_faces_is_a_fit_error(t1_path):
    with pytest.raises(FitError, match="found 6 usable faces"):
        fit([t1_path], fast_fit_config(), progress=False)


def test_a_split_never_holds_out_everything():
    cal = split_by_group(np.array([0] * 30 + [1] * 6), 0.2, np.random.default_rng(0))
    assert cal.sum() == 6  # the 30-face group would overshoot: the smaller group is held out


def test_one_group_cannot_be_split_and_says_why(real_folder):
    with pytest.raises(FitError, match="one group"):
        fit([real_folder / "group"], fast_fit_config(group_by="folder"), progress=False)


def test_bf16_training_scores_in_float32_close_to_fp32_and_is_recorded(real_folder):
    """--precision bf16 autocasts the flows in training only: the saved model is float32, its scores stay
    close to an fp32 fit's with the same seed (benchmarks/fit_precision.py measures how close), and the
    card says how it was trained."""
    fp32, _ = fit([real_folder], fast_fit_config(precision="fp32"), progress=False)
    bf16, report = fit([real_folder], fast_fit_config(precision="bf16"), progress=False)
    assert report.precision == "bf16" and bf16.card.training.precision == "bf16" and fp32.card.training.precision == "fp32"
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters()) and not bf16.model.bf16_flows
    np.testing.assert_allclose(bf16.calibration.scores, fp32.calibration.scores, rtol=0.02)
    again, _ = fit([real_folder], fast_fit_config(precision="bf16"), progress=False)
    np.testing.assert_array_equal(again.calibration.scores, bf16.calibration.scores)  # still reproducible


def test_auto_precision_is_bf16_only_where_the_hardware_has_it():
    from muflow_cli.model.device import _cpu_has_bf16, training_precision

    assert training_precision("fp32", "cpu") == "fp32" and training_precision("bf16", "cpu") == "bf16"
    assert training_precision("auto", "cpu") == ("bf16" if _cpu_has_bf16() else "fp32")
    with pytest.raises(ConfigError, match="precision"):
        FitConfig(precision="fp16").check()
