"""The feature cache's own I/O at the sizes of a 10k and a 100k fit: can the disk explain a phase that grows?

    python benchmarks/cache_io.py                       # 16,000 and 160,000 training faces, 128-px crops
    python benchmarks/cache_io.py --faces 64000 --crop-size 256
    python benchmarks/cache_io.py --smoke               # seconds: 256 and 1,024 faces, 64-px crops

benchmarks/fit_scale.py found the features phase 17 % slower per face at 100k fit faces than at 10k (and training
+12.5 %), and guessed at the disk: the 100k cache (11.6 GiB at 128 px) and the crops no longer fit the page
cache beside each other. This measures only that part, with the fit's own code (nn/feature_cache.FeatureCache on
disk, nn/row_store.RowStore underneath) and the default model's layer shapes: writing every training face's
features in the fit's batches (the features phase's writes), then one epoch of reads in the training's order
(a fresh permutation, batches of 16, each read in index order). Random features, so no backbone runs: what is left
is the bytes. Per face: microseconds of writing and of reading, against the milliseconds the phases take
(docs/performance.md, "Streaming fit at 1k, 10k and 100k faces").
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from muflow_cli.model.bundle import default_model_path, read_bundle
from muflow_cli.nn.feature_cache import FeatureCache


def layer_shapes(crop_size: int) -> list[tuple[int, int, int]]:
    """The bundled model's feature maps at ``crop_size``: its card's channels and strides."""
    card = read_bundle(default_model_path())[0]
    return [(ly.channels, crop_size // ly.stride, crop_size // ly.stride) for ly in card.layers]


def run(faces: int, shapes: list[tuple[int, int, int]], batch: int, directory: Path | None, seed: int = 0) -> dict:
    """Seconds to write ``faces`` faces' features to a disk cache, and to read them back as one training epoch."""
    rng = np.random.default_rng(seed)
    block = [torch.from_numpy(rng.standard_normal((64, *s), dtype=np.float32)) for s in shapes]  # reused: bytes, not maths
    with FeatureCache(shapes, faces, "disk", directory) as cache:
        t0 = time.perf_counter()
        for start in range(0, faces, 64):
            n = min(64, faces - start)
            cache.put(start, [b[:n] for b in block])
        written = time.perf_counter() - t0
        t0 = time.perf_counter()
        order = rng.permutation(faces)
        for i in range(0, faces, batch):
            cache.get(order[i : i + batch], torch.device("cpu"))
        read = time.perf_counter() - t0
        gib = cache.nbytes / 2**30
    return {"faces": faces, "gib": gib, "write_s": written, "read_s": read,
            "write_us_per_face": 1e6 * written / faces, "read_us_per_face": 1e6 * read / faces}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, nargs="+", default=[16_000, 160_000],
                    help="training faces per run (fit_scale's 10k and 100k runs: 8,000 and 80,000 fit faces, one framed copy each)")
    ap.add_argument("--crop-size", type=int, default=128, help="the crop side the shapes follow (fit_scale ran 128 px)")
    ap.add_argument("--batch", type=int, default=16, help="the training's batch")
    ap.add_argument("--dir", type=Path, default=None, help="where the cache's temporary files go (default: the system's)")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: 256 and 1,024 faces, 64-px crops")
    args = ap.parse_args()
    if args.smoke:
        args.faces, args.crop_size = [256, 1024], 64
    shapes = layer_shapes(args.crop_size)
    per_face = sum(2 * math.prod(s) for s in shapes)
    print(f"layers {shapes}, {per_face / 1024:.0f} KiB a face (float16)\n")
    print("| training faces | cache (GiB) | write (s) | write per face (µs) | MiB/s written | one epoch's reads (s) | read per face (µs) |")
    print("|---|---|---|---|---|---|---|")
    for faces in args.faces:
        r = run(faces, shapes, args.batch, args.dir)
        print(f"| {faces:,} | {r['gib']:.2f} | {r['write_s']:.1f} | {r['write_us_per_face']:.0f} | "
              f"{r['gib'] * 1024 / r['write_s']:.0f} | {r['read_s']:.1f} | {r['read_us_per_face']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
