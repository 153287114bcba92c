"""Benchmark 6 — what reading provenance costs a scan (issue #25's target: at most 5 % more time).

    python scripts/default_data.py data/          # once: the registry photos
    python benchmarks/provenance.py               # 1,000 photos, 2 repeats of each condition
    python benchmarks/provenance.py --n 200 --repeats 1
    python benchmarks/provenance.py --smoke       # seconds: 4 photos made from t1.jpg and the astronaut, 1 repeat, 3 calls a kind

1. Per file: ``read_provenance`` on the bytes of files of each kind (a plain JPEG, one with camera
   EXIF, a C2PA-signed one, a PNG with generator settings, an XMP label), median of ``--reps`` calls —
   what the reading adds to each file's worker, beside decoding and detection; and the CPU time of
   reading + decoding 200 files of each set below with and without it.
2. End to end: the same scan (``pipelines.scan.scan`` + CSV, as the CLI runs it, one model loaded once)
   with provenance on and off, in the order off, on, on, off, … so that drift of a shared machine's
   load falls on both; on two sets of ``--n`` photos made as benchmarks/pipeline.py makes them
   (copies of the registry photos at long sides of 480-1920 px): ``plain`` (OpenCV's JPEGs, no
   metadata: the common case, where only the marker search and Pillow's header run) and ``metadata``
   (the same pixels re-saved by Pillow with camera EXIF, one file in ten signed with C2PA, one in ten
   with an XMP DigitalSourceType label: the SDK's path). Reported: seconds of each run, the mean ratio
   on/off per set.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "tests")]

from pipeline import make_photos, smoke_sources  # noqa: E402  (benchmarks/pipeline.py: the 1,000-photo set)
from provenance_files import (  # noqa: E402  (tests/provenance_files.py: the signing chain, the labels)
    TRAINED,
    jpeg_with_exif,
    jpeg_with_xmp,
    make_signing_chain,
    manifest,
    png_with_parameters,
    sign,
    xmp_packet,
)

from muflow_cli.inputs.images import read_image_file  # noqa: E402
from muflow_cli.inputs.provenance import TIME_CAP_S, read_provenance  # noqa: E402
from muflow_cli.model.deepfake_model import DeepfakeModel  # noqa: E402
from muflow_cli.outputs.tables import write_table  # noqa: E402
from muflow_cli.pipelines.scan import ScanConfig, scan  # noqa: E402


def with_metadata(plain: list[Path], out: Path) -> Path:
    """The photos re-saved by Pillow with camera EXIF; every 10th signed with C2PA, every 10th (offset 5) labelled in XMP."""
    out.mkdir(parents=True, exist_ok=True)
    if len(list(out.glob("*.jpg"))) >= len(plain):
        return out
    chain = make_signing_chain()
    for i, p in enumerate(plain):
        rgb = np.asarray(Image.open(p).convert("RGB"))
        data = jpeg_with_exif(rgb, taken=f"2024:01:{1 + i % 28:02d} 10:00:00")
        if i % 10 == 0:
            data = sign(data, chain, manifest([{"action": "c2pa.created", "digitalSourceType": TRAINED}]))
        elif i % 10 == 5:
            data = jpeg_with_xmp(rgb, xmp_packet())
        (out / p.name).write_bytes(data)
    return out


def per_file_cost(folder: Path, reps: int) -> list[tuple[str, float, str]]:
    """(file kind, median ms of read_provenance, the kind read) on the first photo's pixels."""
    rgb = np.asarray(Image.open(make_photos(folder, 1)[0]).convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    plain = buf.getvalue()
    chain = make_signing_chain()
    files = {"plain JPEG": plain, "JPEG with camera EXIF": jpeg_with_exif(rgb),
             "JPEG signed with C2PA": sign(plain, chain, manifest([{"action": "c2pa.created", "digitalSourceType": TRAINED}])),
             "PNG with generator settings": png_with_parameters(rgb), "JPEG with an XMP label": jpeg_with_xmp(rgb, xmp_packet())}
    out = []
    for name, data in files.items():
        kind = read_provenance(data).kind  # the first call imports what it needs
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            read_provenance(data)
            times.append(time.perf_counter() - t)
        out.append((f"{name} ({len(data) / 1024:.0f} KiB)", 1000 * statistics.median(times), kind))
    return out


def decode_cost(files: list[Path], rounds: int = 3) -> tuple[float, float]:
    """CPU ms per file (process time, one thread, best of ``rounds``) of reading and decoding each file, without
    and with its provenance: the worker's own cost, which a shared machine's load changes less than wall time."""
    best = {None: float("inf"), TIME_CAP_S: float("inf")}
    for _ in range(rounds):
        for cap in best:
            t = time.process_time()
            for p in files:
                read_image_file(p, provenance=cap)
            best[cap] = min(best[cap], 1000 * (time.process_time() - t) / len(files))
    return best[None], best[TIME_CAP_S]


def timed_scan(det: DeepfakeModel, folder: Path, provenance: bool) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        df = scan([folder], det, ScanConfig(batch_size=8, provenance=provenance), progress=False)
        write_table(df, Path(tmp) / "scan.csv", "csv")
        return time.perf_counter() - t0, int((df["status"] == "ok").sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=Path("data/pipeline_1k"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each condition per set")
    ap.add_argument("--reps", type=int, default=200, help="calls per file kind for the per-file cost")
    ap.add_argument("--sets", nargs="+", choices=["plain", "metadata"], default=["plain", "metadata"])
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: 4 copies of photos made from t1.jpg and the "
                    "astronaut in a temporary --folder, 1 repeat, 3 calls per file kind (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        from _smoke import workdir

        smoke_sources()
        args.folder, args.n, args.repeats, args.reps = workdir("provenance") / "photos", 4, 1, 3

    print("per file, read_provenance on the file's bytes (median):\n")
    print("| file | ms | kind |\n|---|---|---|")
    for name, ms, kind in per_file_cost(args.folder, args.reps):
        print(f"| {name} | {ms:.2f} | {kind} |", flush=True)

    plain = make_photos(args.folder, args.n)
    folders = {"plain": args.folder, "metadata": with_metadata(plain, args.folder.with_name(args.folder.name + "_metadata"))}
    print("\nper file, reading and decoding it (CPU time, one thread, best of 3 rounds over 200 files):\n")
    print("| set | without (ms) | with provenance (ms) | with / without |\n|---|---|---|---|")
    for name in args.sets:
        files = sorted(folders[name].glob("*.jpg"))[:200]
        off, on = decode_cost(files)
        print(f"| {name} | {off:.2f} | {on:.2f} | {on / off:.3f} |", flush=True)
    det = DeepfakeModel.load()
    timed_scan(det, args.folder, False)  # warm: the graph, the detector, the page cache
    print(f"\nend to end, {args.n} photos, scan + CSV (off, on, on, off, …):\n")
    print("| set | faces | off (s) | on (s) | on / off |\n|---|---|---|---|---|")
    for name in args.sets:
        runs: dict[bool, list[float]] = {False: [], True: []}
        faces = 0
        for r in range(args.repeats):
            for provenance in ((False, True) if r % 2 == 0 else (True, False)):
                secs, faces = timed_scan(det, folders[name], provenance)
                runs[provenance].append(secs)
        ratio = statistics.mean(runs[True]) / statistics.mean(runs[False])
        print(f"| {name} | {faces} | {', '.join(f'{s:.1f}' for s in runs[False])} | {', '.join(f'{s:.1f}' for s in runs[True])} "
              f"| **{ratio:.3f}** |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
