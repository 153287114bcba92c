"""The fit report: what a bundle holds, self-contained, escaped, for new bundles and the bundled one."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from muflow_cli.cli import app
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.outputs.fit_report import ReportModel, fit_report_html

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def test_a_new_bundle_keeps_its_sample_of_faces_and_its_losses(small_model):
    det = DeepfakeModel.load(small_model)
    assert tuple(det.extras["report.averages"].shape) == (16, 64, 64, 3)
    assert tuple(det.extras["report.faces"].shape) == (16, 64, 64, 3)
    assert str(det.extras["report.faces"].dtype) == "torch.uint8"
    assert len(det.card.training.losses) == det.card.training.epochs == 2
    assert det.card.training.final_loss == det.card.training.losses[-1] and det.card.training.groups == 11


def test_info_html_of_a_new_bundle_shows_faces_loss_curve_and_calibration(small_model, tmp_path):
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["info", str(small_model), "--html", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert text.count("alt='average face'") == 16 and text.count("alt='fit face'") == 16
    assert "training loss per epoch" in text and "calibration score histogram" in text  # the charts' labels
    assert "two-sided cutoffs at 5%" in text and "two-sided cutoffs at 1%" in text and "smallest attainable p-value" in text
    srcs = re.findall(r"src='([^']*)'", text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)  # nothing from outside
    namespaces = ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink")  # the charts' SVG names, not addresses
    assert "http://" not in re.sub("|".join(map(re.escape, namespaces)), "", text) and "https://" not in text


def test_info_html_of_the_bundled_model_shows_its_average_faces(tmp_path):
    out = tmp_path / "default.html"
    res = runner.invoke(app, ["info", "--html", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.count("alt='average face'") == 16 and text.count("alt='fit face'") == 16
    assert "training loss per epoch" in text and "calibration score histogram" in text and "keeps no" not in text


def test_info_html_of_an_old_format_1_bundle_says_what_it_lacks(tmp_path):
    out = tmp_path / "old.html"
    res = runner.invoke(app, ["info", str(ROOT / "tests" / "data" / "format1.muflow"), "--html", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "keeps no sample of its average faces" in text and "keeps no loss per epoch" in text
    assert "Final loss 0.8105" in text and "<img" not in text and "calibration score histogram" in text


def test_every_string_is_escaped(small_model):
    model = ReportModel.load(small_model)
    evil = "<script>alert(1)</script>"
    model.card = replace(model.card, training=replace(model.card.training, data=evil, skipped={evil: 1}))
    text = fit_report_html(model, evil)
    assert "<script" not in text and "&lt;script&gt;" in text


def test_fit_html_writes_the_report_with_the_stage_times(tmp_path, real_folder):
    from conftest import FAST_FIT

    out, report = tmp_path / "m.muflow", tmp_path / "fit.html"
    res = runner.invoke(app, ["fit", str(real_folder), "-o", str(out), *FAST_FIT, "--html", str(report)])
    assert res.exit_code == 0, res.output
    text = report.read_text()
    assert "averages" in text and re.search(r"training \d+ s", text) and text.count("alt='fit face'") == 16


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless chromium is not installed")
def test_the_report_renders_in_headless_chromium(small_model, tmp_path):
    html_path, png = tmp_path / "r.html", tmp_path / "r.png"
    assert runner.invoke(app, ["info", str(small_model), "--html", str(html_path)]).exit_code == 0
    subprocess.run(["bash", str(ROOT / "scripts" / "screenshot_report.sh"), str(html_path), str(png), "1000,1400"],
                   check=True, timeout=180, capture_output=True)
    image = cv2.imread(str(png))
    assert image is not None and image.shape[:2] == (1400, 1000)
    assert (image < 200).any(axis=2).mean() > 0.02  # faces, charts and text, not a blank page
