"""`muflow serve` as a client meets it: real servers (`python -m muflow_cli serve`) on loopback ports, real
photos posted over HTTP, the page in a real headless Chromium. Two servers for the whole module: one with
the defaults, one with tight limits and a token."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from conftest import write_rgb
from corpus import _png_header_only, make_corpus
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from muflow_cli.cli import app
from muflow_cli.faces.options import FaceFinding
from muflow_cli.pipelines.scan import ScanConfig
from muflow_cli.pipelines.schema import TRACK_SCHEMA

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `muflow serve` process on a free loopback port, ready (its /readyz says so) before a test uses it."""

    def __init__(self, tmp: Path, *args: str, headers: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "muflow_cli", "serve", "--port", str(self.port), *args],
                                     stdout=subprocess.DEVNULL, stderr=self.log.open("wb"), cwd=tmp)
        self.client = httpx.Client(base_url=self.url, timeout=60, headers=headers)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.close()
        raise AssertionError(f"not ready in time: {self.log.read_text()}")

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("tight"), "--token", TOKEN, "--max-mb", "2", "--max-files", "3", "--queue", "1",
               "--timeout", "1.5", "--log-json", headers=AUTH)
    yield s
    s.close()


def encoded(rgb: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return buf.tobytes()


def error_of(res: httpx.Response, status: int) -> str:
    assert res.status_code == status, res.text
    body = res.json()
    assert isinstance(body["detail"], (str, list)) and body["detail"], body
    return body.get("error", "")


def test_scan_rows_summary_and_domain_check_are_the_scans(server, t1_path, astronaut, tmp_path, default_detector):
    from muflow_cli.pipelines.scan import scan
    from muflow_cli.pipelines.schema import summarize

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(t1_path, folder / "t1.jpg")
    write_rgb(folder / "astronaut.png", astronaut)
    local = scan([folder / "t1.jpg", folder / "astronaut.png"], default_detector, ScanConfig(), progress=False)
    res = server.client.post("/v1/scan", files=[("file", ("t1.jpg", t1_path.read_bytes())),
                                                ("file", ("astronaut.png", (folder / "astronaut.png").read_bytes()))])
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["columns"] == list(local.columns)
    assert [f["file"] for f in body["files"]] == ["t1.jpg", "astronaut.png"] and [f["status"] for f in body["files"]] == ["ok", "ok"]
    rows = [r for f in body["files"] for r in f["rows"]]
    assert len(rows) == len(local) == 7 and all(list(r) == list(local.columns) for r in rows)
    for row, (_, want) in zip(rows, local.iterrows()):
        assert row["file"] == Path(want["file"]).name
        for col in local.columns.drop("file"):
            if isinstance(row[col], float):
                assert row[col] == pytest.approx(float(want[col]), rel=1e-5, abs=1e-6), col
            else:
                assert row[col] == (None if want[col] is None or want[col] != want[col] else want[col]), col
    assert body["summary"] == summarize(local)
    assert body["rule"] == default_detector.calibration.describe(0.05)
    check = default_detector.calibration.domain_check(local["p_value"].dropna().to_numpy(float), 0.05)
    assert (body["domain_warning"] is not None) == check.mismatch
    assert body["provenance"] == {"none": 2}


def test_fdr_decides_over_the_requests_faces_as_a_local_scan_of_them(server, t1_path, astronaut, tmp_path, default_detector):
    from muflow_cli.pipelines.scan import scan

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(t1_path, folder / "t1.jpg")
    write_rgb(folder / "astronaut.png", astronaut)
    paths = [folder / "t1.jpg", folder / "astronaut.png"]
    p = np.sort(scan(paths, default_detector, ScanConfig(), progress=False)["p_value"].dropna().to_numpy(float))
    q = float(min(1.0, (p * len(p) / np.arange(1, len(p) + 1)).min() * 1.001))  # the smallest q at which BH flags a face
    local = scan(paths, default_detector, ScanConfig(fdr=q), progress=False)
    assert (local["verdict"] == "fake").any()
    files = [("file", ("t1.jpg", t1_path.read_bytes())), ("file", ("astronaut.png", (folder / "astronaut.png").read_bytes()))]
    res = server.client.post("/v1/scan", params={"fdr": q}, files=files)
    assert res.status_code == 200, res.text
    body = res.json()
    assert [r["verdict"] for f in body["files"] for r in f["rows"]] == list(local["verdict"].astype(str))
    assert f"fdr {q:g}: fake when Benjamini-Hochberg rejects" in body["rule"]
    assert "fdr" in {p["name"] for p in server.client.get("/openapi.json").json()["paths"]["/v1/video"]["post"]["parameters"]}
    assert error_of(server.client.post("/v1/scan", params={"fdr": 1.5}, files=files[:1]), 400) == "bad_options"


def test_a_raw_body_gets_its_name_as_data_and_the_heat_maps_as_pngs(server, astronaut, default_detector):
    name = "../../etc/<b>astro</b>.png"
    res = server.client.post("/v1/scan", content=encoded(astronaut), headers={"content-type": "image/png"},
                             params={"name": name, "heatmap": "true", "crops": "true", "fpr": "0.2", "tail": "upper"})
    assert res.status_code == 200, res.text
    f = res.json()["files"][0]
    assert f["file"] == name and f["rows"][0]["file"] == name and f["status"] == "ok" and len(f["rows"]) == 1
    assert res.json()["rule"] == default_detector.calibration.describe(0.2, "upper")
    size = default_detector.crop_size
    for kind in ("crop", "heatmap"):
        png = Image.open(io.BytesIO(base64.b64decode(f["pictures"][0][kind])))
        assert png.format == "PNG" and png.size == (size, size), kind
    crop, heat = (np.asarray(Image.open(io.BytesIO(base64.b64decode(f["pictures"][0][k])))) for k in ("crop", "heatmap"))
    assert np.abs(crop.astype(int) - heat).mean() > 10  # the heat map is coloured over the crop


def test_every_bad_file_is_a_row_with_its_status_never_a_500(server, astronaut, tmp_path):
    cases = make_corpus(tmp_path / "corpus", astronaut)
    root = tmp_path / "corpus"
    sent = {}
    for name, expected in cases.items():
        path = root / name
        if "\\x" in name or not path.is_file() or path.is_symlink() or name.startswith("no_read"):
            continue  # special files and paths: a client can only send bytes
        sent[name] = (path.read_bytes(), expected)
    _png_header_only(tmp_path / "bomb.png", 50_000, 50_000)
    sent["declared_50000x50000.png"] = ((tmp_path / "bomb.png").read_bytes(), {"too_large"})
    assert len(sent) >= 25
    items = list(sent.items())
    got = {}
    for i in range(0, len(items), 16):
        part = items[i : i + 16]
        res = server.client.post("/v1/scan", files=[("file", (n, data)) for n, (data, _) in part])
        assert res.status_code == 200, res.text
        got.update({f["file"]: f for f in res.json()["files"]})
    for name, (_, expected) in sent.items():
        assert got[name]["status"] in expected, (name, got[name]["status"], got[name]["message"])
        assert got[name]["status"] == "ok" or got[name]["message"], name
    assert not list(Path(tempfile.gettempdir()).glob("muflow-serve-*"))


def test_concurrent_requests_are_scored_in_shared_batches_with_the_same_numbers(server, t1_path):
    body = t1_path.read_bytes()  # 6 faces: scoring them takes about as long as finding them, so requests queue for the scorer
    alone = server.client.post("/v1/scan", content=body).json()["files"][0]["rows"]

    def batches() -> tuple[float, float]:
        fams = {f.name: f for f in text_string_to_metric_families(server.client.get("/metrics").text)}
        samples = {s.name: s.value for s in fams["muflow_batch_requests"].samples if s.name.endswith(("_count", "_sum"))}
        return samples["muflow_batch_requests_count"], samples["muflow_batch_requests_sum"]

    calls0, requests0 = batches()

    async def many(n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            return await asyncio.gather(*(c.post("/v1/scan", content=body) for _ in range(n)))

    out = asyncio.run(many(12))
    assert all(r.status_code == 200 for r in out), [r.text for r in out if r.status_code != 200]
    for r in out:
        rows = r.json()["files"][0]["rows"]
        assert [x["score"] for x in rows] == pytest.approx([x["score"] for x in alone], rel=1e-5)
        assert [x["verdict"] for x in rows] == [x["verdict"] for x in alone]
    calls, requests = batches()
    assert requests - requests0 == 12
    assert calls - calls0 < 12  # some scoring calls scored several requests' faces together
    text = server.client.get("/metrics").text
    for name in ("muflow_requests_total", "muflow_request_seconds_bucket", "muflow_files_total", "muflow_faces_total",
                 "muflow_flagged_total", "muflow_queue_depth", "muflow_batch_faces_bucket"):
        assert name in text, name


def test_limits_auth_and_backpressure_each_answer_with_a_clear_json_error(tight, t1_path, astronaut):
    open_client = httpx.Client(base_url=tight.url, timeout=30)
    assert open_client.get("/healthz").status_code == 200
    for path in ("/readyz", "/metrics", "/v1/model", "/openapi.json"):
        assert error_of(open_client.get(path), 401) == "unauthorised", path
    assert error_of(open_client.post("/v1/scan", content=b"x"), 401) == "unauthorised"
    assert open_client.get("/v1/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert tight.client.get("/v1/model").status_code == 200
    c = tight.client
    assert error_of(c.post("/v1/scan", content=b"\0" * 2_500_000), 413) == "too_large"

    def chunks():
        for _ in range(25):
            yield b"\0" * 100_000

    assert error_of(c.post("/v1/scan", content=chunks()), 413) == "too_large"  # no Content-Length: counted as it arrives
    small = encoded(cv2.resize(astronaut, (128, 128)))
    assert error_of(c.post("/v1/scan", files=[("file", (f"{i}.png", small)) for i in range(4)]), 400) in ("too_many_files", "bad_upload")
    assert error_of(c.post("/v1/scan", files=[("note", (None, "no file"))]), 400) == "no_file"
    assert error_of(c.post("/v1/scan", data={"note": "no file"}), 400) == "no_file"
    assert error_of(c.post("/v1/scan", params={"fpr": 0}, content=small), 400) == "bad_options"
    assert error_of(c.post("/v1/scan", params={"min_face": -1}, content=small), 400) == "bad_options"
    error_of(c.post("/v1/scan", params={"aligned": "sideways"}, content=small), 422)

    def slow():
        for _ in range(5):
            time.sleep(0.7)
            yield b"\0" * 10

    assert error_of(c.post("/v1/scan", content=slow()), 408) == "upload_timeout"
    big = encoded(cv2.resize(astronaut, (1800, 1800)), ".jpg")  # 1.4 s each to search by tiles, on 2 threads
    three = [("file", (f"{i}.jpg", big)) for i in range(3)]
    assert error_of(c.post("/v1/scan", params={"min_face": 16}, files=three), 504) == "timeout"
    time.sleep(4)  # the abandoned work finishes before the next test

    async def crowd() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=tight.url, timeout=60, headers=AUTH) as a:
            return await asyncio.gather(*(a.post("/v1/scan", content=t1_path.read_bytes()) for _ in range(4)))

    out = asyncio.run(crowd())
    codes = sorted(r.status_code for r in out)
    assert codes[0] == 200 and codes[-1] == 503, codes
    for r in out:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and r.json()["error"] == "busy"
    assert c.post("/v1/scan", content=t1_path.read_bytes()).status_code == 200  # and it still serves
    lines = [json.loads(line) for line in tight.log.read_text().splitlines() if line.startswith("{")]
    seen = {(line["path"], line["status"]) for line in lines}
    assert {("/v1/scan", 413), ("/v1/scan", 503), ("/v1/scan", 200), ("/healthz", 200)} <= seen
    assert all({"time", "client", "method", "ms"} <= set(line) for line in lines)
    assert TOKEN not in tight.log.read_text()
    open_client.close()


def test_a_video_gets_the_track_table_and_a_verdict_per_video(server, astronaut, tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (448, 448))
    frame = np.ascontiguousarray(cv2.resize(astronaut, (448, 448))[..., ::-1])
    for _ in range(10):
        writer.write(frame)
    writer.release()
    res = server.client.post("/v1/video", files={"file": ("my clip.mp4", path.read_bytes())}, params={"fps": 2})
    assert res.status_code == 200, res.text
    body = res.json()
    assert [list(t) for t in body["tracks"]] == [list(TRACK_SCHEMA)] and body["tracks"][0]["status"] == "ok"
    assert body["tracks"][0]["faces"] == 4 and body["tracks"][0]["verdict"] in ("real", "fake")
    assert body["videos"][0]["video"] == "my clip.mp4" and body["videos"][0]["tracks"] == 1
    assert len(body["frames"]) == 4 and "track verdict" in body["rule"]
    bad = server.client.post("/v1/video", content=b"not a video", params={"name": "x.mp4"}).json()
    assert bad["tracks"][0]["status"] == "unreadable"
    assert not list(Path(tempfile.gettempdir()).glob("muflow-serve-*"))  # the uploads' folders are gone


def test_the_model_endpoint_says_what_info_json_prints(server):
    res = CliRunner().invoke(app, ["info", "--json"])
    assert res.exit_code == 0, res.output
    assert server.client.get("/v1/model").json() == json.loads(res.stdout)


def test_openapi_takes_the_libraries_names_and_defaults_and_no_page_loads_from_outside(server):
    spec = server.client.get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/v1/scan"]["post"]["parameters"]}
    assert {"fpr", "tail", "provenance", "detector", "threshold", "aligned", "min_face", "max_faces", "heatmap"} <= set(params)
    assert params["fpr"]["schema"]["default"] == ScanConfig().fpr and params["max_faces"]["schema"]["default"] == FaceFinding().max_faces
    assert "fps" in {p["name"] for p in spec["paths"]["/v1/video"]["post"]["parameters"]}
    for path in ("/docs", "/redoc"):
        assert server.client.get(path).status_code == 404
    page = server.client.get("/")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for text in (page.text, server.client.get("/static/app.js").text, server.client.get("/static/app.css").text):
        assert "http://" not in text and "https://" not in text and "innerHTML" not in text
    assert server.client.get("/static/../config.py").status_code == 404


def test_serve_refuses_a_reachable_host_without_a_token():
    runner = CliRunner()
    res = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert res.exit_code == 2 and "--token" in res.output
    assert runner.invoke(app, ["serve", "--host", "0.0.0.0", "--token", "t", "--no-auth"]).exit_code == 2
    assert runner.invoke(app, ["serve", "--port", "0"]).exit_code == 2


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def test_the_page_in_headless_chromium_shows_six_faces_of_t1(server, t1_path, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium): cannot test the page")
    from playwright.sync_api import sync_playwright

    outside, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 860})
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((server.url, "data:", "blob:")) else None)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(server.url + "/")
        page.set_input_files("#files", str(t1_path))
        page.wait_for_selector("#status:has-text('done')", timeout=60_000)
        assert page.locator(".face").count() == 6
        assert page.locator(".box").count() == 6
        assert page.locator(".face img.heatmap").count() == 6 and page.locator(".face img.crop").count() == 6
        assert page.locator("h2").first.text_content() == "t1.jpg"
        assert page.locator("#counts").text_content().startswith("1files6faces")
        shot = tmp_path / "serve.png"
        page.screenshot(path=str(shot), full_page=False)
        browser.close()
    assert not outside, outside
    assert not errors, errors  # a CSP violation is a console error
    rgb = cv2.imread(str(shot))[..., ::-1].astype(int)
    assert rgb.std() > 20 and ((rgb.max(-1) - rgb.min(-1)) > 40).mean() > 0.05  # the photo and the heat maps are drawn
    if os.environ.get("MUFLOW_WRITE_DOCS"):  # refresh the README's screenshot
        Image.open(shot).convert("P", palette=Image.Palette.ADAPTIVE, colors=96).save(REPO / "docs" / "serve.png", optimize=True)
