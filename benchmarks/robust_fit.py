"""Does `muflow fit --augment` make verdicts hold on re-saved photos? Clean vs augmented, same data and seed.

    python benchmarks/robust_fit.py data/ [--epochs 8] [--fakes 100]
    python benchmarks/robust_fit.py --smoke      # seconds: a miniature data/ (benchmarks/_smoke.py), 1 epoch, small flows

In-domain setup from the default model's data (scripts/default_data.py): the fit folders (one per
person, photo or video) are split, by folder and seeded, into 80 % to fit on and 20 % held out as
test reals of the same sources; fakes are the DCGAN faces. Each model is fitted on the same faces
(`--group-by auto`), then evaluated clean and under jpeg:75 and resize:0.5 (perturbations applied
to reals and fakes alike, as `muflow eval --perturb` does). Reported per setting and perturbation:
AUC (fake = higher score), TPR and FPR at the calibrated 5 % threshold with the two-sided (default)
and the upper-tail p-value, and which side the fakes fall on. Nothing is chosen on these numbers: the augmentation's ranges are fixed in
muflow_cli/augment.py from what sharing sites do.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from muflow_cli.inputs.perturb import parse
from muflow_cli.pipelines.evaluate import EvalConfig, evaluate
from muflow_cli.pipelines.fit import FitConfig, fit

SMALL: dict = {}  # FitConfig settings every fit here takes (--smoke: 64-px crops, small flows, few averages)


def split_folders(fit_root: Path, out: Path, seed: int = 0) -> tuple[Path, Path]:
    folders = sorted({p.parent for p in fit_root.rglob("*") if p.is_file()})
    rng = np.random.default_rng(seed)
    test = set(rng.choice(len(folders), size=max(1, round(0.2 * len(folders))), replace=False).tolist())
    for i, folder in enumerate(folders):
        dest = out / ("test" if i in test else "fit") / folder.relative_to(fit_root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            os.symlink(folder.resolve(), dest)
    return out / "fit", out / "test"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", help="scripts/default_data.py's output folder (fit/, dcgan/)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--fakes", type=int, default=100)
    ap.add_argument("--augment", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--tails", nargs="+", default=["two", "upper"], help="thresholds to report (the fit is the same)")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: a miniature data/ made from t1.jpg, the "
                    "astronaut and examples/' DCGAN faces instead of DATA, 1 epoch, 64-px crops, 2 flow steps, the upper tail, clean and "
                    "jpeg:75 only (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        global SMALL
        from _smoke import default_data, small_fit, workdir

        args.data, args.epochs, args.tails, SMALL = default_data(workdir("robust_fit"), frames_per_video=4), 1, ["upper"], small_fit()
    elif args.data is None:
        ap.error("DATA is required (or --smoke)")
    work = args.data / "robust"
    fit_dir, test_dir = split_folders(args.data / "fit", work)
    fakes = work / "dcgan"
    fakes.mkdir(exist_ok=True)
    for p in sorted((args.data / "dcgan").glob("*.png"))[: args.fakes]:
        if not (fakes / p.name).exists():
            os.symlink(p.resolve(), fakes / p.name)
    perts = [parse("jpeg:75")] if args.smoke else [parse("jpeg:75"), parse("resize:0.5")]
    print("| setting | tail | perturbation | reals/fakes | AUC | TPR at threshold | FPR at threshold | fakes score |")
    print("|---|---|---|---|---|---|---|---|")
    for augment in args.augment:
        t = time.perf_counter()
        model, report = fit([fit_dir], FitConfig(epochs=args.epochs, augment=augment, seed=0, **SMALL), progress=False)
        fit_s = time.perf_counter() - t
        for tail in args.tails:
            _, metrics = evaluate([("heldout", test_dir)], [("dcgan", fakes)], model, perts, EvalConfig(bootstrap=0, tail=tail),
                                  progress=False)
            for m in metrics:
                print(f"| augment {augment} ({report.fit_faces} fit, {report.calibration_faces} cal, {fit_s:.0f} s) | {tail} "
                      f"| {m['perturbation']} | {m['n_real']}/{m['n_fake']} | {m.get('auc', float('nan')):.3f} "
                      f"| {m['tpr_at_threshold']:.3f} | {m['fpr_at_threshold']:.3f} | {m['fakes_side']} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
