"""Benchmark 3b — fitting 1k and 10k faces: wall time per phase and peak memory.

    python scripts/default_data.py data/           # once: the registry's real faces
    python benchmarks/fit_scale.py                 # 1k and 10k faces, RAM cache and disk cache
    python benchmarks/fit_scale.py --smoke         # seconds: 24 faces from 8 photos made here, disk cache, small flows

The faces are augmented copies (mirror, shift of a few pixels, brightness +-8 %) of the aligned
crops of data/fit — fine for timing, meaningless as a model. Each run is a fresh process (so peak
memory is its own); a sampler thread reads /proc/self/status every 0.2 s for the peak resident
memory, split into anonymous memory (the process's own arrays) and file-backed pages (the
memory-mapped cache, which the kernel can write back and drop under pressure).
"""

from __future__ import annotations

import argparse
import json
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


def augmented(base: np.ndarray, n: int) -> np.ndarray:
    out = np.empty((n, *base.shape[1:]), np.uint8)
    rng = np.random.default_rng(0)
    for i in range(n):
        c = base[i % len(base)]
        if (i // len(base)) % 2:
            c = c[:, ::-1]
        c = np.roll(c, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
        out[i] = np.clip(c * rng.uniform(0.92, 1.08), 0, 255).astype(np.uint8)
    return out


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


def one(n: int, epochs: int, cache: str, crops_path: Path = CROPS, smoke: bool = False) -> dict:
    import torch

    from muflow_cli.nn.config import FlowConfig
    from muflow_cli.pipelines.fit import FitConfig, fit_crops

    torch.set_num_threads(2)
    crops = augmented(real_crops(crops_path), n)
    sampler = MemorySampler()
    before = sampler.sample()
    sampler.start()
    t0 = time.perf_counter()
    small = {"flow": FlowConfig(steps=2), "averages": 16} if smoke else {}  # --smoke: small flows, few averages
    _, report = fit_crops(crops, None, FitConfig(epochs=epochs, cache=cache, **small), progress=False)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    return {
        "faces": n, "fit_faces": report.fit_faces, "epochs": epochs, "cache": report.cache["where"],
        "cache_mib": report.cache["bytes"] / 2**20, "wall_s": wall, "seconds": report.seconds,
        "crops_mib": crops.nbytes / 2**20, "rss_before_mib": before["VmRSS"] / 2**20,
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
    ap.add_argument("--runs", nargs="+", default=["1000:memory", "10000:memory", "10000:disk"], help="FACES:CACHE")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--collect", type=Path, help="only time the face collection of FOLDER (pool vs one detector)")
    ap.add_argument("--crops", type=Path, default=CROPS, help="where the fit set's aligned crops are kept (made once from data/fit)")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: 8 photos made from t1.jpg and the astronaut "
                    "instead of data/fit, one run 24:disk of 1 epoch with 2 flow steps, and --collect on them (numbers meaningless)")
    args = ap.parse_args()
    folder = Path("data/fit")
    if args.smoke and not args.one:
        from _smoke import photos, workdir

        work = workdir("fit_scale")
        folder, args.crops, args.runs, args.epochs = work / "fit", work / "crops.npy", ["24:disk"], 1
        photos(folder, 8)
        collect_speed(folder)
    if args.collect:
        collect_speed(args.collect)
        return 0
    if args.one:
        n, cache = args.one.split(":")
        print(json.dumps(one(int(n), args.epochs, cache, args.crops, args.smoke)))
        return 0
    real_crops(args.crops, folder)  # detect once, outside the timed runs
    print("| faces (fit) | cache | epochs | averages (s) | features (s) | training (s) | per epoch (s) | calibration (s) | wall (s) "
          "| crops in RAM (MiB) | cache (MiB) | peak RSS (MiB) | of which anonymous / file-backed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        out = subprocess.run([sys.executable, __file__, "--one", run, "--epochs", str(args.epochs), "--crops", str(args.crops),
                              *(["--smoke"] if args.smoke else [])], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:])
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        s, p = r["seconds"], r["peak_mib"]
        print(f"| {r['faces']} ({r['fit_faces']}) | {r['cache']} | {r['epochs']} | {s['averages']:.0f} | {s['features']:.0f} | "
              f"{s['training']:.0f} | {s['training'] / r['epochs']:.0f} | {s['calibration']:.0f} | {r['wall_s']:.0f} | {r['crops_mib']:.0f} | "
              f"{r['cache_mib']:.0f} | {p['VmRSS']:.0f} | {p['RssAnon']:.0f} / {p['RssFile']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
