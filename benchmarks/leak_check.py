"""Does calibration leak on frame data? `--group-by file` against `auto`, same frames, same seed.

    python scripts/default_data.py data/                 # once: the registry's videos and CK+ sequences
    python benchmarks/leak_check.py data/ [--epochs 8]
    python benchmarks/leak_check.py --smoke      # seconds: a miniature data/ (benchmarks/_smoke.py), 1 epoch, small flows

Frame data from the default model's fit set: the six videos (up to 90 evenly spaced frames each) and
the ten CK+ sequences (one person's expression, frame by frame): 16 sequences. A seeded 30 % of the
sequences are held out whole ("held-out sequences": never fitted on, never calibrated on). Of each
remaining sequence the first 70 % of frames (by name, i.e. time) are the fit pool; the last 30 % are
"later frames of fitted sequences". Each grouping fits a model on the same pool (same seed, same
settings); the fit's own split puts some of the pool into calibration.

Reported per grouping and test set: the share of faces flagged at the model's own threshold
(two-sided, the default) and with the upper tail only, against the nominal rate (issue #12's
target: within 2x nominal). With `--group-by file`, frames of one video straddle the split, so the
calibration faces are near-copies of fit faces; with `auto` (numbered frames of one folder are one
group) whole sequences are held out for calibration, exchangeable with held-out sequences.
Measures, chooses nothing: `auto` was the default before this ran.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from muflow_cli.pipelines.fit import FitConfig, fit
from muflow_cli.pipelines.scan import ScanConfig, scan

FRAME_FOLDERS = ("fer_video", "pyfeat_video", "ckplus")
SMALL: dict = {}  # FitConfig settings every fit here takes (--smoke: 64-px crops, small flows, few averages)


def split_frames(fit_root: Path, out: Path, early: float = 0.7, held: float = 0.3, seed: int = 0) -> tuple[Path, Path, Path]:
    """Symlinks: out/pool (early frames of most sequences), out/later (their later frames), out/heldout (whole sequences)."""
    folders = [f for kind in FRAME_FOLDERS for f in sorted(p for p in (fit_root / kind).iterdir() if p.is_dir())]
    rng = np.random.default_rng(seed)
    heldout = set(rng.choice(len(folders), size=max(1, round(held * len(folders))), replace=False).tolist())
    for k, folder in enumerate(folders):
        frames = sorted(p for p in folder.iterdir() if p.is_file())
        cut = round(early * len(frames))
        for i, frame in enumerate(frames):
            part = "heldout" if k in heldout else ("pool" if i < cut else "later")
            dest = out / part / folder.parent.name / folder.name / frame.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                os.symlink(frame.resolve(), dest)
    return out / "pool", out / "later", out / "heldout"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", help="scripts/default_data.py's output folder")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--group-by", nargs="+", default=["file", "auto"])
    ap.add_argument("--fpr", type=float, nargs="+", default=[0.05, 0.10])
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: a miniature data/ (six 8-frame sequences "
                    "made from t1.jpg and the astronaut) instead of DATA, 1 epoch, 64-px crops, 2 flow steps (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        global SMALL
        from _smoke import default_data, small_fit, workdir

        args.data, args.epochs, SMALL = default_data(workdir("leak_check"), frames_per_video=8), 1, small_fit()
    elif args.data is None:
        ap.error("DATA is required (or --smoke)")
    pool, later, heldout = split_frames(args.data / "fit", args.data / "leak")
    rates = " | ".join(f"flagged at fpr {f:g}, two-sided / upper (target <= {2 * f:g})" for f in args.fpr)
    print(f"| --group-by | fit / calibration faces (groups) | test set | faces | {rates} | fit s |")
    print("|---|---|---|---|" + "---|" * len(args.fpr) + "---|")
    for group_by in args.group_by:
        t = time.perf_counter()
        model, report = fit([pool], FitConfig(epochs=args.epochs, group_by=group_by, seed=0, **SMALL), progress=False)
        fit_s = time.perf_counter() - t
        for name, folder in (("held-out sequences", heldout), ("later frames of fitted sequences", later)):
            df = scan([folder], model, ScanConfig(), progress=False)
            s = df.loc[df.status == "ok", "score"].to_numpy(float)
            two, upper = model.calibration.p_values(s, "two"), model.calibration.p_values(s, "upper")
            cells = " | ".join(f"{np.mean(two <= f):.3f} / {np.mean(upper <= f):.3f}" for f in args.fpr)
            print(f"| {group_by} | {report.fit_faces} / {report.calibration_faces} ({model.card.training.groups}) | {name} "
                  f"| {len(s)} | {cells} | {fit_s:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
