"""HTML reports: streamed pictures, one file or pages, resumable, escaped, CSP-locked, rendered by a browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import write_rgb
from test_video import clip  # noqa: F401  (the fixture: a 4-s clip of 7 face tracks)
from typer.testing import CliRunner

from muflow_cli.cli import app
from muflow_cli.outputs import report

runner = CliRunner()
HOSTILE = "<img src=x onerror=alert(1)>\"q'.jpg"
CSP = "default-src 'none'; img-src 'self' data:"


@pytest.fixture(scope="module")
def photos(tmp_path_factory, t1_path, astronaut) -> Path:
    """t1.jpg (6 faces), the astronaut under a hostile name, one with quotes, and a broken file: 4 files, 8 faces."""
    d = tmp_path_factory.mktemp("report") / "photos"
    d.mkdir()
    shutil.copy(t1_path, d / "t1.jpg")
    write_rgb(d / HOSTILE, astronaut)
    write_rgb(d / "it's \"quoted\" & <b>.png", astronaut[:, ::-1])
    (d / "broken.jpg").write_bytes(b"junk")
    return d


class Links(HTMLParser):
    """Every href and src of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("href", "src") and v is not None]


def links_of(page: Path) -> list[str]:
    parser = Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.links


def assert_links_resolve(page: Path) -> int:
    """Every link of ``page`` is a data URI or a relative path to an existing file; returns how many files it links."""
    n = 0
    for link in links_of(page):
        if link.startswith("data:image/jpeg;base64,"):
            continue
        assert not urlparse(link).scheme and not link.startswith("/"), link  # nothing external, nothing absolute
        assert (page.parent / unquote(link)).is_file(), f"{page.name}: {link}"
        n += 1
    return n


def assert_safe(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert CSP in text and "<script" not in text.lower()
    assert "<img src=x" not in text and "<b>clip" not in text and "& <b>" not in text


def scan(photos: Path, model: Path, *args: str):
    res = runner.invoke(app, ["scan", str(photos), "--model", str(model), "-q", *args])
    assert res.exit_code == 0, res.output
    return res


def test_folder_report_pages_link_only_to_files_in_it(photos, small_model, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "FACES_PER_PAGE", 2)
    out = tmp_path / "rep"
    scan(photos, small_model, "--html", str(out))
    pages = sorted(out.glob("*.html"))
    assert (out / "index.html") in pages and len(pages) >= 5  # index, 4 pages of faces at least, files, images
    linked = set()
    for page in pages:
        assert_safe(page)
        assert_links_resolve(page)
        linked |= {unquote(link) for link in links_of(page)}
    pictures = {f"img/{p.name}" for p in (out / "img").iterdir()}
    assert len(pictures) == 8 * 2 + 3 and pictures <= linked  # thumbnail + heat map per face, one image per file with faces
    index = (out / "index.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" not in index  # the index lists counts and pages, no rows
    faces = "".join(p.read_text() for p in pages if p.name.startswith(("flagged", "faces")))
    assert faces.count("alt='face'") == 8 and "&lt;img src=x onerror=alert(1)&gt;&#34;q&#39;.jpg" in faces
    assert "broken.jpg" in (out / "files-001.html").read_text()
    assert not list(tmp_path.glob(".*muflow-parts"))  # the staging folder became the report


def test_a_large_html_report_becomes_an_index_and_pages(photos, small_model, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "SINGLE_FILE_FACES", 3)
    out = tmp_path / "r.html"
    (tmp_path / "r_files").mkdir()
    res = runner.invoke(app, ["scan", str(photos), "--model", str(small_model), "--html", str(out)])
    assert res.exit_code == 2 and "not a muflow report folder" in res.output  # never replaces a folder it did not write
    shutil.rmtree(tmp_path / "r_files")
    res = scan(photos, small_model, "--html", str(out))
    assert "too large for one file" in res.output
    assert assert_links_resolve(out) >= 3 and all(link.startswith("r_files/") for link in links_of(out))
    for page in (tmp_path / "r_files").glob("*.html"):
        assert_safe(page)
        assert_links_resolve(page)
    scan(photos, small_model, "--html", str(out))  # a second run replaces its own report
    assert len(list(tmp_path.iterdir())) == 2


def test_a_resumed_scan_gives_the_same_report(photos, small_model, tmp_path, monkeypatch):
    def strip_time(text: str) -> str:
        return re.sub(r"<div class='muted'>\d{4}-\d\d-\d\dT[^<]*</div>", "", text)

    ref = tmp_path / "ref.html"
    scan(photos, small_model, "--html", str(ref), "--csv", str(tmp_path / "ref.csv"), "--chunk-files", "1")
    out, csv = tmp_path / "r.html", tmp_path / "r.csv"
    calls = []
    real = report.chunk_pictures

    def dies_on_the_third_chunk(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C between chunks
        return real(*args)

    monkeypatch.setattr(report, "chunk_pictures", dies_on_the_third_chunk)
    args = ["scan", str(photos), "--model", str(small_model), "--html", str(out), "--csv", str(csv), "--chunk-files", "1", "-q"]
    assert runner.invoke(app, args).exit_code == 130 and not out.exists()
    journal = next(tmp_path.glob(".r.csv*journal")).read_text()
    assert "data:image" not in journal and "c000000-0000-thumb.jpg" in journal  # the journal keeps names, not pictures
    assert len(list((tmp_path / ".r.html.muflow-parts" / "img").iterdir())) == 3  # chunks 0-1: the astronaut's face and image; broken.jpg
    monkeypatch.setattr(report, "chunk_pictures", real)
    assert runner.invoke(app, [*args, "--resume"]).exit_code == 0
    assert strip_time(out.read_text()) == strip_time(ref.read_text())
    assert out.read_text().count("data:image/jpeg;base64,") == 8 * 2 + 3


def test_video_report_shows_tracks_plots_and_bad_videos(clip, small_model, tmp_path):  # noqa: F811
    d = tmp_path / "videos"
    d.mkdir()
    shutil.copy(clip, d / "<b>clip&.mp4")
    (d / "empty.mp4").write_bytes(b"")
    out = tmp_path / "v.html"
    res = runner.invoke(app, ["video", str(d), "--model", str(small_model), "--fps", "2", "--html", str(out),
                              "--tracks", str(tmp_path / "t.csv")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert_safe(out)
    text = out.read_text()
    assert "&lt;b&gt;clip&amp;.mp4" in text and "empty.mp4" in text
    assert text.count("<div class='track ") == 7 and text.count("<svg") == 7  # six people, then the astronaut
    assert text.count("data:image/jpeg;base64,") == 7 * 3 * 2  # first, middle, highest: crop and heat map
    assert len(re.findall(r"<use [^>]*fill: #(?:dc2626|16a34a)", text)) == 28  # a dot per face, red or green
    from muflow_cli.model.deepfake_model import DeepfakeModel

    cuts = [c for c in DeepfakeModel.load(small_model).calibration.cutoffs(0.05) if c is not None and np.isfinite(c)]
    assert text.count("stroke-dasharray") == 7 * len(cuts)  # the calibrated cutoffs, dashed, when the model has any
    assert text.index("clip&amp;.mp4") < text.index("empty.mp4")  # videos with tracks before those without
    assert f"wrote {out}" in res.output


@pytest.mark.parametrize("name", ["v.html", "v"])  # one file, and a folder of pages
def test_video_report_escapes_hostile_names_and_messages(tmp_path, name):
    from muflow_cli.outputs.video_report import write_video_html

    evil, bad = 'a"<script>alert(1)</script>\'.mp4', "b<img src=x onerror=alert(2)>.mp4"
    tracks = pd.DataFrame([
        {"video": evil, "track": 1, "status": "ok", "message": "<b>note</b>", "verdict": "fake", "first_s": 0.0, "last_s": 1.0,
         "faces": 3, "mean_score": 1.0, "max_score": 2.0, "p_value": 0.01},
        {"video": bad, "track": None, "status": "unreadable", "message": "<script>x</script>", "verdict": None, "first_s": None,
         "last_s": None, "faces": 0, "mean_score": None, "max_score": None, "p_value": None}])
    frames = pd.DataFrame({"video": [evil] * 3, "status": "ok", "track": 1, "score": [0.5, 2.0, 0.5], "time_s": [0.0, 0.5, 1.0],
                           "frame": [0, 5, 10], "verdict": ["real", "fake", "real"]})
    path, _ = write_video_html(frames, tracks, report.ReportTarget(tmp_path / name), f"scan of {evil}", [f"note {bad}"], (-1.0, 1.5))
    pages = [path] if name.endswith(".html") else sorted(path.parent.glob("*.html"))
    text = "".join(p.read_text(encoding="utf-8") for p in pages)
    for page in pages:
        assert_safe(page)
        assert_links_resolve(page)
    assert "<script" not in text.lower() and "<img src=x" not in text and "<b>note" not in text
    assert "a&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#39;.mp4" in text and "&lt;script&gt;x&lt;/script&gt;" in text
    assert "b&lt;img src=x onerror=alert(2)&gt;.mp4" in text and "; &lt;b&gt;note&lt;/b&gt;" in text
    assert text.count("<svg") == 1 and len(re.findall(r"<use [^>]*fill: #dc2626", text)) == 1  # the one flagged face


def test_eval_index_links_its_outputs(tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    files = []
    for name in ("metrics.json", "scores.csv", "roc_none.png"):
        (out / name).write_bytes(b"x")
        files.append(out / name)
    metrics = [{"perturbation": "none", "fake_source": "<script>x</script>", "n_real": 3, "n_fake": 2, "auc": 0.5,
                "ci95": {"auc": [0.1, 0.9]}, "tpr_at_threshold": float("nan"), "fakes_side": "higher"}]
    page = report.write_eval_index(out, metrics, files, ["note & more"])
    assert_safe(page)
    assert assert_links_resolve(page) == 4  # three links and the plot inline
    text = page.read_text()
    assert "&lt;script&gt;x&lt;/script&gt;" in text and "0.500 [0.10, 0.90]" in text and "note &amp; more" in text


def test_headless_chromium_renders_a_folder_page(photos, small_model, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium) : cannot render the report")
    out = tmp_path / "rep"
    scan(photos, small_model, "--html", str(out))
    page = out / "flagged-001.html" if (out / "flagged-001.html").exists() else out / "faces-001.html"
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=900,700", f"--screenshot={shot}",
                    page.resolve().as_uri()], capture_output=True, timeout=120, check=True)
    rgb = cv2.imread(str(shot))[..., ::-1].astype(int)
    assert rgb.std() > 20  # not a blank page
    coloured = (rgb.max(-1) - rgb.min(-1)) > 40  # faces and heat maps: pictures loaded from img/ under the CSP (text is grey)
    assert coloured.mean() > 0.03
