"""Benchmark — a fit's face collection on Ray Data (``muflow fit --ray local``) against the local one, same run, same photos.

    python scripts/default_data.py data/                 # once: the registry photos
    python benchmarks/fit_ray.py --n 2000                # makes data/ray_photos (copies of them, 480-1920 px) once
    python benchmarks/fit_ray.py --smoke                 # a check that it runs: 4 photos made here, once

The stage timed is what ``fit`` runs before anything else (pipelines/fit.py ``face_results``: read, detect and
align every file, in order), with the fit's default settings: locally on faces.FaceStage's threads (one per
core), and on a Ray cluster of this machine's cores (pipelines/ray/collect.py: one actor per CPU, results
returned in order). Runs are interleaved, so drifting load hits both alike. Reported per run: wall seconds
(Ray: with its actors starting and loading the detector, not the cluster's start, which is timed once on its
own), files/s for the whole stage and once running (from the first part's last file to the last file: the
rate an hour-long collection runs at), and Ray over local (issue #33's target: >= 0.9). Every run's crops and masks are hashed in order:
Ray's must equal the local ones, so the speed is for the same work.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from pipeline import make_photos, smoke_sources  # noqa: E402

from muflow_cli.pipelines.fit import FitConfig, face_results  # noqa: E402
from muflow_cli.pipelines.ray import driver  # noqa: E402
from muflow_cli.pipelines.ray.collect import FIT_PART_FILES, RayCollection  # noqa: E402


def collect(files: list[Path], config: FitConfig, ray_at: RayCollection | None) -> tuple[float, float, str, int]:
    """(wall seconds, files/s from the first result to the last, sha256 of every crop and mask in order, faces)."""
    digest, faces, arrivals = hashlib.sha256(), 0, []
    t0 = time.perf_counter()
    with face_results(files, config, ray_at, False) as found:
        for res in found:
            arrivals.append(time.perf_counter())
            for f in res.faces or []:
                digest.update(f.crop.tobytes())
                digest.update(f.mask.tobytes())
                faces += 1
    wall = time.perf_counter() - t0
    first = min(FIT_PART_FILES, len(arrivals)) - 1  # Ray hands over a part at once: time both from the first part's last file
    later = len(arrivals) - 1 - first
    running = later / max(arrivals[-1] - arrivals[first], 1e-9) if later else float("nan")  # nan: one part's files only
    return wall, running, digest.hexdigest(), faces


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=Path("data/ray_photos"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="a check that it runs: 4 photos made from t1.jpg and the astronaut in a "
                    "temporary --folder, one repeat (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        from _smoke import workdir

        smoke_sources()
        args.folder, args.n, args.repeats = workdir("fit_ray"), 4, 1
    files = make_photos(args.folder, args.n)
    cores = len(os.sched_getaffinity(0))
    config = FitConfig()
    print(f"{len(files)} photos in {args.folder}; {cores} cores; load average {os.getloadavg()[0]:.1f} at the start\n")
    t0 = time.perf_counter()
    driver.connect("local", quiet=True)
    print(f"Ray cluster start (ray.init, {cores} CPUs): {time.perf_counter() - t0:.1f} s, once\n")
    print("| run | wall s | files/s (whole stage) | files/s (running) | faces |\n|---|---|---|---|---|")
    rates: dict[str, list[tuple[float, float]]] = {"local": [], "ray": []}
    digests = set()
    for _ in range(args.repeats):
        for name, where in (("local", None), ("ray", RayCollection())):
            wall, running, digest, faces = collect(files, config, where)
            digests.add(digest)
            rates[name].append((len(files) / wall, running))
            label = f"local ({cores} threads)" if where is None else f"ray local ({cores} actors)"
            print(f"| {label} | {wall:.1f} | {len(files) / wall:.1f} | {running:.1f} | {faces} |", flush=True)
    if len(digests) != 1:
        print("error: Ray's crops differ from the local ones", file=sys.stderr)
        return 1
    base = [sum(r[i] for r in rates["local"]) / len(rates["local"]) for i in (0, 1)]
    ray_mean = [sum(r[i] for r in rates["ray"]) / len(rates["ray"]) for i in (0, 1)]
    print(f"\nMeans over {args.repeats} interleaved repeats; the crops of every run are the same (sha256 {digests.pop()[:12]}).\n")
    print("| | files/s whole stage | files/s running |\n|---|---|---|")
    print(f"| local | {base[0]:.1f} | {base[1]:.1f} |")
    print(f"| ray | {ray_mean[0]:.1f} | {ray_mean[1]:.1f} |")
    print(f"| ray / local | {ray_mean[0] / base[0]:.2f}x | {ray_mean[1] / base[1]:.2f}x |")  # nan: too few files to run
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
