"""Soak test for `muflow scan --resume`: SIGKILL a scan at random moments, resume, compare.

    python scripts/resume_soak.py data/fit --runs 20

Runs one uninterrupted scan as the reference, then, for each run, starts a fresh scan, kills it
with SIGKILL after a random delay (uniform over the reference's duration, so kills land at
start-up, mid-chunk, mid-write or after the journal), checks that no output table exists,
resumes with --resume and compares the CSV byte for byte with the reference.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", type=Path)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="muflow-soak-"))

    def cmd(out: Path, *extra: str) -> list[str]:
        model = ["--model", str(args.model)] if args.model else []
        return [sys.executable, "-m", "muflow_cli", "scan", str(args.photos), *model, "--csv", str(out),
                "--chunk-files", "4", "-q", *extra]

    t = time.perf_counter()
    subprocess.run(cmd(tmp / "ref.csv"), check=True)
    full = time.perf_counter() - t
    reference = (tmp / "ref.csv").read_bytes()
    rows = reference.count(b"\n") - 1
    print(f"reference scan: {full:.1f} s, {rows} rows")
    same = 0
    for i in range(args.runs):
        out = tmp / f"run{i}.csv"
        delay = rng.uniform(0, full)
        proc = subprocess.Popen(cmd(out))
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = proc.returncode == -signal.SIGKILL
        leftover = out.exists()
        subprocess.run(cmd(out, "--resume"), check=True)
        ok = out.read_bytes() == reference and (not killed or not leftover)
        same += ok
        print(f"run {i:2d}: kill after {delay:5.1f} s ({'killed' if killed else 'had finished'}), "
              f"table {'identical' if ok else 'DIFFERENT'}")
    print(f"{same}/{args.runs} runs identical to the uninterrupted scan")
    return 0 if same == args.runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
