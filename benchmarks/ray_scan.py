"""Benchmark — `muflow scan --ray local` against the local scan, in the same run, on the same photos.

    python scripts/default_data.py data/             # once: the registry photos
    python benchmarks/ray_scan.py --n 300            # makes data/ray_photos (copies of them, 480-1920 px) once

Reported, for the local scan (scan.scan + Parquet, default workers) and for Ray Data on a local cluster
of this machine's cores (ray_scan.ray_scan, with 1 and 2 face actors beside one scoring actor):
wall time and images/s for the whole job (Ray: with its actors starting, loading the model and
building the ONNX graph), images/s once running (from the first part written to the last: the rate
a long job runs at), and the Ray/local ratio (issue #13's target: >= 0.85). Ray's cluster start is
timed on its own. Tables are checked equal (1e-5), so the speed is for the same work.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from pipeline import make_photos  # noqa: E402

from muflow_cli import ray_scan  # noqa: E402
from muflow_cli.deepfake_model import DeepfakeModel  # noqa: E402
from muflow_cli.scan import ScanConfig, scan  # noqa: E402


def local_run(folder: Path, det: DeepfakeModel, config: ScanConfig, out: Path) -> float:
    t0 = time.perf_counter()
    df = scan([folder], det, config, progress=False)
    df.to_parquet(out, index=False)
    return time.perf_counter() - t0


class ActorMemory(threading.Thread):
    """Peak resident memory (MiB) of the face and scoring actors' processes, sampled from /proc."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"FindFaces": 0.0, "ScoreParts": 0.0}
        self.running = True

    def run(self) -> None:
        while self.running:
            for proc in Path("/proc").iterdir():
                try:
                    if not proc.name.isdigit():
                        continue
                    cmd = (proc / "cmdline").read_bytes()
                    for kind in self.peak:
                        if f"MapBatches({kind})".encode() in cmd:
                            rss = next(int(line.split()[1]) for line in (proc / "status").read_text().splitlines() if line.startswith("VmRSS"))
                            self.peak[kind] = max(self.peak[kind], rss / 1024)
                except (OSError, StopIteration):
                    continue
            time.sleep(0.5)


def ray_run(folder: Path, det: DeepfakeModel, config: ScanConfig, out: Path, actors: int) -> tuple[float, float, str]:
    """(wall seconds, images/s from the first part written to the last, the plan)."""
    memory = ActorMemory()
    memory.start()
    t0 = time.perf_counter()
    result = ray_scan.ray_scan([str(folder)], str(out), None, config, progress=False, model=det, face_actors=actors)
    wall = time.perf_counter() - t0
    memory.running = False
    print(f"<!-- peak RSS per actor, MiB: {memory.peak} -->", flush=True)
    parts = sorted(out.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime)
    first, last = parts[0].stat().st_mtime, parts[-1].stat().st_mtime
    later = sum(pd.read_parquet(p, columns=["file"])["file"].nunique() for p in parts[1:])
    return wall, later / max(last - first, 1e-9), result.plan.describe()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=Path("data/ray_photos"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--chunk-files", type=int, default=16, help="files per chunk (local) and per part (Ray)")
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    files = make_photos(args.folder, args.n)
    cores = len(os.sched_getaffinity(0))
    det = DeepfakeModel.load()
    config = ScanConfig(batch_size=8, chunk_files=args.chunk_files)
    print(f"{len(files)} photos in {args.folder}; {cores} cores; load average {os.getloadavg()[0]:.1f} at the start\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t_local = local_run(args.folder, det, config, tmp / "local.parquet")
        local = pd.read_parquet(tmp / "local.parquet")
        faces = int((local["status"] == "ok").sum())
        t0 = time.perf_counter()
        ray_scan.connect("local", quiet=True)
        t_start = time.perf_counter() - t0
        print(f"{faces} faces; Ray cluster start (ray.init, {cores} CPUs): {t_start:.1f} s\n")
        print("| run | plan | wall s | images/s (whole job) | images/s (running: first part to last) | vs local, whole job | vs local, running |")
        print("|---|---|---|---|---|---|---|")
        rate = len(files) / t_local
        print(f"| local scan ({cores} workers) | threads | {t_local:.1f} | {rate:.1f} | {rate:.1f} | 1.00 | 1.00 |", flush=True)
        for actors in args.actors:
            out = tmp / f"ray_{actors}"
            wall, running, plan = ray_run(args.folder, det, config, out, actors)
            pd.testing.assert_frame_equal(pd.read_parquet(out), local, check_exact=False, rtol=1e-5, atol=1e-5)
            print(f"| ray local, {actors} face actor(s) | {plan} | {wall:.1f} | {len(files) / wall:.1f} | {running:.1f} | "
                  f"{len(files) / wall / rate:.2f} | {running / rate:.2f} |", flush=True)
        t_again = local_run(args.folder, det, config, tmp / "again.parquet")
        print(f"| local scan again (noise check) | threads | {t_again:.1f} | {len(files) / t_again:.1f} | | | |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
