"""Benchmark — first contact: how long `muflow scan t1.jpg` takes from a cold process.

    python benchmarks/startup.py [--reps 5] [--image PATH]

Runs ``muflow scan IMAGE --csv out.csv -q`` in fresh subprocesses, three ways, interleaved
(today, cold, warm, today, cold, warm, ...) so that a machine whose load changes hurts each the same:

* today: ``MUFLOW_GRAPH_CACHE=0``, the ONNX scoring graph is exported in memory (muflow before the cache);
* cold: an empty ``MUFLOW_CACHE_DIR``: exported, then written to the cache;
* warm: the cache holds the graph: read, checked (sha256, probe against torch), no export.

Prints each way's median wall time, warm / today (issue #14's target: <= 25 %), and checks that
the three CSVs are byte-identical. Then, once per way, the same steps timed inside one process
(``--phases``): imports, model load (timm's import included), engine build, face detection
(detector set-up included), scoring. Default image: insightface's ``data/images/t1.jpg`` (6 faces).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAYS = ("today", "cold", "warm")


def default_image() -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        raise SystemExit("insightface is not installed: pass --image")
    return Path(spec.origin).parent / "data" / "images" / "t1.jpg"


def env_for(way: str, work: Path, rep: int) -> dict[str, str]:
    """The environment of one run: the cache switched off, empty, or filled."""
    env = dict(os.environ)
    env.pop("MUFLOW_GRAPH_CACHE", None)
    if way == "today":
        env["MUFLOW_GRAPH_CACHE"] = "0"
        env["MUFLOW_CACHE_DIR"] = str(work / "unused")
    elif way == "cold":
        env["MUFLOW_CACHE_DIR"] = str(work / f"cold-{rep}")  # a new, empty folder each time
    else:
        env["MUFLOW_CACHE_DIR"] = str(work / "warm")
    return env


def timed_scan(image: Path, out: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "muflow_cli", "scan", str(image), "--csv", str(out), "-q"], env=env, check=True)
    return time.perf_counter() - start


def phases(image: Path) -> dict[str, float]:
    """The scan's steps, timed in this (fresh) process, the way `muflow scan` runs them."""
    t = [time.perf_counter()]
    import numpy as np

    import muflow_cli.cli  # noqa: F401  (what the command imports before it loads anything)
    from muflow_cli.detector import Detector
    from muflow_cli.faces import faces_in_file
    from muflow_cli.scan import ScanConfig  # noqa: F401

    t.append(time.perf_counter())
    det = Detector.load()
    t.append(time.perf_counter())
    engine = det.engine
    engine.set_spinning(False)
    t.append(time.perf_counter())
    found = faces_in_file(image, det.face_detector(threads=1), det.crop_size, det.context)
    t.append(time.perf_counter())
    scores = det.score(np.stack([f.crop for f in found.faces]), batch_size=8)["score"]
    det.p_values(scores)
    t.append(time.perf_counter())
    names = ("imports", "model load", "engine build", "detection", "scoring")
    out = {name: b - a for name, a, b in zip(names, t, t[1:])}
    out["graph from"] = engine.source if engine.name == "onnx" else engine.name
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--phases", action="store_true", help=argparse.SUPPRESS)  # internal: time the steps in this process
    args = ap.parse_args()
    image = args.image or default_image()
    if args.phases:
        print(json.dumps(phases(image)))
        return 0

    with tempfile.TemporaryDirectory(prefix="muflow-startup-") as tmp:
        work = Path(tmp)
        timed_scan(image, work / "prime.csv", env_for("warm", work, 0))  # fills the warm cache; not timed
        times: dict[str, list[float]] = {way: [] for way in WAYS}
        for rep in range(args.reps):
            for way in WAYS:
                times[way].append(timed_scan(image, work / f"{way}.csv", env_for(way, work, rep)))
                print(f"rep {rep + 1}/{args.reps} {way:>5}: {times[way][-1]:6.2f} s", file=sys.stderr, flush=True)
        tables = {way: (work / f"{way}.csv").read_bytes() for way in WAYS}
        identical = len(set(tables.values())) == 1

        split: dict[str, dict] = {}
        for way in WAYS:
            proc = subprocess.run([sys.executable, __file__, "--phases", "--image", str(image)], env=env_for(way, work, args.reps),
                                  check=True, capture_output=True, text=True)
            split[way] = json.loads(proc.stdout.strip().splitlines()[-1])

    med = {way: statistics.median(v) for way, v in times.items()}
    print(f"muflow scan {image.name} --csv out.csv -q: median of {args.reps} fresh processes (cores: {os.cpu_count()})")
    for way in WAYS:
        print(f"  {way:>5}: {med[way]:6.2f} s   ({', '.join(f'{x:.2f}' for x in times[way])})")
    print(f"  warm / today = {med['warm'] / med['today']:.0%}   cold / today = {med['cold'] / med['today']:.0%}   (target: warm <= 25 %)")
    print(f"  CSV tables of the three ways byte-identical: {identical}")
    print("time split inside one process (s):")
    names = ("imports", "model load", "engine build", "detection", "scoring")
    print(f"  {'':>5}  " + "  ".join(f"{n:>12}" for n in names) + "  graph from")
    for way in WAYS:
        print(f"  {way:>5}  " + "  ".join(f"{split[way][n]:12.2f}" for n in names) + f"  {split[way]['graph from']}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
