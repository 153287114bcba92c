"""`muflow scan --ray`: the table a local scan writes, from a Ray Data pipeline on a local 2-CPU cluster.

One cluster for the whole module (starting one takes ~10 s); tiny data and the 128-px ``small_model``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="Ray Data is an optional extra: pip install -e '.[ray]' (the test extra pulls it)")
pytest.importorskip("ray.data", reason="Ray Data is an optional extra: pip install -e '.[ray]'")

from corpus import make_corpus  # noqa: E402

from muflow_cli.cli import app  # noqa: E402
from muflow_cli.errors import UsageError  # noqa: E402
from muflow_cli.model.deepfake_model import DeepfakeModel  # noqa: E402
from muflow_cli.pipelines.journal import ResumeError  # noqa: E402
from muflow_cli.pipelines.ray import driver, parts, stages, storage  # noqa: E402
from muflow_cli.pipelines.ray import plan as ray_plan  # noqa: E402
from muflow_cli.pipelines.scan import ScanConfig, scan  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster with 2 CPUs; its workers import this checkout's muflow_cli."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory, real_folder) -> Path:
    root = tmp_path_factory.mktemp("ray") / "photos"
    shutil.copytree(real_folder, root)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "notes.png").write_text("not an image")
    (root / "empty.jpg").write_bytes(b"")
    return root  # 14 files, 36 faces


@pytest.fixture(scope="module")
def model(small_model) -> DeepfakeModel:
    return DeepfakeModel.load(small_model)


def local_table(paths: list[Path], model: DeepfakeModel, tmp: Path) -> pd.DataFrame:
    """What a user reads back from a local scan's --parquet file."""
    out = tmp / "local.parquet"
    scan(paths, model, ScanConfig(batch_size=4), progress=False).to_parquet(out, index=False)
    return pd.read_parquet(out)


def assert_same_table(ray_df: pd.DataFrame, local_df: pd.DataFrame) -> None:
    """Same rows, columns, dtypes, statuses and messages; scores within 1e-5."""
    assert list(ray_df.columns) == list(local_df.columns)
    assert (ray_df.dtypes == local_df.dtypes).all(), pd.concat([ray_df.dtypes, local_df.dtypes], axis=1)
    exact = ["file", "face", "status", "message", "image_width", "image_height", "landmarks", "verdict"]
    pd.testing.assert_frame_equal(ray_df[exact], local_df[exact])
    pd.testing.assert_frame_equal(ray_df, local_df, check_exact=False, rtol=1e-5, atol=1e-5)


def test_cli_ray_table_equals_the_local_scan(cluster, photos, small_model, model, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photos}\n\n")  # --files-from: a folder named on a line is walked, blank lines skipped
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["scan", "--files-from", str(listing), "--model", str(small_model), "--ray", "local",
                                   "--parquet", str(out), "--chunk-files", "4", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    assert "faces" in res.output and "36" in res.output  # muflow's summary: 36 faces
    parts = sorted(out.iterdir())
    assert [p.name[:13] for p in parts] == [f"part-{i:08d}" for i in range(4)]  # 14 files in parts of 4
    ray_df = pd.read_parquet(out)
    assert_same_table(ray_df, local_table([photos], model, tmp_path))
    assert set(ray_df.loc[ray_df["file"].str.endswith("empty.jpg"), "message"]) == {"empty file"}
    # the domain check reads the p-values back from the parts: the same faces as the table
    np.testing.assert_array_equal(np.sort(driver.read_p_values(str(out))), np.sort(ray_df["p_value"].dropna().to_numpy(float)))


def test_bad_input_corpus_gives_the_local_statuses(cluster, astronaut, small_model, model, tmp_path):
    root = tmp_path / "drive"
    make_corpus(root, astronaut)
    driver.ray_scan([str(root)], str(tmp_path / "out"), str(small_model), ScanConfig(chunk_files=8, batch_size=4),
                      progress=False, model=model)
    assert_same_table(pd.read_parquet(tmp_path / "out"), local_table([root], model, tmp_path))


def test_provenance_crosses_the_stages_into_the_parts_and_the_counts(cluster, astronaut, t1_path, small_model, model, tmp_path):
    """Separate face-finding and scoring actors (the GPU plan): each file's provenance travels with its faces."""
    from provenance_files import TRAINED, jpeg_with_exif, make_signing_chain, manifest, png_with_parameters, sign, tamper

    root = tmp_path / "evidence"
    root.mkdir()
    signed = sign(t1_path.read_bytes(), make_signing_chain(), manifest([{"action": "c2pa.created", "digitalSourceType": TRAINED}]))
    for name, data in (("a_signed.jpg", signed), ("b_tampered.jpg", tamper(signed)), ("c_settings.png", png_with_parameters(astronaut)),
                       ("d_camera.jpg", jpeg_with_exif(astronaut)), ("e_broken.jpg", b"\xff\xd8 junk")):
        (root / name).write_bytes(data)
    result = driver.ray_scan([str(root)], str(tmp_path / "out"), str(small_model), ScanConfig(chunk_files=2, batch_size=4),
                             progress=False, model=model, face_actors=1, scorers=1)
    assert not result.plan.fused
    table = pd.read_parquet(tmp_path / "out")
    assert_same_table(table, local_table([root], model, tmp_path))
    first = table.drop_duplicates("file")
    assert dict(zip(first["file"].str.rsplit("/", n=1).str[-1], first["provenance"])) == {
        "a_signed.jpg": "c2pa-generated", "b_tampered.jpg": "c2pa-invalid", "c_settings.png": "generator-metadata",
        "d_camera.jpg": "camera-exif", "e_broken.jpg": "none"}
    assert result.counts["provenance"] == {"c2pa-invalid": 1, "c2pa-generated": 1, "generator-metadata": 1, "camera-exif": 1, "none": 1}


def test_empty_input_is_an_empty_table_with_the_schema(cluster, small_model, model, tmp_path):
    (tmp_path / "none").mkdir()
    result = driver.ray_scan([str(tmp_path / "none")], str(tmp_path / "out"), str(small_model), ScanConfig(chunk_files=4),
                               progress=False, model=model)
    assert result.counts["files"] == 0 and result.parts == 1
    assert_same_table(pd.read_parquet(tmp_path / "out"), local_table([tmp_path / "none"], model, tmp_path))


def _worker_pids(title: str) -> list[int]:
    """Ray worker processes whose title names ``title`` (Ray titles an actor's process ray::MapWorker(...))."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and title.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


# Which actors to kill in each plan: (process title to find, key), each killed once; the face-finding
# actors while they work on a part, the reader as soon as it exists (the 14 tiny parts are read within
# moments), the scoring and writing actors once some parts are written and others are not.
KILLS = {
    "split": [("MapBatches(FindFaces)).submit", "faces"), ("MapBatches(ScoreParts))", "score")],
    "fused": [("MapBatches(ScanParts)).submit", "scan"), ("MapBatches(ReadParts))", "read"), ("MapBatches(WriteParts))", "write")],
}


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the actor's process through /proc")
@pytest.mark.parametrize("plan", ["split", "fused"])
def test_killed_actors_are_restarted_and_no_file_is_lost_or_doubled(cluster, photos, small_model, model, tmp_path, plan):
    out = tmp_path / "out"
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = driver.ray_scan([str(photos)], str(out), str(small_model), ScanConfig(chunk_files=1, batch_size=4),
                                              progress=False, model=model, face_actors=1, scorers=1 if plan == "split" else 0)
        except BaseException as exc:  # reported below
            box["error"] = exc

    job = threading.Thread(target=run)
    job.start()
    killed: dict[str, int] = {}
    deadline = time.time() + 300
    while job.is_alive() and time.time() < deadline and len(killed) < len(KILLS[plan]):
        written = out.is_dir() and any(p.name.startswith("part-") for p in out.iterdir())
        for title, key in KILLS[plan]:
            pids = _worker_pids(title)
            if pids and key not in killed and (key in ("faces", "scan", "read") or written):
                killed[key] = pids[0]
                os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.02)
    job.join(300)
    assert "error" not in box, box.get("error")
    assert set(killed) == {k for _, k in KILLS[plan]}, f"the job finished before every actor could be killed: {killed}"
    assert box["result"].parts == 14 and box["result"].plan.fused == (plan == "fused")
    assert len(list(out.iterdir())) == 14
    assert_same_table(pd.read_parquet(out), local_table([photos], model, tmp_path))  # every row once, none lost


def test_killed_scan_resumes_to_the_same_table(cluster, photos, small_model, model, tmp_path):
    """SIGKILL the driver (another process, joined to the cluster by address) once parts are written;
    --resume keeps them, redoes the rest and a file touched since, and gives the uninterrupted table."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "muflow_cli", "scan", str(photos), "--model", str(small_model), "--ray", cluster,
           "--parquet", str(out), "--chunk-files", "2", "--batch-size", "4", "-q"]
    env = {**os.environ, "PYTHONPATH": os.environ["PYTHONPATH"]}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if out.is_dir() and sum(p.name.startswith("part-") for p in out.iterdir()) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "the scan finished before it could be killed"
    kept = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name.startswith("part-")}
    assert 2 <= len(kept) < 7
    (out / ".part-00000009-0.parquet.1234.tmp").write_bytes(b"half a part")  # a write cut short
    first = min(kept)  # a kept part: one of its files changes, so it must be scanned again
    index = int(first[len("part-"):][:8])
    touched = storage.list_files([str(photos)])[2 * index][0]
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))
    res = CliRunner().invoke(app, cmd[3:] + ["--resume"])
    assert res.exit_code == 0, res.output
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert len(after) == 7 and not any(n.startswith(".") for n in after)
    assert all(after[n] == t for n, t in kept.items() if n != first)  # kept parts were not rewritten
    assert after[first] != kept[first]  # the touched file's part was redone
    assert_same_table(pd.read_parquet(out), local_table([photos], model, tmp_path))
    meta = parts.part_metadata(*storage.filesystem(str(out / first)))
    assert meta["part"] == index and meta["counts"]["files"] == 2 and len(meta["files"]) == 2


def test_resume_refuses_other_settings_and_a_folder_of_other_files(cluster, photos, small_model, model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.parquet").write_bytes(b"x")
    with pytest.raises(UsageError, match="not a muflow part"):
        driver.ray_scan([str(photos)], str(out), str(small_model), ScanConfig(chunk_files=8), progress=False, model=model)
    (out / "mine.parquet").unlink()
    made = parts.make_parts([("a", "a")], 8, "settings-a")
    path = out / made[0].name
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = {"format": parts.FORMAT, "part": 0, "settings": "other", "counts": {}, "files": []}
    pq.write_table(pa.table({"x": [1]}).replace_schema_metadata({parts.META_KEY: json.dumps(meta).encode()}), path)
    with pytest.raises(ResumeError, match="other settings"):
        driver.ray_scan([str(photos)], str(out), str(small_model), ScanConfig(chunk_files=8), resume=True, progress=False, model=model)


def test_plan_gives_gpus_to_scoring_and_cpus_to_actors_that_do_both():
    cpu = ray_plan.plan(2, 0)  # no GPU: one actor per CPU finds and scores faces
    assert cpu.fused and (cpu.face_actors, cpu.face_cpus, cpu.scorers, cpu.score_gpus) == (2, 1.0, 0, 0.0)
    shared = ray_plan.plan(2, 0, face_actors=4)
    assert shared.fused and shared.face_actors * shared.face_cpus == 2
    split = ray_plan.plan(2, 0, scorers=1)  # asked for: separate scoring actors, as on GPU nodes
    assert not split.fused and (split.face_actors, split.face_cpus, split.scorers, split.score_cpus) == (1, 1.0, 1, 1.0)
    gpu = ray_plan.plan(16, 1)
    assert not gpu.fused and (gpu.face_actors, gpu.scorers, gpu.score_gpus) == (15, 1, 1.0)
    assert ray_plan.plan(16, 1, device="cpu").fused
    big = ray_plan.plan(64, 0)
    assert big.fused and (big.face_actors, big.face_cpus) == (64, 1.0)
    assert "finding and scoring" in big.describe() and "GPU" in gpu.describe()


def test_device_cuda_on_a_cluster_without_gpus_is_refused(cluster, photos, small_model, model, tmp_path):
    with pytest.raises(driver.RayScanError, match="no GPU"):
        driver.ray_scan([str(photos)], str(tmp_path / "out"), str(small_model), ScanConfig(chunk_files=8),
                          device="cuda", progress=False, model=model)


def test_uris_are_listed_and_read_through_pyarrow_fs(tmp_path, astronaut, monkeypatch):
    """file:// stands in for s3:// and gs:// (the same pyarrow.fs calls); bad files get the local statuses."""
    import pyarrow as pa
    from conftest import write_rgb

    from muflow_cli.faces.options import FaceFinding

    write_rgb(tmp_path / "b" / "face.jpg", astronaut)
    (tmp_path / "b" / "empty.png").write_bytes(b"")
    (tmp_path / "b" / "notes.txt").write_text("not listed: no image suffix")
    uri = f"file://{tmp_path}/"
    files = storage.list_files([uri], [f"file://{tmp_path}/missing.jpg"])
    assert files == [(f"file://{tmp_path}/b/empty.png",) * 2, (f"file://{tmp_path}/b/face.jpg",) * 2,
                     (f"file://{tmp_path}/missing.jpg",) * 2]
    (empty, _, ident), (face, _, _), (none, error, _) = [storage.read_one(p, n) for p, n in files]
    assert empty == b"" and ident[1] == 0 and face == (tmp_path / "b" / "face.jpg").read_bytes()
    assert none is None and error == storage.ReadFailure("unreadable", "file not found")
    finder = stages.FindFaces.__new__(stages.FindFaces)  # no detector needed for files that fail to decode
    finder._setup(None, FaceFinding(), 128, 1.5, 2.0)
    res = finder._one(files[0][0], files[0][1], empty, None)
    assert (res.status, res.message, res.provenance.kind) == ("unreadable", "empty file", "none")
    # a read failure crosses the stages as (status, message) columns, and becomes the file's row as it is
    monkeypatch.setattr(storage, "MAX_FILE_BYTES", 10)
    row = parts.Part(0, [p for p, _ in files], [n for _, n in files], "d").row()
    read = stages.ReadParts(threads=2)(pa.Table.from_pylist([row], schema=parts.PART_ROW_SCHEMA)).to_pylist()[0]
    assert read["error_status"] == [None, "too_large", "unreadable"]
    found = finder.find(read)
    size = (tmp_path / "b" / "face.jpg").stat().st_size
    assert [(r.status, r.message) for r in found] == [
        ("unreadable", "empty file"), ("too_large", f"file of {size:,} bytes is above the limit of 10"),
        ("unreadable", "file not found")]


def test_face_results_travel_between_stages_without_pickle(t1_path, face_detector):
    """FindFaces hands ScoreParts safetensors bytes (muflow unpickles nothing, its own data included)."""
    from muflow_cli.faces.face import FileFaces
    from muflow_cli.faces.options import FaceFinding
    from muflow_cli.faces.stage import faces_in_file
    from muflow_cli.inputs.provenance import Provenance
    from muflow_cli.pipelines.ray.packing import pack_faces, unpack_faces

    results = [faces_in_file(t1_path, face_detector, FaceFinding(), 128, 1.5, provenance=2.0), FileFaces("x.jpg", "unreadable", "empty file"),
               FileFaces("y.png", "no_face", "no face found", [], (10, 20), provenance=Provenance("c2pa-invalid", "c2pa invalid (x)"))]
    back = unpack_faces(pack_faces(results))
    assert [r.provenance for r in back] == [Provenance("none", ""), None, Provenance("c2pa-invalid", "c2pa invalid (x)")]
    for a, b in zip(results, back):
        assert (a.status, a.message, a.image_size, a.faces is None) == (b.status, b.message, b.image_size, b.faces is None)
        for fa, fb in zip(a.faces or [], b.faces or []):
            assert np.array_equal(fa.crop, fb.crop) and np.array_equal(fa.landmarks, fb.landmarks)
            assert np.array_equal(fa.box, fb.box) and (fa.det_score, fa.scale) == (fb.det_score, fb.scale)
    assert len(back[0].faces) == 6


def test_fit_ray_collects_the_crops_a_local_fit_collects(cluster, photos, tmp_path, monkeypatch):
    """``fit --ray``'s face collection (pipelines/ray/collect.py) gives the local collection's crops and masks byte
    for byte, in the same order, with the same files, groups, order and skips (the photos' three bad files), over
    parts returned out of order by nobody: five parts of three files on two actors."""
    from conftest import fast_fit_config

    from muflow_cli.pipelines.fit import gather_faces
    from muflow_cli.pipelines.ray import collect

    monkeypatch.setattr(collect, "FIT_PART_FILES", 3)
    config = fast_fit_config()
    local = gather_faces([photos], config, False, tmp_path)
    on_ray = gather_faces([photos], config, False, "temporary", collect.RayCollection())
    assert ray.is_initialized()  # the test's cluster was already connected: it is left as it was
    assert len(on_ray.crops) == len(local.crops) == 36
    assert np.array_equal(on_ray.crops[:], local.crops[:]) and np.array_equal(on_ray.valid[:], local.valid[:])
    assert on_ray.sources == local.sources and on_ray.files == local.files == 14
    assert on_ray.skipped == local.skipped and sum(on_ray.skipped.values()) >= 3
    assert np.array_equal(on_ray.groups, local.groups) and np.array_equal(on_ray.order, local.order)
    local.close()
    on_ray.close()


def test_cli_fit_ray_writes_the_model_a_local_fit_writes(cluster, photos, tmp_path):
    """``muflow fit --ray local``: the same crops, so the same model, tensor for tensor (fits are deterministic)."""
    from conftest import FAST_FIT
    from safetensors.numpy import load_file

    models = {}
    for name, extra in (("local", []), ("ray", ["--ray", "local", "--ray-actors", "2"])):
        res = CliRunner().invoke(app, ["fit", str(photos), "-o", str(tmp_path / f"{name}.muflow"), "--no-strata", *FAST_FIT, *extra])
        assert res.exit_code == 0, res.output
        models[name] = load_file(str(tmp_path / f"{name}.muflow" / "model.safetensors"))
    assert models["ray"].keys() == models["local"].keys()
    for key, value in models["local"].items():
        assert np.array_equal(models["ray"][key], value), key
