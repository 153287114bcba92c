"""Benchmark — how `fit --group-by auto` (near-duplicate grouping, stats/near_duplicates.py) grows with the faces.

    python benchmarks/grouping_scale.py --faces 5000 10000 20000     # seconds and memory per size
    python benchmarks/grouping_scale.py --prints structured --faces 20000 50000 100000 --search 8 16 --no-pairs
    python benchmarks/grouping_scale.py --smoke                      # a check that it runs (numbers meaningless)

The grouping compares every pair of faces (a block of rows at a time), so its time is O(N²) while its memory is
O(N) fingerprints (6 KiB a face: a 64-bit hash and a 768-value colour thumbnail, each also mirrored) plus one
block of pairs. Timed on fingerprints that cost what real ones do (the pair loop does not depend on the content,
only the few links it finds), with every face its own file and no sequence or clock: what the copy rule alone
costs. Fingerprinting itself (per face, linear) is timed on real crops by benchmarks/fit_scale.py.
Prints seconds, seconds per million pairs, and the projection to 100k and 1M faces from the largest size.

``--prints``: ``random`` (uniform hashes, isotropic thumbnails) or ``structured``: thumbnails drawn from the
mean and principal spectrum of real ones (the default data's fit crops, fingerprinted; ``--real-crops``), in
clusters of ``--cluster`` near-copies (each copy: its source plus noise, and its hash with 6 % of the bits
flipped), so that real faces' likeness to each other, and near-copies, are there.

``--search D ...``: would an exact search for the copy rule's candidates beat comparing every pair? Each
thumbnail is projected onto the D leading principal axes of a sample; a projection never lengthens a
distance, so every pair within the copy rule's cosine (distance sqrt(2 (1 - COPY_COSINE))) is within it
after projection too, and a k-d tree (scikit-learn) finds those candidates, to be checked exactly. Prints its
seconds, candidates per face, and (with the pairwise run) that no copy pair was missed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from muflow_cli.stats.near_duplicates import COPY_BITS, COPY_COSINE, THUMB, Fingerprints, near_duplicate_groups, similarity

NOISE, FLIP = 0.15, 0.06  # a structured near-copy: thumbnail noise (share of its source's norm), hash bits flipped


def random_prints(n: int, rng: np.random.Generator) -> Fingerprints:
    phash = rng.integers(0, 2**63, (n, 2), dtype=np.int64).astype(np.uint64)
    colour = rng.standard_normal((n, 2, THUMB * THUMB * 3)).astype(np.float32)
    colour /= np.linalg.norm(colour, axis=-1, keepdims=True)
    return Fingerprints(phash, colour)


def _mirror(colour: np.ndarray) -> np.ndarray:
    return colour.reshape(-1, THUMB, THUMB, 3)[:, :, ::-1].reshape(len(colour), -1)


def _unit(v: np.ndarray) -> np.ndarray:
    v = v - v.mean(1, keepdims=True)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def structured_prints(n: int, real: np.ndarray, cluster: int, rng: np.random.Generator) -> Fingerprints:
    """``n`` fingerprints in clusters of ``cluster`` near-copies, thumbnails drawn like the ``real`` ones (N, 768)."""
    mean = real.mean(0)
    _, spectrum, axes = np.linalg.svd(real - mean, full_matrices=False)
    sources = -(-n // cluster)
    src = mean + (rng.standard_normal((sources, len(spectrum))) * spectrum / np.sqrt(len(real))) @ axes
    of = np.repeat(np.arange(sources), cluster)[:n]
    scale = NOISE * np.linalg.norm(src[of], axis=1, keepdims=True) / np.sqrt(real.shape[1])
    colour = _unit(src[of] + rng.standard_normal((n, real.shape[1])) * scale)
    phash = rng.integers(0, 2**63, (sources, 2), dtype=np.int64).astype(np.uint64)[of]
    flips = np.packbits(rng.random((n, 64)) < FLIP, axis=1).view(">u8")[:, 0].astype(np.uint64)
    phash[:, 0] ^= flips
    return Fingerprints(phash, np.stack([colour, _mirror(colour)], 1))


def real_thumbnails(path: str | None, smoke: bool) -> np.ndarray:
    """Colour thumbnails of real aligned faces: the default data's fit crops (benchmarks/fit_scale.py), or the
    smoke portraits."""
    from muflow_cli.stats.near_duplicates import fingerprint

    if smoke:
        import cv2
        from _smoke import portraits

        crops = np.stack([cv2.resize(p, (64, 64), interpolation=cv2.INTER_AREA) for p in portraits()])
    else:
        from fit_scale import CROPS, real_crops

        crops = real_crops(CROPS if path is None else path)
    return fingerprint(crops).colour[:, 0].astype(np.float64)


def copy_pairs(prints: Fingerprints) -> set[tuple[int, int]]:
    """Every pair (i < j) passing the copy rule, by comparing all pairs (the grouping's own test)."""
    cosine, bits = similarity(prints, prints)
    i, j = np.nonzero(np.triu((bits <= COPY_BITS) & (cosine >= COPY_COSINE), 1))
    return set(zip(i.tolist(), j.tolist()))


def tree_candidates(prints: Fingerprints, dims: int, rng: np.random.Generator) -> tuple[float, set[tuple[int, int]]]:
    """(seconds, pairs i < j within the copy rule's distance after projection onto ``dims`` principal axes)."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KDTree

    t = time.perf_counter()
    flat = prints.colour.reshape(-1, prints.colour.shape[-1])
    axes = PCA(dims, random_state=0).fit(flat[rng.choice(len(flat), min(len(flat), 20000), replace=False)]).components_
    tree = KDTree(flat @ axes.T)  # every face twice, as it is and mirrored: a mirrored re-post is a copy too
    query = prints.colour[:, 0] @ axes.T
    radius = np.sqrt(2 * (1 - COPY_COSINE)) + 1e-4
    pairs: set[tuple[int, int]] = set()
    for s in range(0, len(query), 4096):
        for i, hits in enumerate(tree.query_radius(query[s:s + 4096], radius), start=s):
            pairs.update((i, int(j)) for j in np.unique(hits // 2) if j > i)
    return time.perf_counter() - t, pairs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, nargs="+", default=[5000, 10000, 20000])
    ap.add_argument("--prints", choices=("random", "structured"), default="random")
    ap.add_argument("--cluster", type=int, default=10, help="structured: near-copies per source")
    ap.add_argument("--real-crops", help="structured: .npy of real aligned crops (default: the default data's fit crops)")
    ap.add_argument("--search", type=int, nargs="*", default=[], help="time an exact candidate search on this many principal axes")
    ap.add_argument("--no-pairs", action="store_true", help="skip the all-pairs grouping (the search alone)")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.faces, args.prints, args.search = [200, 400], "structured", [4]
    rng = np.random.default_rng(0)
    real = real_thumbnails(args.real_crops, args.smoke) if args.prints == "structured" else None
    print(f"{args.prints} fingerprints" + (f", clusters of {args.cluster}" if real is not None else ""))
    print("| faces | fingerprints (MiB) | all pairs (s) | µs per thousand pairs | search | search (s) | candidates per face | copy pairs missed |")
    print("|---|---|---|---|---|---|---|---|")
    last = (0, 0.0)
    for n in args.faces:
        prints = random_prints(n, rng) if real is None else structured_prints(n, real, args.cluster, rng)
        mib = (prints.phash.nbytes + prints.colour.nbytes) / 2**20
        secs, found = float("nan"), None
        if not args.no_pairs:
            ids = np.arange(n)
            t = time.perf_counter()
            near_duplicate_groups(prints, ids, ids, np.zeros(n), np.full(n, np.nan))
            secs = time.perf_counter() - t
            last = (n, secs)
            found = copy_pairs(prints) if args.search and n <= 20000 else None  # the all-pairs answer, to check the search
        row = f"| {n:,} | {mib:,.0f} | {secs:.1f} | {1e9 * secs / (n * (n - 1) / 2):.1f} |"
        for dims in args.search or [None]:
            if dims is None:
                print(row + " – | – | – | – |", flush=True)
                continue
            tsecs, cands = tree_candidates(prints, dims, rng)
            missed = "–" if found is None else str(len(found - cands))
            print(row + f" k-d tree, {dims} axes | {tsecs:.1f} | {2 * len(cands) / n:.1f} | {missed} |", flush=True)
    n, secs = last
    if n:
        for big in (100_000, 1_000_000):
            print(f"\nprojected from {n:,} faces (O(N²)): {big:,} faces {secs * (big / n) ** 2 / 3600:,.1f} h, "
                  f"fingerprints {big * 6 / 2**20:,.1f} GiB", end="")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
