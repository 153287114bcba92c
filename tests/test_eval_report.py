"""eval measures (and tunes nothing); the HTML report is self-contained and escapes file names."""

from __future__ import annotations

import json
import re
import shutil

import cv2
import numpy as np
import pytest
from conftest import write_rgb
from typer.testing import CliRunner

from muflow_cli.cli import app
from muflow_cli.inputs.perturb import Perturbation, parse
from muflow_cli.stats.conformal import cutoffs, p_values

runner = CliRunner()


def test_perturbation_specs():
    assert parse("jpeg:75") == Perturbation("jpeg", 75.0) and parse("flip").name == "flip"
    assert parse("resize:0.5").name == "resize:0.5"
    for bad in ("jpeg", "jpeg:0", "resize:2", "blur:x", "sharpen:1"):
        with pytest.raises(ValueError, match="perturbation"):
            parse(bad)


def test_perturbations_are_deterministic_and_keep_the_size(astronaut):
    for spec in ("jpeg:50", "resize:0.5", "blur:2", "noise:0.05", "flip"):
        p = parse(spec)
        a, b = p(astronaut, "x.png"), p(astronaut, "x.png")
        assert a.shape == astronaut.shape and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, astronaut)
    assert not np.array_equal(parse("noise:0.05")(astronaut, "x.png"), parse("noise:0.05")(astronaut, "y.png"))
    np.testing.assert_array_equal(parse("flip")(parse("flip")(astronaut)), astronaut)


@pytest.mark.parametrize("tail", ["two", "upper"])
def test_score_cutoffs_match_p_values(tail):
    rng = np.random.default_rng(0)
    cal = rng.normal(size=99)
    s = np.sort(np.r_[rng.normal(scale=2, size=500), cal])
    low, high = cutoffs(cal, 0.05, tail)
    flagged = (s > high) | ((s < low) if low is not None else False)
    np.testing.assert_array_equal(flagged, p_values(s, cal, tail) <= 0.05)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, real_folder):
    """Reals: the group photos; 'fakes': the portraits blurred hard (plumbing, not a detector test)."""
    root = tmp_path_factory.mktemp("labelled")
    shutil.copytree(real_folder / "group", root / "reals")
    for p in sorted((real_folder / "portrait").iterdir()):
        img = cv2.imread(str(p))[..., ::-1]
        write_rgb(root / "blurred" / p.name, cv2.GaussianBlur(img, (0, 0), 3))
    return root


def test_eval_writes_metrics_scores_and_plots(labelled, small_model, tmp_path):
    out = tmp_path / "eval"
    res = runner.invoke(app, ["eval", "--model", str(small_model), "--real", str(labelled / "reals"),
                              "--fake", f"soft={labelled / 'blurred'}", "-o", str(out), "--perturb", "jpeg:60",
                              "--bootstrap", "30"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "metrics.json").read_text())
    rows = {(m["perturbation"], m["fake_source"]): m for m in doc["metrics"]}
    assert set(rows) == {("none", "soft"), ("jpeg:60", "soft")}
    m = rows[("none", "soft")]
    assert m["n_real"] == 30 and m["n_fake"] == 6
    assert 0 <= m["auc"] <= 1 and m["ci95"]["auc"][0] <= m["auc"] <= m["ci95"]["auc"][1]
    assert m["fakes_side"] in {"higher", "lower"} and 0 <= m["fpr_at_threshold"] <= 1
    for name in ("scores.csv", "roc_none.png", "hist_none.png", "roc_jpeg_60.png", "hist_jpeg_60.png"):
        assert (out / name).stat().st_size > 0
    index = (out / "index.html").read_text()  # links every output, shows the plots, CSP-locked
    assert "default-src 'none'" in index and all(f"href='{n}'" in index for n in ("metrics.json", "scores.csv", "roc_none.png"))
    assert "src='hist_jpeg_60.png'" in index and ">soft<" in index
    assert "AUC" in res.output and "soft" in res.output


def test_eval_fdr_decides_each_perturbation_by_benjamini_hochberg(labelled, small_model, tmp_path):
    import pandas as pd

    from muflow_cli.stats.conformal import bh_reject

    out = tmp_path / "eval"
    res = runner.invoke(app, ["eval", "--model", str(small_model), "--real", str(labelled / "reals"), "--fake",
                              f"soft={labelled / 'blurred'}", "-o", str(out), "--perturb", "jpeg:60", "--bootstrap", "0",
                              "--fdr", "0.2"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "Benjamini-Hochberg at fdr 0.2" in res.output and "FDP@thr" in res.output
    scores = pd.read_csv(out / "scores.csv")
    for pert, rows in scores.groupby("perturbation"):  # reals and fakes of one perturbation are one run
        conclusive = rows[rows["verdict"].isin(["real", "fake"])]
        assert list(conclusive["verdict"] == "fake") == list(bh_reject(conclusive["p_value"].to_numpy(float), 0.2)), pert
    for m in json.loads((out / "metrics.json").read_text())["metrics"]:
        flagged = scores[(scores["perturbation"] == m["perturbation"]) & (scores["verdict"] == "fake")]
        want = (flagged["label"] == "real").mean() if len(flagged) else None
        assert (m["fdp_at_threshold"] is None or m["fdp_at_threshold"] != m["fdp_at_threshold"]) if want is None \
            else m["fdp_at_threshold"] == pytest.approx(want)


def test_eval_rejects_a_bad_perturbation(labelled, tmp_path):
    res = runner.invoke(app, ["eval", "--real", str(labelled / "reals"), "--fake", str(labelled / "blurred"),
                              "-o", str(tmp_path), "--perturb", "sharpen:2"])
    assert res.exit_code == 2 and "perturbation" in res.output


def test_html_report_is_self_contained_and_escapes_names(tmp_path, t1_path, astronaut, small_model):
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(t1_path, d / "t1.jpg")
    hostile = "<img src=x onerror=alert(1)>.jpg"
    write_rgb(d / hostile, astronaut)
    (d / "broken.jpg").write_bytes(b"junk")
    report = tmp_path / "r.html"
    res = runner.invoke(app, ["scan", str(d), "--model", str(small_model), "--html", str(report), "-q"])
    assert res.exit_code == 0, res.output
    text = report.read_text()
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;.jpg" in text
    srcs = re.findall(r"src='([^']*)'", text)
    assert srcs and all(s.startswith("data:image/jpeg;base64,") for s in srcs)  # nothing external
    assert len(re.findall(r"alt='face'", text)) == 7 and len(re.findall(r"alt='heat map'", text)) == 7
    assert len(re.findall(r"alt='image'", text)) == 2  # the two images with faces, boxes drawn
    assert "broken.jpg" in text and "unreadable" in text
