"""Benchmark — first contact: how long `muflow scan t1.jpg` takes from a cold process.

    python benchmarks/startup.py [--reps 5] [--image PATH]
    python benchmarks/startup.py --smoke        # one repeat of each way, the astronaut (one face)

Runs ``muflow scan IMAGE --csv out.csv -q`` in fresh subprocesses, three ways, interleaved
(today, cold, warm, today, cold, warm, ...) so that a machine whose load changes hurts each the same:

* today: ``MUFLOW_GRAPH_CACHE=0``, the ONNX scoring graph is exported in memory (muflow before the cache);
* cold: an empty ``MUFLOW_CACHE_DIR``: exported, then written to the cache;
* warm: the cache holds the graph: read, checked (sha256, probe against the torch scores stored with it),
  no export, no torch import;
* with ``--reference DIR``, also another checkout of muflow (say, the commit before the cache), run
  with ``PYTHONPATH=DIR``.

Prints each way's median wall time, warm / today (issue #14's target: <= 25 %), and checks that
the three CSVs are byte-identical. Then, once per way, the same steps timed inside one process
(``--phases``): imports (what the command imports before it loads a model), timm's import (done by
the model load when it builds the backbone, never on the warm way; it pulls in torch, torchvision and
torch._dynamo), model load, engine build, detector load (the face detector's ONNX session; SCRFD's
patched graph, from the cache or patched with onnx), face detection, scoring; and whether the process
imported torch and onnx at all. Each phase's time leaves out the import of onnx (``onnx``, by whichever
phase imports it first: insightface, or the SCRFD graph patch), which gets its own column, the first
in a row. Default image: insightface's ``data/images/t1.jpg`` (6 faces).
"""

from __future__ import annotations

import argparse
import builtins
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAYS = ("today", "cold", "warm")
PHASES = ("imports", "timm import", "model load", "engine build", "detector load", "detection", "scoring")
COLUMNS = ("onnx import",) + PHASES


def default_image() -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        raise SystemExit("insightface is not installed: pass --image")
    return Path(spec.origin).parent / "data" / "images" / "t1.jpg"


def env_for(way: str, work: Path, rep: int, reference: Path | None = None) -> dict[str, str]:
    """The environment of one run: the cache switched off, empty, or filled; or the reference checkout."""
    env = dict(os.environ)
    env.pop("MUFLOW_GRAPH_CACHE", None)
    if way == "reference":
        env["PYTHONPATH"] = os.pathsep.join([str(reference), *filter(None, [env.get("PYTHONPATH")])])
        env["MUFLOW_CACHE_DIR"] = str(work / "unused")
    elif way == "today":
        env["MUFLOW_GRAPH_CACHE"] = "0"
        env["MUFLOW_CACHE_DIR"] = str(work / "unused")
    elif way == "cold":
        env["MUFLOW_CACHE_DIR"] = str(work / f"cold-{rep}")  # a new, empty folder each time
    else:
        env["MUFLOW_CACHE_DIR"] = str(work / "warm")
    return env


def timed_scan(image: Path, out: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one scan in a fresh process. CPU time (user + system) moves less than wall
    time when other jobs share the machine. Run from the output's folder: ``python -m`` puts the
    working directory first on sys.path, and it must not shadow PYTHONPATH's muflow."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "muflow_cli", "scan", str(image), "--csv", str(out), "-q"], env=env, check=True, cwd=out.parent)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)


class OnnxImportClock:
    """Seconds spent importing the ``onnx`` package (and its submodules), whoever imports it: wraps
    ``__import__`` (what an ``import`` statement calls), counting the outermost onnx import only."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0
        self._real = builtins.__import__
        builtins.__import__ = self._import

    def _import(self, name, *args, **kwargs):
        if name.partition(".")[0] != "onnx" or self._depth:
            return self._real(name, *args, **kwargs)
        self._depth += 1
        start = time.perf_counter()
        try:
            return self._real(name, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self._depth -= 1


def phases(image: Path, way: str) -> dict[str, float]:
    """The scan's steps, timed in this (fresh) process, the way `muflow scan` runs them; each without the
    time spent importing onnx, reported as "onnx import" (with the phases that imported it)."""
    clock = OnnxImportClock()
    t = [time.perf_counter()]
    onnx = [0.0]
    import numpy as np

    import muflow_cli.cli  # noqa: F401  (what the command imports before it loads anything)
    from muflow_cli.faces.options import FaceFinding
    from muflow_cli.faces.stage import faces_in_file
    from muflow_cli.model.deepfake_model import DeepfakeModel
    from muflow_cli.pipelines.scan import ScanConfig  # noqa: F401

    t.append(time.perf_counter())
    onnx.append(clock.seconds)
    if way != "warm":
        import timm  # noqa: F401  (imported by the model load when it builds the backbone)

    t.append(time.perf_counter())
    onnx.append(clock.seconds)
    det = DeepfakeModel.load()
    t.append(time.perf_counter())
    onnx.append(clock.seconds)
    engine = det.engine
    engine.set_spinning(False)
    t.append(time.perf_counter())
    onnx.append(clock.seconds)
    detector = det.card.face_detector.factory(FaceFinding())()
    t.append(time.perf_counter())
    onnx.append(clock.seconds)
    found = faces_in_file(image, detector, FaceFinding(), det.crop_size, det.context)
    t.append(time.perf_counter())
    onnx.append(clock.seconds)
    scores = det.score(np.stack([f.crop for f in found.faces]), batch_size=8)["score"]
    det.calibration.p_values(scores)
    t.append(time.perf_counter())
    onnx.append(clock.seconds)
    out: dict = {name: (b - a) - (ob - oa) for name, a, b, oa, ob in zip(PHASES, t, t[1:], onnx, onnx[1:])}
    out["onnx import"] = clock.seconds
    out["onnx imported by"] = "+".join(name for name, oa, ob in zip(PHASES, onnx, onnx[1:]) if ob > oa) or "-"
    out["graph from"] = engine.source if engine.name == "onnx" else engine.name
    out["torch"] = "torch" in sys.modules
    out["onnx"] = "onnx" in sys.modules
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--reference", type=Path, default=None, help="another muflow checkout to time as well (PYTHONPATH)")
    ap.add_argument("--phases", action="store_true", help=argparse.SUPPRESS)  # internal: time the steps in this process
    ap.add_argument("--way", default="today", choices=WAYS, help=argparse.SUPPRESS)  # internal: which way --phases times
    ap.add_argument("--smoke", action="store_true", help="a check that it runs: one repeat of each way, on the astronaut (one face) "
                    "unless --image (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke and not args.phases:
        from _smoke import astronaut_rgb, workdir, write

        args.reps, args.reference = 1, None
        args.image = args.image or write(workdir("startup") / "astronaut.png", astronaut_rgb())
    image = args.image or default_image()
    if args.phases:
        print(json.dumps(phases(image, args.way)))
        return 0

    ways = WAYS + (("reference",) if args.reference else ())
    with tempfile.TemporaryDirectory(prefix="muflow-startup-") as tmp:
        work = Path(tmp)
        timed_scan(image, work / "prime.csv", env_for("warm", work, 0))  # fills the warm cache; not timed
        times: dict[str, list[float]] = {way: [] for way in ways}
        cpu: dict[str, list[float]] = {way: [] for way in ways}
        for rep in range(args.reps):
            for way in ways:
                wall, used = timed_scan(image, work / f"{way}.csv", env_for(way, work, rep, args.reference))
                times[way].append(wall)
                cpu[way].append(used)
                print(f"rep {rep + 1}/{args.reps} {way:>9}: {wall:6.2f} s wall, {used:6.2f} s CPU", file=sys.stderr, flush=True)
        tables = {way: (work / f"{way}.csv").read_bytes() for way in ways}
        identical = len(set(tables.values())) == 1

        split: dict[str, dict] = {}
        for way in WAYS:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--phases", "--way", way, "--image", str(image)],
                                  env=env_for(way, work, args.reps), check=True, capture_output=True, text=True, cwd=work)
            split[way] = json.loads(proc.stdout.strip().splitlines()[-1])

    med = {way: statistics.median(v) for way, v in times.items()}
    med_cpu = {way: statistics.median(v) for way, v in cpu.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"muflow scan {image.name} --csv out.csv -q: median of {args.reps} fresh processes "
          f"(cores: {os.cpu_count()}, load average at the end: {load:.1f})")
    for way in ways:
        print(f"  {way:>9}: {med[way]:6.2f} s wall ({', '.join(f'{x:.2f}' for x in times[way])}); {med_cpu[way]:6.2f} s CPU")
    print(f"  warm / today = {med['warm'] / med['today']:.0%} wall, {med_cpu['warm'] / med_cpu['today']:.0%} CPU; "
          f"cold / today = {med['cold'] / med['today']:.0%} wall   (target: warm <= 25 %)")
    if args.reference:
        print(f"  warm / reference = {med['warm'] / med['reference']:.0%} wall, {med_cpu['warm'] / med_cpu['reference']:.0%} CPU")
    print(f"  CSV tables of all ways byte-identical: {identical}")
    print("time split inside one process (s):")
    print(f"  {'':>5}  " + "  ".join(f"{n:>13}" for n in COLUMNS) + "  graph from  torch imported  onnx imported by")
    for way in WAYS:
        print(f"  {way:>5}  " + "  ".join(f"{split[way][n]:13.2f}" for n in COLUMNS)
              + f"  {split[way]['graph from']:>10}  {'yes' if split[way]['torch'] else 'no':>14}  {split[way]['onnx imported by']}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
