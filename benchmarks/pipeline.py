"""Benchmark 2 — the scan pipeline: where the time goes, each stage alone, and the whole scan.

    python scripts/default_data.py data/       # once: the registry photos
    python benchmarks/pipeline.py              # makes data/pipeline_1k (1,000 resized copies) once
    python benchmarks/pipeline.py --smoke      # seconds: 6 copies of photos made from t1.jpg and the astronaut, 1 worker

1. Stage shares: one thread, every stage timed on its own over a sample of the files —
   decode (read_image), detection (SCRFD), alignment (similarity warp), scoring (backbone + flows
   + Gaussian, the default engine) and writing (table + CSV).
2. Each stage alone on the whole machine, as `muflow scan` runs it: decode + detect + align on the
   scan's worker pool; scoring of all the faces in batches of 8.
3. End to end: `muflow_cli.scan.scan` + CSV, the way the CLI runs it (detection of the next chunk
   overlapping scoring of this one), for several worker counts, and a sequential baseline (detect a
   chunk, then score it, one detector using every core: muflow 0.1's schedule).
   Reported: images/s, faces/s, and end-to-end time as a share of the slowest stage's standalone
   time (issue #6's target: >= 85 %).
4. The same with one core per stage (one detection worker, one scoring thread): on two cores
   this is the setting where the stages do not compete, so it shows what the overlap costs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pandas as pd
import torch

from muflow_cli.faces.align import align
from muflow_cli.faces.options import FaceFinding
from muflow_cli.faces.stage import FaceStage, default_workers, faces_in_file
from muflow_cli.inputs.images import iter_image_files, read_image
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.outputs.tables import write_table
from muflow_cli.pipelines.scan import ScanConfig, scan

SOURCES = ["data/fit/dlib_photos", "data/fit/pyfeat_photos", "data/heldout"]
LONG_SIDES = (480, 800, 1280, 1920)


def smoke_sources() -> Path:
    """--smoke's stand-in for SOURCES (the registry photos): four photos made from t1.jpg and the astronaut, in a
    temporary folder; SOURCES points there from then on."""
    global SOURCES
    from _smoke import photos, t1_rgb, workdir, write

    src = workdir("photos")
    photos(src, 3)
    write(src / "t1.jpg", t1_rgb())
    SOURCES = [str(src)]
    return src


def make_photos(out: Path, n: int) -> list[Path]:
    """``n`` JPEG copies of the registry photos, cycling through long sides of 480-1920 px."""
    out.mkdir(parents=True, exist_ok=True)
    have = sorted(out.glob("*.jpg"))
    if len(have) >= n:
        return have[:n]
    src = [read_image(p) for p in iter_image_files([Path(s) for s in SOURCES])]
    for i in range(n):
        rgb = src[i % len(src)]
        side = LONG_SIDES[(i // len(src)) % len(LONG_SIDES)]
        f = side / max(rgb.shape[:2])
        im = cv2.resize(rgb, (round(rgb.shape[1] * f), round(rgb.shape[0] * f)), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
        cv2.imwrite(str(out / f"photo_{i:05d}.jpg"), im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return sorted(out.glob("*.jpg"))[:n]


def stage_shares(det: DeepfakeModel, files: list[Path]) -> dict[str, float]:
    """Seconds per stage, one thread each, over ``files``."""
    fd = det.card.face_detector.factory(FaceFinding())()
    t = dict.fromkeys(["decode", "detection", "alignment", "scoring", "writing"], 0.0)
    crops, rows = [], []
    for p in files:
        t0 = time.perf_counter()
        rgb = read_image(p)
        t1 = time.perf_counter()
        faces = fd.detect(rgb)
        t2 = time.perf_counter()
        for f in faces:
            crops.append(align(rgb, f.landmarks, det.crop_size, det.context)[0])
            rows.append({"file": str(p), "face": len(rows), "status": "ok", "message": ""})
        t3 = time.perf_counter()
        t["decode"] += t1 - t0
        t["detection"] += t2 - t1
        t["alignment"] += t3 - t2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the scoring graph takes its thread count from torch's when it is built
    try:
        one = DeepfakeModel.load()
        one.score(np.stack(crops[:2]), batch_size=8)  # build it outside the timing
        t0 = time.perf_counter()
        out = one.score(np.stack(crops), batch_size=8)
        t["scoring"] = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    for r, s in zip(rows, out["score"]):
        r["score"] = float(s)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_table(pd.DataFrame(rows), Path(tmp) / "t.csv", "csv")
        t["writing"] = time.perf_counter() - t0
    return t


def timed_scan(det: DeepfakeModel, folder: Path, config: ScanConfig) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        df = scan([folder], det, config, progress=False)
        write_table(df, Path(tmp) / "scan.csv", "csv")
        return time.perf_counter() - t0, int((df["status"] == "ok").sum())


def sequential_scan(det: DeepfakeModel, files: list[Path], chunk: int) -> float:
    """muflow 0.1's schedule: detect a chunk (one detector, every core), then score it."""
    fd = det.card.face_detector.factory(FaceFinding(), threads=0)()
    t0 = time.perf_counter()
    for i in range(0, len(files), chunk):
        crops = [f.crop for p in files[i : i + chunk] for f in (faces_in_file(p, fd, FaceFinding(), det.crop_size, det.context).faces or [])]
        if crops:
            det.score(np.stack(crops), batch_size=8)
    return time.perf_counter() - t0


def stages_alone(det: DeepfakeModel, files: list[Path], workers: int) -> tuple[float, float, int]:
    """Seconds for decode + detect + align of ``files`` on the scan's worker pool, seconds to score
    all their faces (batch 8), and the number of faces."""
    with FaceStage(FaceFinding(), det.card.face_detector.factory(FaceFinding()), det.crop_size, det.context, workers=workers) as stage:
        t0 = time.perf_counter()
        results = [f.result() for f in stage.submit(files)]
        t_faces = time.perf_counter() - t0
    crops = np.stack([f.crop for r in results if r.status == "ok" for f in r.faces])
    del results
    t0 = time.perf_counter()
    det.score(crops, batch_size=8)
    return t_faces, time.perf_counter() - t0, len(crops)


def one_core_each(folder: Path, files: list[Path]) -> None:
    """Detection on one single-threaded worker, scoring on one thread: does the overlap itself cost anything?"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the scoring graph takes its thread count from torch's when it is built
    try:
        det = DeepfakeModel.load()
        det.score(np.zeros((1, det.crop_size, det.crop_size, 3), np.uint8))
        config = ScanConfig(batch_size=8, workers=1)
        t_faces, t_score, n_faces = stages_alone(det, files, config.workers)
        t, _ = timed_scan(det, folder, config)
    finally:
        torch.set_num_threads(threads)
    slow = max(t_faces, t_score)
    print("\none core per stage (1 detection worker, 1 scoring thread):\n")
    print("| run | seconds | rate | slowest stage alone / end to end |\n|---|---|---|---|")
    print(f"| decode + detect + align alone | {t_faces:.1f} | {len(files) / t_faces:.1f} images/s | |")
    print(f"| scoring alone | {t_score:.1f} | {n_faces / t_score:.1f} faces/s | |")
    print(f"| scan end to end | {t:.1f} | {len(files) / t:.1f} images/s | {100 * slow / t:.0f} % |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=Path("data/pipeline_1k"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=100, help="files for the one-thread stage shares")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--only-one-core-each", action="store_true", help="run only the one-core-per-stage comparison")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: 6 copies of 4 photos made from t1.jpg and "
                    "the astronaut in a temporary --folder, 3 for the stage shares, 1 worker (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        from _smoke import workdir

        smoke_sources()
        args.folder = workdir("pipeline")
        args.n, args.sample, args.workers = 6, 3, [1]
    files = make_photos(args.folder, args.n)
    if args.only_one_core_each:
        one_core_each(args.folder, files)
        return 0
    det = DeepfakeModel.load()
    cores = len(os.sched_getaffinity(0))
    print(f"{len(files)} photos in {args.folder}; {cores} cores; onnxruntime {ort.__version__}; scoring engine {det.engine.name}\n")

    shares = stage_shares(det, files[: args.sample])
    total = sum(shares.values())
    print(f"stage shares, one thread, {args.sample} files:\n")
    print("| stage | seconds | share |\n|---|---|---|")
    for k, v in shares.items():
        print(f"| {k} | {v:.2f} | {100 * v / total:.1f} % |")

    config = ScanConfig(batch_size=8)
    t_faces, t_score, n_faces = stages_alone(det, files, config.workers)
    slow = max(t_faces, t_score)
    print(f"\nstages alone, whole machine ({config.workers or default_workers()} detection workers; scoring {det.engine.name}, batch 8; {n_faces} faces):\n")
    print("| stage | seconds | rate |\n|---|---|---|")
    print(f"| decode + detect + align | {t_faces:.1f} | {len(files) / t_faces:.1f} images/s |")
    print(f"| scoring | {t_score:.1f} | {n_faces / t_score:.1f} faces/s |")

    print("\nend to end (scan + CSV):\n")
    print("| schedule | seconds | images/s | faces/s | slowest stage alone / end to end |\n|---|---|---|---|---|")
    t_seq = sequential_scan(det, files, config.chunk_files)
    print(f"| sequential (0.1) | {t_seq:.1f} | {len(files) / t_seq:.1f} | {n_faces / t_seq:.1f} | {100 * slow / t_seq:.0f} % |", flush=True)
    for w in args.workers:
        t, faces = timed_scan(det, args.folder, ScanConfig(batch_size=8, workers=w))
        mark = " (default)" if w == default_workers() else ""
        print(f"| overlapped, {w} workers{mark} | {t:.1f} | {len(files) / t:.1f} | {faces / t:.1f} | {100 * slow / t:.0f} % |", flush=True)
    one_core_each(args.folder, files)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
