"""Benchmark 3b — fitting 1k, 10k and 100k faces: wall time per phase, per face, and peak memory.

    python scripts/default_data.py data/           # once: the registry's real faces
    python benchmarks/fit_scale.py                 # 1k and 10k faces, RAM cache and disk cache
    python benchmarks/fit_scale.py --runs 1000:disk 10000:disk 100000:disk --epochs 1   # 100k: > 1 h, ~50 GB of disk
    python benchmarks/fit_scale.py --runs 10000:disk:ram --epochs 1                     # the crops in RAM, as before 0.x
    python benchmarks/fit_scale.py --runs 1000:disk 10000:disk 100000:disk --epochs 1 --crop-size 128   # a quarter of the disk
    python benchmarks/fit_scale.py --smoke         # seconds: 24 faces from 8 photos made here, disk cache, small flows

The faces are augmented copies (mirror, shift of a few pixels, brightness +-8 %) of the aligned
crops of data/fit — fine for timing, meaningless as a model. They are written to a .npy file in
``--work`` (np.lib.format.open_memmap, a chunk at a time: 100k crops are 20 GB) before the timed run,
and the fit reads them from it as `muflow fit` reads the crops it collected (nn/row_store.py), never
all at once; ``FACES:CACHE:ram`` loads them into RAM first (the fit of an in-memory array).
``--crop-size 128`` fits 128-px crops (the crops resized, INTER_AREA) with `fit --crop-size 128`: a quarter of
the crops' and the feature cache's bytes, so 100k faces fit a smaller disk; compare sizes within one crop size.
Each run is a fresh process (so peak memory is its own); a sampler thread reads /proc/self/status
every 0.2 s for the peak resident memory, split into anonymous memory (the process's own arrays) and
file-backed pages (mapped files: libraries, and any memory map; the page cache that serves the crop
and feature files is the system's, not the process's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CROPS = Path("data/.cache/fit_crops_256.npy")


def real_crops(path: Path = CROPS, folder: Path = Path("data/fit")) -> np.ndarray:
    """The aligned crops of the faces under ``folder`` (the default data's fit set), computed once, kept as a plain .npy."""
    if path.is_file():
        return np.load(path, allow_pickle=False)
    from muflow_cli.pipelines.fit import FitConfig, collect_faces

    crops, _, _, _, _ = collect_faces([folder], FitConfig(), progress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, crops, allow_pickle=False)
    return crops


def augmented(base: np.ndarray, n: int, path: Path, chunk: int = 1000) -> Path:
    """``n`` augmented copies of ``base`` written to the .npy file ``path``, ``chunk`` at a time (never all in RAM)."""
    if path.is_file():
        head = np.load(path, mmap_mode="r")
        if head.shape == (n, *base.shape[1:]):
            return path  # made by an earlier run of this script
        del head
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path.with_suffix(".part.npy"), mode="w+", dtype=np.uint8, shape=(n, *base.shape[1:]))
    rng = np.random.default_rng(0)
    for s in range(0, n, chunk):
        block = np.empty((min(chunk, n - s), *base.shape[1:]), np.uint8)
        for k in range(len(block)):
            i = s + k
            c = base[i % len(base)]
            if (i // len(base)) % 2:
                c = c[:, ::-1]
            c = np.roll(c, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
            block[k] = np.clip(c * rng.uniform(0.92, 1.08), 0, 255).astype(np.uint8)
        out[s : s + len(block)] = block
    out.flush()
    del out
    path.with_suffix(".part.npy").replace(path)
    return path


class MemorySampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self.stop = threading.Event()

    def sample(self) -> dict[str, int]:
        now = {}
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key = line.split(":")[0]
                if key in self.peak:
                    now[key] = int(line.split()[1]) * 1024
        return now

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for k, v in self.sample().items():
                self.peak[k] = max(self.peak[k], v)


def faces_file(work: Path, n: int, crop: int = 256) -> Path:
    return work / (f"fit_scale_{n}.npy" if crop == 256 else f"fit_scale_{n}_{crop}px.npy")


def resized(base: np.ndarray, crop: int) -> np.ndarray:
    """The fit set's crops at ``crop`` px (as `fit --crop-size` would align them, up to resampling)."""
    if crop == base.shape[1]:
        return base
    import cv2

    return np.stack([cv2.resize(c, (crop, crop), interpolation=cv2.INTER_AREA) for c in base])


# The default model's features per training face (measured: 475 MiB for the 1,600 training faces of a 1k-face
# fit, 800 fit faces and one framed copy each): what a feature cache of n faces takes, on disk or in RAM.
FEATURE_BYTES = 304 * 1024


def room_warning(n: int, cache: str, work: Path, crop_bytes: int, crop: int = 256) -> str | None:
    """Why a run of ``n`` faces may fail hours in (a full disk, or a cache in RAM beyond the RAM); None: it fits."""
    import shutil

    from muflow_cli.nn.feature_cache import available_memory

    cache_bytes = int(n * 0.8 * 2 * FEATURE_BYTES * (crop / 256) ** 2)  # 80 % fitted, each with its framed copy
    crops = 0 if faces_file(work, n, crop).is_file() else n * crop_bytes
    free, ram = shutil.disk_usage(work).free, available_memory() or 0
    if cache == "memory" and cache_bytes > ram:
        return f"{n} faces: a feature cache of {cache_bytes / 2**30:.0f} GiB in RAM, {ram / 2**30:.0f} GiB available: use :disk"
    if crops + (cache_bytes if cache != "memory" else 0) > free:
        return (f"{n} faces: crops {crops / 2**30:.0f} GiB + feature cache {cache_bytes / 2**30:.0f} GiB on {work}, "
                f"{free / 2**30:.0f} GiB free: give --work a folder with more room")
    return None


def one(n: int, epochs: int, cache: str, work: Path, smoke: bool = False, in_ram: bool = False, crop: int = 256) -> dict:
    """One timed fit of the ``n`` augmented crops in ``work`` (made by main), read from disk or (``in_ram``) loaded first."""
    import torch

    from muflow_cli.nn.config import FlowConfig
    from muflow_cli.nn.row_store import RowStore
    from muflow_cli.pipelines.fit import FitConfig, fit_crops

    torch.set_num_threads(2)
    crops = np.load(faces_file(work, n, crop)) if in_ram else RowStore.open_npy(faces_file(work, n, crop))
    sampler = MemorySampler()
    before = sampler.sample()
    sampler.start()
    t0 = time.perf_counter()
    small = {"flow": FlowConfig(steps=2), "averages": 16} if smoke else {}  # --smoke: small flows, few averages
    config = FitConfig(epochs=epochs, cache=cache, cache_dir=work, crop_size=crop, **small)
    _, report = fit_crops(crops, None, config, progress=False)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    return {
        "faces": n, "crop": crop, "fit_faces": report.fit_faces, "training_faces": report.training_faces, "epochs": epochs,
        "cache": report.cache["where"], "cache_mib": report.cache["bytes"] / 2**20, "wall_s": wall, "seconds": report.seconds,
        "crops": "RAM" if in_ram else "disk", "crops_mib": crops.nbytes / 2**20, "rss_before_mib": before["VmRSS"] / 2**20,
        "peak_mib": {k: v / 2**20 for k, v in sampler.peak.items()},
    }


def collect_speed(folder: Path) -> None:
    """Face collection of `muflow fit`: the worker pool vs one detector using every core (0.1's way)."""
    from muflow_cli.faces.detect import FaceDetector
    from muflow_cli.faces.options import FaceFinding
    from muflow_cli.faces.stage import faces_in_file
    from muflow_cli.inputs.images import iter_image_files
    from muflow_cli.pipelines.fit import FitConfig, collect_faces

    files = list(iter_image_files([folder]))
    t0 = time.perf_counter()
    fd = FaceDetector()
    n_seq = sum(len(r.faces or []) for r in (faces_in_file(p, fd, FaceFinding()) for p in files))
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    crops, _, _, _, _ = collect_faces([folder], FitConfig(min_face_px=0), progress=False)
    t_pool = time.perf_counter() - t0
    print(f"| {len(files)} files, {n_seq} / {len(crops)} faces | one detector, all cores {t_seq:.1f} s | worker pool {t_pool:.1f} s | {t_seq / t_pool:.2f}x |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=["1000:memory", "10000:memory", "10000:disk"],
                    help="FACES:CACHE[:ram] (ram: the crops loaded into RAM before the fit, not read from disk)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--crop-size", type=int, default=256, help="crop side of the fit (128: a quarter of the disk)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--collect", type=Path, help="only time the face collection of FOLDER (pool vs one detector)")
    ap.add_argument("--crops", type=Path, default=CROPS, help="where the fit set's aligned crops are kept (made once from data/fit)")
    ap.add_argument("--work", type=Path, default=CROPS.parent,
                    help="folder for the augmented crops (FACES x 196 KiB, kept for the next run) and an on-disk feature cache")
    ap.add_argument("--json", type=Path, help="also append each run's measurements to this file, a JSON line each")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: 8 photos made from t1.jpg and the astronaut "
                    "instead of data/fit, one run 24:disk of 1 epoch with 2 flow steps, and --collect on them (numbers meaningless)")
    args = ap.parse_args()
    folder = Path("data/fit")
    if args.smoke and not args.one:
        from _smoke import photos, workdir

        work = workdir("fit_scale")
        folder, args.crops, args.runs, args.epochs, args.work = work / "fit", work / "crops.npy", ["24:disk"], 1, work
        photos(folder, 8)
        collect_speed(folder)
    if args.collect:
        collect_speed(args.collect)
        return 0
    if args.one:
        n, cache, *where = args.one.split(":")
        print(json.dumps(one(int(n), args.epochs, cache, args.work, args.smoke, where == ["ram"], args.crop_size)))
        return 0
    base = resized(real_crops(args.crops, folder), args.crop_size)  # detect once, outside the timed runs
    print(f"{args.crop_size}-px crops; load average {os.getloadavg()[0]:.1f} at the start\n")
    print("| faces (fit) | crops | cache | epochs | averages (s) | features (s) | training (s) | per epoch (s) | calibration (s) "
          "| strata (s) | wall (s) | wall per face (ms) | features / training per face (ms) | crops (MiB) | cache (MiB) "
          "| peak RSS (MiB) | of which anonymous / file-backed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    args.work.mkdir(parents=True, exist_ok=True)
    for run in args.runs:
        n, cache = int(run.split(":")[0]), run.split(":")[1]
        warning = room_warning(n, cache, args.work, base[0].nbytes, args.crop_size)
        if warning:
            print(f"not run: {warning}", flush=True)
            return 1
        augmented(base, n, faces_file(args.work, n, args.crop_size))  # outside the timed run
        out = subprocess.run([sys.executable, __file__, "--one", run, "--epochs", str(args.epochs), "--work", str(args.work),
                              "--crop-size", str(args.crop_size),
                              *(["--smoke"] if args.smoke else [])], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:])
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(r) + "\n")
        s, p, n = r["seconds"], r["peak_mib"], r["faces"]
        ms = 1000 / n
        print(f"| {n} ({r['fit_faces']}) | {r['crops']} | {r['cache']} | {r['epochs']} | {s['averages']:.0f} | {s['features']:.0f} | "
              f"{s['training']:.0f} | {s['training'] / r['epochs']:.0f} | {s['calibration']:.0f} | {s.get('strata', 0):.0f} | "
              f"{r['wall_s']:.0f} | {r['wall_s'] * ms:.1f} | {s['features'] * ms:.1f} / {s['training'] * ms / r['epochs']:.1f} | "
              f"{r['crops_mib']:.0f} | {r['cache_mib']:.0f} | {p['VmRSS']:.0f} | {p['RssAnon']:.0f} / {p['RssFile']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
