"""Provenance beside the detector: C2PA Content Credentials, IPTC/XMP labels, generator settings, camera EXIF.

Every artefact is made here: t1.jpg signed with c2pa-python by a throw-away CA and ES256 certificate
(tests/provenance_files.py), one byte of it tampered, a PNG with a generator's settings written by Pillow,
a JPEG with a camera's EXIF, JPEGs with an XMP DigitalSourceType packet, a signed MP4 written by OpenCV.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import random
import shutil
import socketserver
import threading
import time

import cv2
import numpy as np
import pandas as pd
import pytest
from provenance_files import (
    CAPTURE,
    COMPOSITE_AI,
    PROMPT,
    TRAINED,
    jpeg_with_exif,
    jpeg_with_xmp,
    make_signing_chain,
    manifest,
    png_with_parameters,
    sign,
    tamper,
    xmp_packet,
)
from typer.testing import CliRunner

from muflow_cli.cli import app
from muflow_cli.inputs.images import read_image_file
from muflow_cli.inputs.provenance import DETAIL_MAX, KINDS, Provenance, read_provenance

runner = CliRunner()
CREATED_BY_AI = [{"action": "c2pa.created", "digitalSourceType": TRAINED}]


@pytest.fixture(scope="module")
def chain():
    return make_signing_chain()


@pytest.fixture(scope="module")
def signed_t1(chain, t1_path) -> bytes:
    """A copy of t1.jpg with a C2PA manifest that says a trained algorithm made it."""
    return sign(t1_path.read_bytes(), chain, manifest(CREATED_BY_AI))


def assert_one_clean_line(p: Provenance) -> None:
    assert p.kind in KINDS
    assert len(p.detail) <= DETAIL_MAX and p.detail.isprintable() and "\n" not in p.detail, p.detail


def test_signed_copy_of_t1_reads_as_generated_by_an_untrusted_signer(signed_t1):
    p = read_provenance(signed_t1)
    assert p.kind == "c2pa-generated", p
    assert p.detail.startswith("c2pa valid, untrusted signer; signer muflow test signer (muflow tests)"), p.detail
    assert "generator muflow-test-generator 1.0" in p.detail and "c2pa.created (trainedAlgorithmicMedia)" in p.detail
    assert_one_clean_line(p)


def test_one_tampered_byte_makes_the_manifest_invalid_and_the_image_still_decodes(signed_t1, t1_rgb):
    bad = tamper(signed_t1)
    p = read_provenance(bad)
    assert p.kind == "c2pa-invalid" and "assertion.dataHash.mismatch" in p.detail, p
    assert "trainedAlgorithmicMedia" in p.detail  # what it claimed is still said, beside "invalid"
    rgb, again = read_image_file(io.BytesIO(bad), provenance=2.0)
    assert again == p and rgb.shape == t1_rgb.shape


def test_captured_edited_composited_and_generated_parents(chain, t1_path):
    t1 = t1_path.read_bytes()
    captured = sign(t1, chain, manifest([{"action": "c2pa.created", "digitalSourceType": CAPTURE}], "Camera App"))
    assert read_provenance(captured).kind == "c2pa-captured"
    assert "c2pa.created (digitalCapture)" in read_provenance(captured).detail
    edited = sign(t1, chain, manifest([{"action": "c2pa.created", "digitalSourceType": CAPTURE}, {"action": "c2pa.cropped"}]))
    assert read_provenance(edited).kind == "c2pa-edited"
    composite = sign(t1, chain, manifest([{"action": "c2pa.created", "digitalSourceType": CAPTURE},
                                          {"action": "c2pa.edited", "digitalSourceType": COMPOSITE_AI}]))
    p = read_provenance(composite)
    assert p.kind == "c2pa-edited" and "c2pa.edited (compositeWithTrainedAlgorithmicMedia)" in p.detail, p
    # an edit (opened, colour-adjusted) of a generated image is still generated: the parent's manifest says so
    generated = sign(t1, chain, manifest(CREATED_BY_AI))
    child = sign(t1, chain, manifest([{"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
                                      {"action": "c2pa.color_adjustments"}], "Photo Editor"), parent=generated)
    p = read_provenance(child)
    assert p.kind == "c2pa-generated" and "parent trainedAlgorithmicMedia" in p.detail and "generator Photo Editor" in p.detail, p


def test_generator_settings_in_a_png_are_named_and_the_prompt_is_never_shown(astronaut):
    p = read_provenance(png_with_parameters(astronaut))
    assert p.kind == "generator-metadata", p
    assert "PNG text 'parameters' (AUTOMATIC1111-style settings" in p.detail and "model sd_xl_base_1.0" in p.detail
    assert "secret" not in p.detail and "portrait" not in p.detail and "blurry" not in p.detail
    # ComfyUI's chunks: the prompt graph (JSON) and the workflow; the checkpoint it loads is named
    from PIL import Image, PngImagePlugin

    graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux1-dev.safetensors"}},
             "6": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT}}}
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph))
    info.add_text("workflow", json.dumps({"nodes": [], "extra": PROMPT}))
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "PNG", pnginfo=info)
    p = read_provenance(buf.getvalue())
    assert p.kind == "generator-metadata" and "ComfyUI" in p.detail and "model flux1-dev.safetensors" in p.detail, p
    assert "secret" not in p.detail


def test_camera_exif_make_model_software_and_time(astronaut):
    p = read_provenance(jpeg_with_exif(astronaut))
    assert p == Provenance("camera-exif", "exif Canon EOS 5D Mark IV; software Firmware 1.0.4; taken 2021:03:04 12:30:00")
    p = read_provenance(jpeg_with_exif(astronaut, make="NIKON CORPORATION", model="NIKON D850", software=None))
    assert p.detail == "exif NIKON CORPORATION NIKON D850; taken 2021:03:04 12:30:00"


def test_xmp_digital_source_type_without_c2pa(astronaut):
    p = read_provenance(jpeg_with_xmp(astronaut, xmp_packet()))
    assert p == Provenance("label-generated", "xmp DigitalSourceType trainedAlgorithmicMedia; CreatorTool Example Image Service 3")
    # as an element with rdf:resource, in a PNG's iTXt chunk (compressed)
    from PIL import Image, PngImagePlugin

    element = f'<Iptc4xmpExt:DigitalSourceType rdf:resource="{COMPOSITE_AI}"/>'
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(None, None, element).decode(), zip=True)
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "PNG", pnginfo=info)
    assert read_provenance(buf.getvalue()) == Provenance("label-generated", "xmp DigitalSourceType compositeWithTrainedAlgorithmicMedia")
    # a capture label claims no generation: said, but no kind
    assert read_provenance(jpeg_with_xmp(astronaut, xmp_packet(CAPTURE, None))) == Provenance("none", "xmp DigitalSourceType digitalCapture")
    # a CreatorTool that names a generator, without a source type
    assert read_provenance(jpeg_with_xmp(astronaut, xmp_packet(None, "Adobe Firefly 3"))).kind == "generator-metadata"


def test_precedence_c2pa_then_label_then_generator_then_camera(chain, astronaut):
    exif_and_label = jpeg_with_xmp(astronaut, xmp_packet())
    from PIL import Image

    im = Image.open(io.BytesIO(jpeg_with_exif(astronaut)))
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=im.getexif(), xmp=xmp_packet(), quality=92)
    both = read_provenance(buf.getvalue())
    assert both.kind == "label-generated" and " | exif Canon EOS 5D Mark IV" in both.detail, both
    assert read_provenance(exif_and_label).kind == "label-generated"
    signed = read_provenance(sign(buf.getvalue(), chain, manifest([{"action": "c2pa.created", "digitalSourceType": CAPTURE}])))
    assert signed.kind == "c2pa-captured" and "| xmp DigitalSourceType trainedAlgorithmicMedia" in signed.detail, signed
    assert "| exif Canon" in signed.detail
    png = read_provenance(sign(png_with_parameters(astronaut), chain, manifest(CREATED_BY_AI), "image/png"))
    assert png.kind == "c2pa-generated" and "AUTOMATIC1111-style" in png.detail


class _Listener(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_remote_manifests_are_never_fetched(chain, t1_path):
    """A file may name a remote manifest (an address of its author's choosing): muflow reads offline."""
    import c2pa

    server = socketserver.TCPServer(("127.0.0.1", 0), _Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/manifest.c2pa"
        remote = sign(t1_path.read_bytes(), chain, manifest(CREATED_BY_AI), remote_url=url)
        p = read_provenance(remote)
        time.sleep(0.3)
        assert _Listener.hits == [] and p.kind == "none", (p, _Listener.hits)
        assert f"remote C2PA manifest at {url} not fetched" in p.detail, p.detail
        # positive control: the SDK's default settings do call the address, so it is muflow's setting that stops it
        with pytest.raises(c2pa.C2paError):
            c2pa.Reader("image/jpeg", io.BytesIO(remote))
        time.sleep(0.3)
        assert _Listener.hits == ["/manifest.c2pa"]
    finally:
        server.shutdown()
        server.server_close()


def test_hostile_bytes_never_raise_and_the_time_cap_holds(signed_t1):
    assert read_provenance(signed_t1, time_cap=0) == Provenance("none", "provenance: not read within the time cap of 0 s")
    late = read_provenance(signed_t1, time_cap=1e-4)  # the SDK's thread is given up (it takes milliseconds)
    assert late.kind == "none" and "not read within the time cap of 0.0001 s" in late.detail, late
    rng = random.Random(25)
    manifest_end = signed_t1.find(b"\xff\xdb")  # the manifest sits in APP11 segments before the quantisation tables
    started = time.perf_counter()
    for _ in range(60):  # bytes of the manifest store changed at random: whatever the SDK makes of them, a row
        b = bytearray(signed_t1)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(20, manifest_end)] = rng.randrange(256)
        p = read_provenance(bytes(b), time_cap=10)
        assert_one_clean_line(p)
        assert p.kind in ("c2pa-invalid", "c2pa-generated", "none"), p
    assert time.perf_counter() - started < 60
    for junk in (b"", b"c2pa", b"\xff\xd8\xff" + b"c2pa" * 1000, b"<x:xmpmeta" * 10, bytes(range(256)) * 100):
        assert_one_clean_line(read_provenance(junk))


@pytest.fixture(scope="module")
def evidence(tmp_path_factory, signed_t1, t1_path, astronaut) -> dict:
    """A folder of one file per kind: {name: expected kind}."""
    d = tmp_path_factory.mktemp("provenance") / "photos"
    d.mkdir()
    files = {"signed_t1.jpg": (signed_t1, "c2pa-generated"), "tampered_t1.jpg": (tamper(signed_t1), "c2pa-invalid"),
             "generated.png": (png_with_parameters(astronaut), "generator-metadata"),
             "camera.jpg": (jpeg_with_exif(astronaut), "camera-exif"),
             "labelled.jpg": (jpeg_with_xmp(astronaut[:, ::-1].copy(), xmp_packet()), "label-generated")}
    for name, (data, _) in files.items():
        (d / name).write_bytes(data)
    shutil.copy(t1_path, d / "plain_t1.jpg")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff junk")
    return {"folder": d, "kinds": {**{n: k for n, (_, k) in files.items()}, "plain_t1.jpg": "none", "broken.jpg": "none"}}


def test_scan_puts_provenance_beside_unchanged_verdicts(evidence, small_model, tmp_path):
    d, kinds = evidence["folder"], evidence["kinds"]
    on, off, html = tmp_path / "on.csv", tmp_path / "off.csv", tmp_path / "r.html"
    res = runner.invoke(app, ["scan", str(d), "--model", str(small_model), "--csv", str(on), "--html", str(html)])
    assert res.exit_code == 0, res.output
    assert "provenance: c2pa-generated" in res.output and "provenance: c2pa-invalid" in res.output
    assert "easy to strip and to forge" in res.output
    res = runner.invoke(app, ["scan", str(d), "--model", str(small_model), "--csv", str(off), "--no-provenance", "-q"])
    assert res.exit_code == 0, res.output
    a, b = pd.read_csv(on, keep_default_na=False), pd.read_csv(off, keep_default_na=False)
    cols = list(a.columns)
    assert cols.index("provenance") == cols.index("image_height") + 1 and cols.index("provenance_detail") == cols.index("provenance") + 1
    verdicts = ["file", "face", "status", "message", "score", "p_value", "verdict"]
    pd.testing.assert_frame_equal(a[verdicts], b[verdicts])  # evidence beside the verdict, never part of it
    assert (b["provenance"] == "").all() and (b["provenance_detail"] == "").all()
    a["name"] = a["file"].str.rsplit("/", n=1).str[-1]
    for name, kind in kinds.items():
        rows = a[a["name"] == name]
        assert set(rows["provenance"]) == {kind}, (name, rows[["provenance", "provenance_detail"]].to_dict("records"))
        assert rows["provenance_detail"].nunique() == 1  # a file-level column: the same on each of its rows
    assert (a.loc[a["name"].str.endswith("_t1.jpg"), "status"] == "ok").all()  # tampered or not, its six faces are scanned
    assert (a["name"] == "tampered_t1.jpg").sum() == 6
    text = html.read_text()
    assert "<b>Provenance</b>" in text and "c2pa-generated 1" in text and "c2pa-invalid 1" in text
    assert text.count("<div class='prov'>provenance: <b>") == 6  # a line under each image with faces
    assert "c2pa invalid (assertion.dataHash.mismatch)" in text


def test_video_provenance_on_every_row(chain, astronaut, small_model, tmp_path):
    """A clip written by OpenCV and signed as generated: its frames, tracks, summary and report say so."""
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 4, (256, 256))
    face = cv2.resize(astronaut[:, :, ::-1], (256, 256), interpolation=cv2.INTER_AREA)
    for k in range(8):
        writer.write(np.roll(face, 2 * k, axis=1))
    writer.release()
    d = tmp_path / "videos"
    d.mkdir()
    (d / "signed.mp4").write_bytes(sign(clip.read_bytes(), chain, manifest(CREATED_BY_AI), "video/mp4"))
    (d / "empty.mp4").write_bytes(b"")
    frames, tracks, html = tmp_path / "f.csv", tmp_path / "t.csv", tmp_path / "v.html"
    res = runner.invoke(app, ["video", str(d), "--model", str(small_model), "--fps", "2", "--csv", str(frames), "--tracks", str(tracks),
                              "--html", str(html)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    f, t = pd.read_csv(frames, keep_default_na=False), pd.read_csv(tracks, keep_default_na=False)
    for table in (f, t):
        signed = table[table["video"].str.endswith("signed.mp4")]
        assert len(signed) and set(signed["provenance"]) == {"c2pa-generated"}
        assert set(table.loc[table["video"].str.endswith("empty.mp4"), "provenance"]) == {"none"}
    assert (t.loc[t["video"].str.endswith("signed.mp4"), "status"] == "ok").all()
    assert "c2pa-generated" in res.output
    assert "provenance: <b>c2pa-generated</b>" in html.read_text()


def test_eval_reads_provenance_once_and_reports_it_per_source(evidence, small_model, tmp_path):
    d = evidence["folder"]
    reals, fakes = tmp_path / "reals", tmp_path / "fakes"
    reals.mkdir()
    fakes.mkdir()
    shutil.copy(d / "camera.jpg", reals)
    shutil.copy(d / "generated.png", fakes)
    shutil.copy(d / "labelled.jpg", fakes)
    out = tmp_path / "eval"
    res = runner.invoke(app, ["eval", "--real", str(reals), "--fake", f"gen={fakes}", "-o", str(out), "--model", str(small_model),
                              "--perturb", "flip", "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    for _, rows in scores.groupby("file"):
        assert rows["provenance"].nunique() == 1 and rows["perturbation"].nunique() == 2  # copied to the flipped rows
    doc = json.loads((out / "metrics.json").read_text())
    assert {(p["label"], p["source"]): p["files"] for p in doc["provenance"]} == {
        ("real", "reals"): {"camera-exif": 1}, ("fake", "gen"): {"label-generated": 1, "generator-metadata": 1}}
    assert "label-generated 1" in (out / "index.html").read_text()
    assert "provenance of the fake files of gen" in res.output


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open descriptors through /proc")
def test_a_path_that_is_no_regular_file_is_not_read_and_leaves_no_descriptor_open(tmp_path):
    """A folder or a FIFO named where a file was expected (a video's path, a listing's line) gets a note, and its
    descriptor is closed: Python's open() refuses a directory's descriptor and used to leave it open."""
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder").mkdir()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        for name in ("folder", "pipe"):
            assert read_provenance(tmp_path / name) == Provenance("none", "not read (not a regular file)")
    assert len(os.listdir("/proc/self/fd")) == before
