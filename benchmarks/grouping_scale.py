"""Benchmark — how `fit --group-by auto` (near-duplicate grouping, stats/near_duplicates.py) grows with the faces.

    python benchmarks/grouping_scale.py --faces 5000 10000 20000     # seconds and memory per size
    python benchmarks/grouping_scale.py --smoke                      # a check that it runs (numbers meaningless)

The grouping compares every pair of faces (a block of rows at a time), so its time is O(N²) while its memory is
O(N) fingerprints (6 KiB a face: a 64-bit hash and a 768-value colour thumbnail, each also mirrored) plus one
block of pairs. Timed here on random fingerprints, which cost what real ones do (the pair loop does not depend on
the content, only the few links it finds), with every face its own file and no sequence or clock: what the copy
rule alone costs. Fingerprinting itself (per face, linear) is timed on real crops by benchmarks/fit_scale.py.
Prints seconds, seconds per million pairs, and the projection to 100k and 1M faces from the largest size.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from muflow_cli.stats.near_duplicates import THUMB, Fingerprints, near_duplicate_groups


def random_prints(n: int, rng: np.random.Generator) -> Fingerprints:
    phash = rng.integers(0, 2**63, (n, 2), dtype=np.int64).astype(np.uint64)
    colour = rng.standard_normal((n, 2, THUMB * THUMB * 3)).astype(np.float32)
    colour /= np.linalg.norm(colour, axis=-1, keepdims=True)
    return Fingerprints(phash, colour)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, nargs="+", default=[5000, 10000, 20000])
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.faces = [200, 400]
    rng = np.random.default_rng(0)
    print("| faces | fingerprints (MiB) | seconds | µs per thousand pairs |\n|---|---|---|---|")
    last = (0, 0.0)
    for n in args.faces:
        prints = random_prints(n, rng)
        ids = np.arange(n)
        t = time.perf_counter()
        near_duplicate_groups(prints, ids, ids, np.zeros(n), np.full(n, np.nan))
        secs = time.perf_counter() - t
        pairs = n * (n - 1) / 2
        mib = (prints.phash.nbytes + prints.colour.nbytes) / 2**20
        print(f"| {n:,} | {mib:,.0f} | {secs:.1f} | {1e9 * secs / pairs:.1f} |", flush=True)
        last = (n, secs)
    n, secs = last
    for big in (100_000, 1_000_000):
        print(f"\nprojected from {n:,} faces (O(N²)): {big:,} faces {secs * (big / n) ** 2 / 3600:,.1f} h, "
              f"fingerprints {big * 6 / 2**20:,.1f} GiB", end="")
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
