"""Benchmark — `muflow scan --ray local` against the local scan, in the same run, on the same photos.

    python scripts/default_data.py data/             # once: the registry photos
    python benchmarks/ray_scan.py --n 300            # makes data/ray_photos (copies of them, 480-1920 px) once
    python benchmarks/ray_scan.py --smoke            # a check that it runs: 4 photos made here, the default plan, once

Reported, for the local scan (scan.scan + Parquet, default workers) and for Ray Data on a local cluster
of this machine's cores (pipelines.ray.driver.ray_scan) with each plan of ``--plans``: ``default`` (on a CPU-only
cluster, one actor per CPU that finds and scores faces), ``one`` (one such actor: how the rate scales
with actors), ``split`` (face actors and one separate scoring actor: the GPU plan's shape, and the CPU
plan before issue #13's last change), ``split2`` (two face actors sharing a CPU, one scoring actor):
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

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from pipeline import make_photos, smoke_sources  # noqa: E402

from muflow_cli.model.deepfake_model import DeepfakeModel  # noqa: E402
from muflow_cli.pipelines.ray import driver  # noqa: E402
from muflow_cli.pipelines.scan import ScanConfig, scan  # noqa: E402


def local_run(files: list[Path], det: DeepfakeModel, config: ScanConfig, out: Path) -> tuple[float, float]:
    """(wall seconds, images/s from the first chunk finished to the last: the same measure as Ray's parts)."""
    done: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    df = scan(files, det, config, progress=False,
              observer=lambda chunk: done.append((time.perf_counter(), len({r["file"] for r in chunk.rows}))))
    df.to_parquet(out, index=False)
    wall = time.perf_counter() - t0
    return wall, sum(n for _, n in done[1:]) / max(done[-1][0] - done[0][0], 1e-9)


PLANS = {"default": {}, "one": {"face_actors": 1}, "split": {"scorers": 1}, "split2": {"scorers": 1, "face_actors": 2}}


class ActorMemory(threading.Thread):
    """Peak resident memory (MiB) of the actors' processes, by kind, sampled from /proc."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"ScanParts": 0.0, "FindFaces": 0.0, "ScoreParts": 0.0, "ReadParts": 0.0, "WriteParts": 0.0}
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


def ray_run(files: list[Path], det: DeepfakeModel, config: ScanConfig, out: Path, options: dict) -> tuple[float, float, str]:
    """(wall seconds, images/s from the first part written to the last, the plan)."""
    memory = ActorMemory()
    memory.start()
    t0 = time.perf_counter()
    result = driver.ray_scan([str(f) for f in files], str(out), None, config, progress=False, model=det, **options)
    wall = time.perf_counter() - t0
    memory.running = False
    print(f"<!-- peak RSS per actor, MiB: { {k: round(v) for k, v in memory.peak.items() if v} } -->", flush=True)
    parts = sorted(out.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime)
    first, last = parts[0].stat().st_mtime, parts[-1].stat().st_mtime
    later = sum(pd.read_parquet(p, columns=["file"])["file"].nunique() for p in parts[1:])
    return wall, later / max(last - first, 1e-9), result.plan.describe()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=Path("data/ray_photos"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--chunk-files", type=int, default=16, help="files per chunk (local) and per part (Ray)")
    ap.add_argument("--plans", nargs="+", choices=list(PLANS), default=["default", "split"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="a check that it runs: 4 copies of photos made from t1.jpg and the astronaut "
                    "in a temporary --folder, 2 files a chunk, the default plan, one repeat (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        from _smoke import workdir

        smoke_sources()
        args.folder, args.n, args.chunk_files, args.plans, args.repeats = workdir("ray_scan"), 4, 2, ["default"], 1
    files = make_photos(args.folder, args.n)
    cores = len(os.sched_getaffinity(0))
    det = DeepfakeModel.load()
    config = ScanConfig(batch_size=8, chunk_files=args.chunk_files)
    det.score(np.zeros((1, det.crop_size, det.crop_size, 3), np.uint8))  # build the ONNX graph outside the timings (Ray's actors build theirs inside)
    print(f"{len(files)} photos in {args.folder}; {cores} cores; load average {os.getloadavg()[0]:.1f} at the start\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        local_df = None
        ray_started = False
        print("| run | plan | wall s | images/s (whole job) | images/s (running: first part to last) |")
        print("|---|---|---|---|---|")
        rates: dict[str, list[tuple[float, float]]] = {}
        for rep in range(args.repeats):  # interleaved, so drifting load hits every kind of run alike
            wall, running = local_run(files, det, config, tmp / "local.parquet")
            local_df = pd.read_parquet(tmp / "local.parquet")
            rates.setdefault("local", []).append((len(files) / wall, running))
            print(f"| local scan ({cores} workers) | threads | {wall:.1f} | {len(files) / wall:.1f} | {running:.1f} |", flush=True)
            if not ray_started:
                t0 = time.perf_counter()
                driver.connect("local", quiet=True)
                print(f"| (Ray cluster start: ray.init, {cores} CPUs) | | {time.perf_counter() - t0:.1f} | | |", flush=True)
                ray_started = True
            for name in args.plans:
                out = tmp / f"ray_{name}_{rep}"
                wall, running, plan = ray_run(files, det, config, out, PLANS[name])
                pd.testing.assert_frame_equal(pd.read_parquet(out), local_df, check_exact=False, rtol=1e-5, atol=1e-5)
                rates.setdefault(f"ray, {name} plan", []).append((len(files) / wall, running))
                print(f"| ray local, {name} plan | {plan} | {wall:.1f} | {len(files) / wall:.1f} | {running:.1f} |", flush=True)
        faces = int((local_df["status"] == "ok").sum())
        base = [sum(r[i] for r in rates["local"]) / len(rates["local"]) for i in (0, 1)]
        print(f"\n{faces} faces. Mean over {args.repeats} interleaved repeats, as a share of the local scan's mean:\n")
        print("| run | images/s whole job | vs local | images/s running | vs local |\n|---|---|---|---|---|")
        for name, rs in rates.items():
            whole, running = (sum(r[i] for r in rs) / len(rs) for i in (0, 1))
            print(f"| {name} | {whole:.2f} | {whole / base[0]:.2f} | {running:.2f} | {running / base[1]:.2f} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
