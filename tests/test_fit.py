"""Fitting through the Python API: the split never cuts a group, settings are checked before any work."""

import numpy as np
import pytest
import torch
from conftest import fast_fit_config

from muflow_cli.errors import ConfigError
from muflow_cli.faces.options import FaceFinding
from muflow_cli.pipelines.fit import FitConfig, FitError, fit
from muflow_cli.stats.splits import whole_groups


def test_the_split_keeps_groups_whole_and_holds_about_the_fraction():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), rng.integers(1, 6, size=40))
    cal = whole_groups(groups, 0.2, np.random.default_rng(1))
    for g in np.unique(groups):
        assert len(set(cal[groups == g])) == 1  # a group is all calibration or all fit
    assert 0.1 <= cal.mean() <= 0.3
    again = whole_groups(groups, 0.2, np.random.default_rng(1))
    assert np.array_equal(cal, again)  # seeded


def test_the_split_of_single_faces_hits_the_fraction():
    cal = whole_groups(np.arange(100), 0.2, np.random.default_rng(0))
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
    cal = whole_groups(np.array([0] * 30 + [1] * 6), 0.2, np.random.default_rng(0))
    assert cal.sum() == 6  # the 30-face group would overshoot: the smaller group is held out


def test_one_long_sequence_is_fitted_on_its_start_and_calibrated_on_its_end(real_folder):
    """A single group (here: the 30 faces of t1's variants, by folder) is no longer refused: with fewer than
    20 groups the later part of each is held out, and the fit says that calibration speaks for one source."""
    model, report = fit([real_folder / "group"], fast_fit_config(group_by="folder"), progress=False)
    assert report.split["kind"] == "tails" and report.split["groups"] == 1
    assert model.card.training.split == "tails" and model.card.training.gap_faces == report.split["gap_faces"] == 12
    assert report.calibration_faces == 6 and report.fit_faces == 12  # 5 files of 6: 1 held out, 2 left out, 2 fitted
    assert any("1 group " in w for w in report.warnings)


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


def test_fit_probes_the_tail_on_its_own_held_out_faces_and_stores_it(real_folder):
    """--tail auto (the default): smooth copies of the calibration faces decide, and the card keeps both."""
    from muflow_cli.pipelines.fit import collect_faces, fit_crops
    from muflow_cli.stats.calibration import UPPER_WHEN

    config = fast_fit_config(calibration_fraction=0.5)
    crops, files, _, _, _ = collect_faces([real_folder], config, progress=False)
    crops = np.concatenate([crops, crops[:, :, ::-1]])  # and their mirror images: >= 20 faces to calibrate on
    groups = np.arange(len(crops))
    model, report = fit_crops(crops, groups, config, progress=False)
    assert report.calibration_faces >= 20 and 0.0 <= report.tail_probe_auc <= 1.0
    assert report.tail == ("upper" if report.tail_probe_auc >= UPPER_WHEN else "two")
    assert model.calibration.tail == model.card.calibration.tail == report.tail
    assert model.card.calibration.tail_probe_auc == pytest.approx(report.tail_probe_auc, abs=1e-4)
    model, report = fit_crops(crops, groups, fast_fit_config(calibration_fraction=0.5, tail="two"), progress=False)
    assert report.tail == model.calibration.tail == "two" and np.isnan(report.tail_probe_auc)
    assert model.card.calibration.tail_probe_auc is None


def saved(model, path) -> tuple[dict, dict]:
    """A model's bundle as written: its card (the date aside) and every tensor (flows, targets, calibration, samples)."""
    import json

    from safetensors.torch import load_file

    model.save(path)
    card = json.loads((path / "card.json").read_text())
    card.pop("tensors")
    card["training"].pop("date")
    return card, load_file(str(path / "model.safetensors"))


def test_crops_on_disk_give_the_very_model_crops_in_ram_give(real_folder, tmp_path, monkeypatch):
    """fit() writes the crops to disk as it collects them and every stage reads them a batch at a time
    (nn/row_store.py): the model is the one an in-RAM fit of the same crops gives, bit for bit (flows, Gaussian
    targets, calibration scores, strata), and no stage reads all the fit crops at once or asks for them as an array."""
    from muflow_cli.nn.row_store import PackedMasks, RowStore
    from muflow_cli.pipelines.fit import fit_crops, gather_faces
    from muflow_cli.pipelines.fit_stages import Rows

    config = fast_fit_config(augment=1)
    in_ram = gather_faces([real_folder], config, False)
    on_disk = gather_faces([real_folder], config, False, tmp_path)
    assert isinstance(on_disk.crops, RowStore) and isinstance(on_disk.valid, PackedMasks)
    assert on_disk.crops.path == tmp_path / "crops.u8" and on_disk.crops.nbytes == in_ram.crops.nbytes
    assert np.array_equal(on_disk.crops[:], in_ram.crops) and np.array_equal(on_disk.valid[:], in_ram.valid)
    assert np.array_equal(on_disk.groups, in_ram.groups) and on_disk.sources == in_ram.sources

    reads = []
    read = RowStore.__getitem__

    def counted(self, index):
        out = read(self, index)
        reads.append(len(out) if out.ndim == self.ndim else 1)
        return out

    def refuse(self, *args, **kwargs):
        raise AssertionError("a fit stage asked for every crop as one array")

    monkeypatch.setattr(RowStore, "__getitem__", counted)
    for cls in (RowStore, PackedMasks, Rows):
        monkeypatch.setattr(cls, "__array__", refuse)
    streamed, s_report = fit_crops(on_disk.crops, on_disk.groups, config, False, order=on_disk.order, valid=on_disk.valid,
                                   sources=on_disk.sources)
    monkeypatch.undo()
    on_disk.close()
    assert reads and max(reads) < s_report.fit_faces  # a batch, an average's k crops: never the whole set
    held, h_report = fit_crops(in_ram.crops, in_ram.groups, config, False, order=in_ram.order, valid=in_ram.valid,
                               sources=in_ram.sources)
    assert s_report.losses == h_report.losses and s_report.split == h_report.split and s_report.strata == h_report.strata
    (card, tensors), (ref_card, ref_tensors) = saved(streamed, tmp_path / "streamed.muflow"), saved(held, tmp_path / "held.muflow")
    assert card == ref_card and tensors.keys() == ref_tensors.keys()
    assert any(k.startswith("model.targets") for k in tensors) and any("calibration" in k for k in tensors), sorted(tensors)
    for k in tensors:
        assert tensors[k].dtype == ref_tensors[k].dtype and tensors[k].equal(ref_tensors[k]), k  # bit for bit
