"""Every command through typer's CliRunner, on real photos and a model fitted here in seconds."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from conftest import FAST_FIT
from typer.testing import CliRunner

from muflow_cli.cli import app

runner = CliRunner()


def test_fit_writes_a_complete_bundle(small_model):
    card = json.loads((small_model / "card.json").read_text())
    assert card["format"] == 3 and card["crop"]["size"] == 128 and card["crop"]["masked"] and card["face_detector"]["kind"] == "scrfd"
    t = card["training"]
    assert t["faces"] == 36 and t["fit_faces"] + t["calibration_faces"] == 36
    assert t["averages"] == 16 and t["epochs"] == 2 and t["seed"] == 0
    assert len(card["tensors"]["sha256"]) == 64
    assert [layer["stride"] for layer in card["layers"]] == [4, 8, 16]


def test_fit_is_reproducible_and_the_disk_cache_changes_nothing(tmp_path, real_folder, small_model):
    """small_model cached its features in RAM; this refit memory-maps them from disk."""
    out, cache_dir = tmp_path / "again.muflow", tmp_path / "cache"
    cache_dir.mkdir()
    args = ["fit", str(real_folder), "-o", str(out), *FAST_FIT, "--cache", "disk", "--cache-dir", str(cache_dir)]
    assert runner.invoke(app, args).exit_code == 0
    assert list(cache_dir.iterdir()) == []  # the memory-mapped files are gone after the fit
    from safetensors.torch import load_file

    a, b = load_file(str(small_model / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)  # bit-identical tensors
    card_a, card_b = (json.loads((p / "card.json").read_text()) for p in (small_model, out))
    for card in (card_a, card_b):  # only the fit date and the hashes that cover it may differ
        card["training"].pop("date"), card.pop("tensors")
    assert card_a == card_b


def test_fit_refuses_too_few_faces(tmp_path, t1_path):
    (tmp_path / "few").mkdir()
    shutil.copy(t1_path, tmp_path / "few" / "t1.jpg")
    res = runner.invoke(app, ["fit", str(tmp_path / "few"), "-o", str(tmp_path / "m"), "-q"])
    assert res.exit_code == 1
    assert "found 6 usable faces" in res.output and "at least 20" in res.output


def test_scan_t1_on_the_default_model_writes_six_rows(tmp_path, t1_path):
    csv = tmp_path / "out.csv"
    res = runner.invoke(app, ["scan", str(t1_path), "--csv", str(csv)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(csv)
    assert len(df) == 6
    assert set(df["status"]) == {"ok"} and list(df["face"]) == list(range(6))
    assert df["p_value"].between(0, 1).all() and set(df["verdict"]) <= {"real", "fake"}
    assert {"score_s4", "score_s8", "score_s16", "landmarks", "face_px"} <= set(df.columns)
    assert "files" in res.output and "flagged" in res.output


def test_scan_folder_with_bad_files_gives_a_row_each(tmp_path, small_model, t1_path):
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(t1_path, d / "group.jpg")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (d / "=cmd()+.png").write_bytes(b"")
    import cv2
    import numpy as np

    cv2.imwrite(str(d / "wall.png"), np.full((120, 160, 3), 90, np.uint8))
    out = tmp_path / "t.jsonl"
    res = runner.invoke(app, ["scan", str(d), "--model", str(small_model), "--jsonl", str(out), "--csv", str(tmp_path / "t.csv"), "-q"])
    assert res.exit_code == 0, res.output
    df = pd.read_json(out, lines=True)
    by_file = df.groupby("file")["status"].agg(list)
    assert by_file[str(d / "group.jpg")] == ["ok"] * 6
    assert by_file[str(d / "broken.jpg")] == ["unreadable"]
    assert by_file[str(d / "=cmd()+.png")] == ["unreadable"]
    assert by_file[str(d / "wall.png")] == ["no_face"]
    assert df.loc[df["status"] != "ok", "message"].str.len().gt(0).all()
    csv_text = (tmp_path / "t.csv").read_text()
    assert "'" + str(d) in csv_text or str(d).startswith("/")  # paths are absolute here: nothing to neutralise
    assert ",=cmd" not in csv_text


def test_scan_parquet_and_upper_tail(tmp_path, small_model, t1_path):
    out = tmp_path / "t.parquet"
    res = runner.invoke(app, ["scan", str(t1_path), "-m", str(small_model), "--parquet", str(out), "--tail", "upper", "--fpr", "0.5", "-q"])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out)
    assert len(df) == 6 and df["score"].notna().all()


def test_scan_prints_a_table_without_output_files(small_model, t1_path):
    res = runner.invoke(app, ["scan", str(t1_path), "-m", str(small_model)])
    assert res.exit_code == 0
    assert "t1.jpg" in res.output and "verdict" in res.output


def test_scan_missing_path_and_bad_model_are_usage_errors(tmp_path, t1_path):
    res = runner.invoke(app, ["scan", str(tmp_path / "nope.jpg")])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(app, ["scan", str(t1_path), "--model", str(tmp_path)])
    assert res.exit_code == 1 and "not a muflow model" in res.output


def test_weights_list_and_verify():
    res = runner.invoke(app, ["weights", "list"], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "non-commercial" in res.output and "MIT" in res.output and "BSD-3" in res.output
    res = runner.invoke(app, ["weights", "verify"])
    assert res.exit_code == 0, res.output
    assert res.output.count("ok") >= 4


def test_info_shows_the_card(small_model):
    res = runner.invoke(app, ["info", str(small_model)], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "mobilenetv2_100" in res.output and "held out to calibrate" in res.output
    card = json.loads(runner.invoke(app, ["info", str(small_model), "--json"]).output)
    assert card["training"]["fit_faces"] > 0 and len(card["tensors_sha256"]) == 64


def test_the_old_detector_flag_still_chooses_the_face_detector(tmp_path, t1_path, small_model):
    """--face-detector was --detector before the deepfake model and the face detector got distinct names."""
    outs = {}
    for flag in ("--face-detector", "--detector"):
        out = tmp_path / f"{flag.strip('-')}.csv"
        res = runner.invoke(app, ["scan", str(t1_path), "-m", str(small_model), flag, "yunet", "--csv", str(out), "-q"])
        assert res.exit_code == 0, res.output
        outs[flag] = out.read_text()
    assert outs["--face-detector"] == outs["--detector"]
    assert "--detector" not in runner.invoke(app, ["scan", "--help"], env={"COLUMNS": "200"}).output


def test_a_bad_setting_is_a_usage_error_before_any_work(tmp_path, real_folder):
    res = runner.invoke(app, ["fit", str(real_folder), "-o", str(tmp_path / "m"), "--crop-size", "100", "-q"])
    assert res.exit_code == 2 and "multiple of 16" in res.output


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and "muflow" in res.output


def test_fit_refuses_to_overwrite_a_folder_that_is_not_a_model(real_folder):
    res = runner.invoke(app, ["fit", str(real_folder), "-o", str(real_folder / "group"), *FAST_FIT])
    assert res.exit_code == 2 and "is not a muflow model" in res.output
    assert len(list((real_folder / "group").iterdir())) == 5


def test_scan_tables_do_not_depend_on_the_number_of_workers(tmp_path, real_folder, small_model):
    outs = []
    for workers in (1, 3):
        out = tmp_path / f"w{workers}.csv"
        args = ["scan", str(real_folder), "-m", str(small_model), "--csv", str(out), "--workers", str(workers), "--chunk-files", "3", "-q"]
        assert runner.invoke(app, args).exit_code == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b",ok,") == 36


def test_an_aligned_crop_scores_as_the_face_it_came_from(tmp_path, astronaut, face_detector, default_detector):
    """--aligned muflow: a crop saved from a scan (lossless) scores exactly as the face did in its photo."""
    from conftest import write_rgb

    face = face_detector.faces(astronaut, size=256, context=1.5)[0]
    photo, crop = write_rgb(tmp_path / "photo.png", astronaut), write_rgb(tmp_path / "crops" / "face.png", face.crop)
    scores = []
    for args in ([str(photo)], [str(crop.parent), "--aligned", "muflow"]):
        out = tmp_path / f"{len(scores)}.csv"
        res = runner.invoke(app, ["scan", *args, "--csv", str(out), "-q"])
        assert res.exit_code == 0, res.output
        df = pd.read_csv(out)
        assert list(df["status"]) == ["ok"]
        scores.append(float(df["score"][0]))
    assert abs(scores[0] - scores[1]) <= 1e-6  # the same pixels reach the backbone


def test_fit_without_an_output_writes_beside_the_input_name_and_says_how_to_use_it(tmp_path, real_folder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reals.muflow").write_text("an existing file is never replaced")
    link = tmp_path / "reals"
    link.symlink_to(real_folder)
    args = [a for a in FAST_FIT if a != "-q"]
    res = runner.invoke(app, ["fit", "reals", *args], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert (tmp_path / "reals-2.muflow" / "card.json").is_file()
    assert (tmp_path / "reals.muflow").read_text() == "an existing file is never replaced"
    assert "muflow scan PHOTOS --model reals-2.muflow" in res.output
    assert "fitting on" in res.output and "Estimated time" in res.output and "measured on this machine" in res.output


def test_fit_takes_its_files_from_a_list(tmp_path, real_folder):
    listing = tmp_path / "reals.txt"
    listing.write_text("\n".join(str(p) for p in sorted(real_folder.rglob("*.*"))) + "\n")
    out = tmp_path / "listed.muflow"
    res = runner.invoke(app, ["fit", "--files-from", str(listing), "-o", str(out), *FAST_FIT])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "card.json").read_text())["training"]["faces"] == 36


def test_fit_with_the_old_detector_alias_fits_with_that_detector(tmp_path, real_folder):
    """`--detector` (hidden, before 0.2) names the face detector on fit as on scan: it once fell back to SCRFD."""
    out = tmp_path / "yunet.muflow"
    res = runner.invoke(app, ["fit", str(real_folder), "-o", str(out), *FAST_FIT, "--detector", "yunet"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "card.json").read_text())["face_detector"]["kind"] == "yunet"


def test_every_face_finding_option_reaches_every_command_that_finds_faces():
    """One declaration (cli/options.py FACE_FINDING): each command that finds faces takes each option."""
    from muflow_cli.cli.options import FACE_FINDING

    for command in ("scan", "fit", "video", "eval", "calibrate"):
        shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        for name, declared in FACE_FINDING.items():
            if not declared.option.hidden:
                assert declared.option.param_decls[0] in shown, (command, name)
