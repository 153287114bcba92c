"""Benchmark 2 — the scan pipeline: stage rates, their sum, and overlapping detection with scoring.

    python scripts/default_data.py data/       # once
    python benchmarks/pipeline.py              # or: ... FOLDER [FOLDER ...]

Measures, in one process on the same files: decode + detection + alignment alone (images/s), scoring
alone (faces/s, batch 8), the two one after the other (what `muflow scan` does), and the two
overlapped (detection of chunk i+1 in a worker thread while chunk i is scored), for several
onnxruntime / torch thread splits. Reports end-to-end time as a fraction of the slowest stage's
standalone time (issue #6's target: >= 85 %).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from muflow_cli.detector import Detector
from muflow_cli.faces import FaceDetector, faces_in_file
from muflow_cli.images import iter_image_files

DEFAULT = ["data/fit/dlib_photos", "data/fit/pyfeat_photos", "data/heldout", "data/fit/ckplus/S052", "data/fit/ckplus/S055"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="*", type=Path, default=[Path(p) for p in DEFAULT])
    ap.add_argument("--chunk", type=int, default=8)
    args = ap.parse_args()
    files = list(iter_image_files(args.folders))
    det = Detector.load()

    def crops_of(results):
        return [f.crop for r in results if r.status == "ok" for f in r.faces]

    print(f"{len(files)} files\n")
    print("| onnxruntime / torch threads | detect img/s | score faces/s | sequential (s) | overlapped (s) "
          "| slowest stage alone (s) | best end-to-end / slowest |")
    print("|---|---|---|---|---|---|---|")
    for ort_threads, torch_threads in ((0, 2), (1, 1), (1, 2)):
        torch.set_num_threads(torch_threads)
        fd = FaceDetector("scrfd", threads=ort_threads)
        detect = lambda paths: [faces_in_file(p, fd, det.crop_size, det.context) for p in paths]  # noqa: E731
        detect(files[:4])  # warm-up
        t = time.perf_counter()
        results = detect(files)
        t_detect = time.perf_counter() - t
        crops = np.stack(crops_of(results))
        t = time.perf_counter()
        det.score(crops, batch_size=8)
        t_score = time.perf_counter() - t
        chunks = [files[i : i + args.chunk] for i in range(0, len(files), args.chunk)]
        t = time.perf_counter()
        for c in chunks:
            cs = crops_of(detect(c))
            if cs:
                det.score(np.stack(cs), batch_size=8)
        t_seq = time.perf_counter() - t
        t = time.perf_counter()
        with ThreadPoolExecutor(1) as pool:
            nxt = pool.submit(detect, chunks[0])
            for i in range(len(chunks)):
                res = nxt.result()
                if i + 1 < len(chunks):
                    nxt = pool.submit(detect, chunks[i + 1])
                cs = crops_of(res)
                if cs:
                    det.score(np.stack(cs), batch_size=8)
        t_over = time.perf_counter() - t
        slow = max(t_detect, t_score)
        print(f"| {ort_threads or 'all'} / {torch_threads} | {len(files) / t_detect:.1f} | {len(crops) / t_score:.1f} | {t_seq:.1f} | "
              f"{t_over:.1f} | {slow:.1f} | {100 * slow / min(t_seq, t_over):.0f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
