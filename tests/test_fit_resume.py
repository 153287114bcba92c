"""Kill a fit mid-training, resume it, and get the very model an uninterrupted fit writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST_FIT, fast_fit_config
from safetensors.torch import load_file

from muflow_cli.nn.row_store import RowStore
from muflow_cli.nn.target import GaussianTarget
from muflow_cli.pipelines.fit import fit
from muflow_cli.pipelines.fit_checkpoint import (
    CROPS_FILE,
    MASKS_FILE,
    FitCheckpoint,
    FitResumeError,
    SavedFaces,
    SavedSplit,
    _read_meta,
    checkpoint_path,
    describe,
    fit_settings,
)

EPOCHS = ["--epochs", "6"]  # after FAST_FIT's --epochs 2: the last one wins


def fit_cmd(photos: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "muflow_cli", "fit", str(photos), "-o", str(out), *FAST_FIT, *EPOCHS, *extra]


def finished_epochs(out: Path) -> int:
    meta = _read_meta(checkpoint_path(out) / "epoch.safetensors")
    return meta["epoch"] if meta else 0


def bundle(path: Path) -> tuple[dict, dict]:
    card = json.loads((path / "card.json").read_text())
    card.pop("tensors")
    card["training"].pop("date")
    return card, load_file(str(path / "model.safetensors"))


def test_sigkill_mid_training_then_resume_gives_the_same_model(real_folder, tmp_path):
    reference = tmp_path / "reference.muflow"
    subprocess.run(fit_cmd(real_folder, reference), check=True, timeout=900)
    assert not checkpoint_path(reference).exists()  # a finished fit leaves no checkpoint behind

    out = tmp_path / "killed.muflow"
    proc = subprocess.Popen(fit_cmd(real_folder, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 900
    while proc.poll() is None and time.time() < deadline and finished_epochs(out) < 1:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the fit finished before it could be killed"
    done = finished_epochs(out)
    assert 1 <= done < 6 and not out.exists()

    subprocess.run(fit_cmd(real_folder, out, "--resume"), check=True, timeout=900)
    assert not checkpoint_path(out).exists()
    (card, tensors), (ref_card, ref_tensors) = bundle(out), bundle(reference)
    assert card == ref_card  # the date aside
    assert tensors.keys() == ref_tensors.keys() and "report.averages" in tensors
    for k in tensors:
        assert tensors[k].dtype == ref_tensors[k].dtype and tensors[k].equal(ref_tensors[k]), k  # bit for bit
    assert len(card["training"]["losses"]) == 6


def test_resuming_with_other_settings_is_refused_naming_them(real_folder, tmp_path):
    ck = tmp_path / "ck"
    FitCheckpoint(ck, fit_settings(fast_fit_config(), [str(real_folder.resolve())]))
    with pytest.raises(FitResumeError, match=r"other settings \(epochs, seed\)"):
        fit([real_folder], fast_fit_config(seed=1, epochs=3), progress=False, checkpoint_dir=ck, resume=True)
    assert ck.is_dir()  # refused before any work, and nothing was cleared


def test_where_the_cache_lives_and_the_device_do_not_make_another_fit(real_folder, tmp_path):
    paths = [str(real_folder.resolve())]
    assert fit_settings(fast_fit_config(), paths) == fit_settings(fast_fit_config(cache="disk", cache_dir=tmp_path, device="cpu"), paths)
    assert fit_settings(fast_fit_config(), paths) != fit_settings(fast_fit_config(), [str(tmp_path)])


def test_a_folder_that_is_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "ck").mkdir()
    with pytest.raises(FitResumeError, match="not a muflow fit checkpoint"):
        FitCheckpoint(tmp_path / "ck", {}, resume=True)


def test_a_folder_that_is_not_a_checkpoint_is_never_cleared(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"keep me")
    with pytest.raises(FitResumeError, match="not a muflow fit checkpoint"):
        FitCheckpoint(tmp_path / "photos", {})
    assert (tmp_path / "photos" / "a.jpg").read_bytes() == b"keep me"


def test_each_stage_comes_back_as_the_record_it_was_saved_as(tmp_path):
    ck = FitCheckpoint(tmp_path / "ck", {"kind": "fit"})
    assert ck.load_faces() is None and ck.load_split() is None and describe(ck.path) == "nothing is done yet"
    rng = np.random.default_rng(3)
    faces = SavedFaces(rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8), np.array([0, 0, 1, 2]), 3, {"no_face": 1}, 1.5,
                       valid=rng.random((4, 16, 16)) > 0.3)
    ck.save_faces(faces)
    back = ck.load_faces()
    assert isinstance(back.crops, RowStore) and back.crops.path == ck.path / CROPS_FILE  # rows on disk, not in the npz
    assert np.array_equal(back.crops[:], faces.crops) and np.array_equal(back.groups, faces.groups)
    assert np.array_equal(back.valid[:], faces.valid)
    back.close()
    assert (back.files, back.skipped, back.seconds) == (3, {"no_face": 1}, 1.5) and back.owner is None
    native = FitCheckpoint(tmp_path / "native", {"kind": "fit"})  # a native fit's rows keep their faces
    native.save_faces(SavedFaces(faces.crops, faces.groups, 3, {}, 1.0, owner=np.array([0, 0, 0, 1])))
    again = native.load_faces()
    assert np.array_equal(again.owner, [0, 0, 0, 1])
    again.close()
    targets = [GaussianTarget.fit(rng.normal(size=(40, c))) for c in (3, 5)]
    split = SavedSplit(np.array([True, False, False, True]), targets, np.zeros((2, 8, 8, 3), np.uint8),
                       rng.bit_generator.state, torch.get_rng_state(), 2.5)
    ck.save_split(split)
    back = ck.load_split()
    assert np.array_equal(back.cal_mask, split.cal_mask) and back.rng_state == split.rng_state and back.seconds == 2.5
    assert torch.equal(back.torch_rng_state, split.torch_rng_state) and np.array_equal(back.average_sample, split.average_sample)
    for a, b in zip(back.targets, targets):
        assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert describe(ck.path) == "the faces and averages are done"


def test_a_resumed_fit_reads_the_crops_kept_as_rows_and_a_format_2_checkpoint_still_resumes(real_folder, tmp_path, monkeypatch):
    """The checkpoint keeps the crops as the rows the fit collected them into (no second copy in faces.npz);
    resuming reads them from there, and a checkpoint of format 2 (the crops inside faces.npz) resumes too."""
    import muflow_cli.pipelines.fit as fit_module

    ck, config, paths = tmp_path / "ck", fast_fit_config(), [real_folder]
    first, _ = fit(paths, config, progress=False, checkpoint_dir=ck, keep_checkpoint=True)
    with np.load(ck / "faces.npz") as z:
        assert "crops" not in z and "valid" not in z
    assert (ck / CROPS_FILE).stat().st_size == 36 * 128 * 128 * 3 and (ck / MASKS_FILE).stat().st_size == 36 * 128 * 16

    def no_collecting(*args, **kwargs):
        raise AssertionError("the faces were collected again")

    monkeypatch.setattr(fit_module, "collect_faces", no_collecting)
    for stage in ("split.safetensors", "epoch.safetensors"):  # the averages and epochs are redone from the rows on disk
        (ck / stage).unlink()
    again, _ = fit(paths, config, progress=False, checkpoint_dir=ck, resume=True, keep_checkpoint=True)

    # the same checkpoint as format 2 wrote it: crops and packed masks inside faces.npz, no rows beside it
    crops, valid = np.fromfile(ck / CROPS_FILE, np.uint8).reshape(36, 128, 128, 3), np.fromfile(ck / MASKS_FILE, np.uint8)
    with np.load(ck / "faces.npz") as z:
        np.savez(ck / "faces.npz", crops=crops, groups=z["groups"], order=z["order"], valid=valid.reshape(36, 128, 16),
                 side=np.int64(128))
    meta = json.loads((ck / "faces.json").read_text())
    del meta["rows"]
    (ck / "faces.json").write_text(json.dumps(meta))
    head = json.loads((ck / "settings.json").read_text())
    (ck / "settings.json").write_text(json.dumps(dict(head, format="muflow-fit-checkpoint/2")))
    for name in (CROPS_FILE, MASKS_FILE, "split.safetensors", "epoch.safetensors"):
        (ck / name).unlink()
    old, _ = fit(paths, config, progress=False, checkpoint_dir=ck, resume=True)
    assert not ck.exists()  # removed once the fit returns

    (card, tensors) = bundle_of(first, tmp_path / "first.muflow")
    for other in (again, old):
        other_card, other_tensors = bundle_of(other, tmp_path / "other.muflow")
        assert other_card == card and other_tensors.keys() == tensors.keys()
        for k in tensors:
            assert tensors[k].equal(other_tensors[k]), k  # bit for bit


def bundle_of(model, path: Path) -> tuple[dict, dict]:
    model.save(path)
    return bundle(path)
