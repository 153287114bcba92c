"""Sanity check: held-out real faces vs DCGAN faces on a detector bundle. Measures, tunes nothing.

    python scripts/default_data.py data/                     # once: data/heldout, data/dcgan
    python benchmarks/sanity_dcgan.py --model weights/default.muflow --data data
    python benchmarks/sanity_dcgan.py --smoke    # seconds: t1.jpg and the astronaut against examples/' four DCGAN faces

Reports AUC (fake = higher score, and the flipped direction), which side the fakes fall on,
and the share of fakes flagged at FPR 5% with the two-sided and the upper-tail p-value.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.scan import ScanConfig, scan


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: a miniature data/ (heldout: t1.jpg and the "
                    "astronaut; dcgan: examples/' four DCGAN faces) instead of --data (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        from _smoke import default_data, workdir

        args.data = default_data(workdir("sanity_dcgan"))
    det = DeepfakeModel.load(args.model)
    t = time.perf_counter()
    other = scan([args.data / "heldout"], det, ScanConfig(), progress=False)
    fake = scan([args.data / "dcgan"], det, ScanConfig(), progress=False)
    secs = time.perf_counter() - t
    other_s = other.loc[other.status == "ok", "score"].to_numpy(float)
    fake_s = fake.loc[fake.status == "ok", "score"].to_numpy(float)
    cal = det.calibration.scores
    print(f"scan time {secs:.1f} s; faces: calibration reals {len(cal)}, other-source reals {len(other_s)}, "
          f"DCGAN {len(fake_s)} of {fake['file'].nunique()} images")
    for name, reals in (("calibration reals (same sources, held out)", cal), ("other-source reals", other_s)):
        y = np.r_[np.zeros(len(reals)), np.ones(len(fake_s))]
        s = np.r_[reals, fake_s]
        print(f"{name}: median real {np.median(reals):.4f}, median DCGAN {np.median(fake_s):.4f}; "
              f"AUC(fake=higher) {roc_auc_score(y, s):.3f}")
    for tail in ("two", "upper"):
        p_fake = det.calibration.p_values(fake_s, tail)
        p_other = det.calibration.p_values(other_s, tail)
        print(f"tail={tail}: DCGAN flagged at fpr 0.05: {np.mean(p_fake <= 0.05):.3f}; "
              f"other-source reals flagged: {np.mean(p_other <= 0.05):.3f}")
    for name, df in (("other-source reals", other), ("DCGAN faces", fake)):  # the scan's own verdicts: strata, stability
        v = df.loc[(df.status == "ok") & df.score.notna(), "verdict"].astype(str)
        print(f"verdicts ({det.calibration.describe(0.05)}): {name} flagged {(v == 'fake').mean():.3f}, "
              f"inconclusive {(v == 'inconclusive').mean():.3f} of {len(v)}")
    ok = other[other.status == "ok"].copy()
    ok["source"] = [Path(f).parent.name for f in ok["file"]]
    ok["flagged"] = ok["verdict"] == "fake"
    print("other-source reals by source (model's own tail, fpr 0.05):")
    print(ok.groupby("source").agg(faces=("flagged", "size"), flagged=("flagged", "sum"), median_p=("p_value", "median")).to_string())
    at_min = np.isclose(ok["p_value"].to_numpy(float), det.calibration.min_p()).sum()
    check = det.calibration.domain_check(ok["p_value"].to_numpy(float), 0.05)
    print(f"calibration faces {len(cal)}, smallest p-value {det.calibration.min_p():.4f}; other-source faces at it: "
          f"{at_min} of {len(ok)}; distinct p-values among them: {ok['p_value'].nunique()}; "
          f"domain check: {'fires' if check.mismatch else 'silent'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
