"""Does training the flows in bfloat16 (`fit --precision bf16`) change the fitted model? Against fp32 seed noise.

    python scripts/default_data.py data/          # once
    python benchmarks/fit_precision.py data/ [--fit-faces 200] [--epochs 16]
    python benchmarks/fit_precision.py --smoke    # seconds: a miniature data/ (benchmarks/_smoke.py), 16 fit faces, 1 epoch, small flows

The rule, fixed before the run: bf16 is within tolerance when its differences from an fp32 fit with the
same seed are no larger than the differences between two fp32 fits that differ only in their seed —
on the held-out real NLL (mean, std), on per-face scores (rank correlation, largest gap) and on the
DCGAN sanity AUC. Same split as benchmarks/fit_epochs.py (a quarter of the folders held out, seeded),
same averages, targets and feature cache for every row; only the flows' training differs. Scoring is
float32 in every case (a bf16-trained model is saved and scored in float32).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from fit_epochs import fit_targets, scores
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from muflow_cli.nn.features import create_feature_extractor
from muflow_cli.pipelines.fit import FitConfig, FitReport, Rows, cache_features, collect_faces, face_groups, model_for, train_flows
from muflow_cli.stats.splits import whole_groups


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", help="scripts/default_data.py's output folder (fit/, dcgan/)")
    ap.add_argument("--fit-faces", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--fakes", type=int, default=100)
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: a miniature data/ made from t1.jpg, the "
                    "astronaut and examples/' DCGAN faces, 16 fit faces, 1 epoch, 64-px crops, 2 flow steps (numbers meaningless)")
    args = ap.parse_args()
    config = FitConfig(group_by="folder", epochs=args.epochs)
    if args.smoke:
        from _smoke import default_data, fast_fit, workdir

        args.data, args.fit_faces, args.epochs = default_data(workdir("fit_precision"), frames_per_video=3), 16, 1
        config = fast_fit(group_by="folder", epochs=args.epochs)
    elif args.data is None:
        ap.error("DATA is required (or --smoke)")
    crops, face_files, files, _, _ = collect_faces([args.data / "fit"], config, progress=False)
    fake_files = sorted((args.data / "dcgan").glob("*.png"))[: args.fakes]
    fakes, _, _, _, _ = collect_faces(fake_files, config, progress=False)
    groups = face_groups(face_files, config.group_by)[0]  # by folder: no fingerprints needed
    held = whole_groups(groups, 0.25, np.random.default_rng(1234))
    pool = np.flatnonzero(~held)
    idx = np.sort(np.random.default_rng(0).permutation(pool)[: args.fit_faces])
    fit_crops, eval_crops = Rows(crops, idx), crops[held]
    backbone = create_feature_extractor()
    targets = fit_targets(backbone, fit_crops, np.random.default_rng(0), config.batch_size)
    cache = cache_features(backbone, fit_crops, config, False)
    print(f"{len(files)} files; {len(idx)} fit faces, {len(eval_crops)} held-out reals, {len(fakes)} DCGAN faces; "
          f"{args.epochs} epochs, batch {config.batch_size}; torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    runs = {}
    for name, seed, precision in (("fp32, seed 0", 0, "fp32"), ("bf16, seed 0", 0, "bf16"), ("fp32, seed 1", 1, "fp32")):
        torch.manual_seed(seed)
        cfg = FitConfig(**{**config.__dict__, "precision": precision, "seed": seed})
        report = FitReport(fit_faces=len(idx), epochs=args.epochs, precision=precision)
        model = train_flows(model_for(backbone, targets, cfg.flow, torch.device("cpu")), cache, cfg, report,
                            np.random.default_rng(seed), torch.device("cpu"), False)
        real, fake = scores(backbone, model, eval_crops), scores(backbone, model, fakes)
        auc = roc_auc_score(np.r_[np.zeros(len(real)), np.ones(len(fake))], np.r_[real, fake])
        runs[name] = (real, auc, report.seconds["training"], report.losses[-1])
    cache.close()
    print("| training | training s | final loss | held-out mean | held-out std | DCGAN AUC |\n|---|---|---|---|---|---|")
    for name, (real, auc, secs, loss) in runs.items():
        print(f"| {name} | {secs:.0f} | {loss:.4f} | {real.mean():.4f} | {real.std():.4f} | {auc:.3f} |")
    base = runs["fp32, seed 0"]
    print("\n| against fp32, seed 0 | Δ held-out mean | Δ held-out std | Spearman ρ of held-out scores | largest |Δ score| | Δ AUC |")
    print("|---|---|---|---|---|---|")
    for name in ("bf16, seed 0", "fp32, seed 1"):
        real, auc = runs[name][:2]
        print(f"| {name} | {real.mean() - base[0].mean():+.4f} | {real.std() - base[0].std():+.4f} | "
              f"{spearmanr(real, base[0])[0]:.4f} | {np.abs(real - base[0]).max():.4f} | {auc - base[1]:+.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
