"""Benchmark 4 — peak memory of `muflow scan` as the number of images grows, with and without --html.

    python benchmarks/memory.py --counts 200 800
    python benchmarks/memory.py --counts 1000 10000 --images portrait
    python benchmarks/memory.py --counts 1000 3000 --images portrait --html none file folder
    python benchmarks/memory.py --smoke      # seconds: 2 portraits, --csv only and --html file; folders removed after

Builds folders of N images (``mixed``: links to scikit-image's astronaut and a 640-px copy of
insightface's t1.jpg, alternating, 3.5 faces per image; ``portrait``: a 320-px head-and-shoulders
crop of the astronaut, one face, for runs of 10k images in minutes), scans each in a fresh
process with --csv (and, per ``--html`` mode, ``--html report.html`` or ``--html report``), and
reports the child's peak resident set size (getrusage), the time and the report's size on disk.
Flat means the pipeline keeps no per-image state beyond the table's rows (about 1 KiB each).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
from skimage import data


def folder(root: Path, n: int, images: str) -> Path:
    d = root / f"n{n}"
    d.mkdir()
    src = root / "src"
    if not src.exists():
        src.mkdir()
        astronaut = data.astronaut()[..., ::-1]
        cv2.imwrite(str(src / "a.png"), astronaut)
        t1 = Path(importlib.util.find_spec("insightface").origin).parent / "data" / "images" / "t1.jpg"
        cv2.imwrite(str(src / "t.jpg"), cv2.resize(cv2.imread(str(t1)), (640, 443), interpolation=cv2.INTER_AREA))
        cv2.imwrite(str(src / "p.jpg"), cv2.resize(astronaut[0:320, 60:380], (320, 320), interpolation=cv2.INTER_AREA))
    for i in range(n):
        name = "p.jpg" if images == "portrait" else ("a.png" if i % 2 else "t.jpg")
        os.symlink(src / name, d / f"{i:06d}{Path(name).suffix}")
    return d


def size_on_disk(path: Path) -> tuple[int, int]:
    """(bytes, files) of a report: one file, or a folder (and a NAME_files/ folder beside a .html)."""
    paths = [path, path.with_name(path.stem + "_files")] if path.suffix == ".html" else [path]
    files = [f for p in paths if p.exists() for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    return sum(f.stat().st_size for f in files), len(files)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", type=int, nargs="+", default=[200, 800])
    ap.add_argument("--images", choices=["mixed", "portrait"], default="mixed")
    ap.add_argument("--html", nargs="+", choices=["none", "file", "folder"], default=["none"],
                    help="report modes to measure per count: none (--csv only), file (--html report.html), folder (--html report)")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: 2 portraits, --csv only and --html file; "
                    "the folders are removed at the end (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        args.counts, args.images, args.html = [2], "portrait", ["none", "file"]
    root = Path(tempfile.mkdtemp())
    print("| images | faces | --html | wall (s) | images/s | peak RSS (MiB) | report (MiB, files) |")
    print("|---|---|---|---|---|---|---|")
    for n in args.counts:
        d = folder(root, n, args.images)
        for mode in args.html:
            out = root / f"n{n}-{mode}.csv"
            report = root / (f"n{n}-report.html" if mode == "file" else f"n{n}-report")
            extra = [] if mode == "none" else ["--html", str(report)]
            code = (
                "import resource, subprocess, sys;"
                f"subprocess.run([sys.executable, '-m', 'muflow_cli', 'scan', {str(d)!r}, '--csv', {str(out)!r}, '-q', *{extra!r}], check=True);"
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
            )
            t = time.perf_counter()
            rss_kib = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1])
            secs = time.perf_counter() - t
            faces = sum(1 for line in out.read_text().splitlines()[1:] if ",ok," in line)
            size, files = size_on_disk(report) if mode != "none" else (0, 0)
            shown = f"{size / 2**20:.1f}, {files}" if mode != "none" else "–"
            print(f"| {n} | {faces} | {mode} | {secs:.0f} | {n / secs:.1f} | {rss_kib / 1024:.0f} | {shown} |", flush=True)
    if args.smoke:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"(folders and reports left in {root})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
