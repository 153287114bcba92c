"""Benchmark 6 — fitted quality against training epochs, on real faces only.

    python scripts/default_data.py data/          # once
    python benchmarks/fit_epochs.py data/fit --epochs 2 4 8 16 32 60
    python benchmarks/fit_epochs.py --smoke       # seconds: a miniature data/fit (benchmarks/_smoke.py), 1 and 2 epochs, small flows

Quality here is the held-out real NLL: the mean score (nats/dim) of real faces the fit never
saw, and their spread (standard deviation; the conformal p-values rank new faces among such
scores, so a tighter, lower distribution of reals is what a better density model gives).
Nothing here looks at fakes.

The faces under the folder are split once by folder (person, photo or video), seeded: a
quarter of the folders are the evaluation faces, never fitted on. From the rest, each fit
set is drawn (seeded): ``small`` (``--small`` faces, about what a 24-photo folder gives after
its calibration split) and ``medium`` (all the rest). For a set, the fit's stages run once —
average faces, Gaussian targets, the float16 feature cache — and then ``fit_training.train_flows`` (what
``muflow fit`` runs, cosine schedule over the given epochs) trains fresh flows for each
epoch count, same seed, on the same cache. Each row is one such training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from muflow_cli.nn.averages import average_faces, default_average_plan
from muflow_cli.nn.features import create_feature_extractor
from muflow_cli.nn.target import GaussianTarget
from muflow_cli.pipelines.fit import FitConfig, FitReport, Rows, cache_features, collect_faces, default_epochs, face_groups, model_for, train_flows
from muflow_cli.stats.splits import whole_groups


@torch.no_grad()
def scores(backbone, model, crops: np.ndarray, batch: int = 16) -> np.ndarray:
    model.eval()
    return np.concatenate([model(backbone(torch.from_numpy(crops[s : s + batch])))["score"].numpy() for s in range(0, len(crops), batch)])


@torch.no_grad()
def fit_targets(backbone, fit_crops, rng: np.random.Generator, batch: int) -> list[GaussianTarget]:
    """The fit's averages stage: average faces (default plan) -> pooled backbone features -> one Gaussian per layer."""
    k, m = default_average_plan(len(fit_crops), None, None)
    pooled = [[] for _ in backbone.channels]
    for faces in average_faces(fit_crops, k, m, rng, batch=batch):
        for j, f in enumerate(backbone(torch.from_numpy(faces))):
            pooled[j].append(f.mean(dim=(2, 3)).double().numpy())
    return [GaussianTarget.fit(np.concatenate(p)) for p in pooled]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, nargs="?", help="the fit photos, one folder per person, photo or video (data/fit)")
    ap.add_argument("--epochs", nargs="+", type=int, default=[2, 4, 8, 16, 32, 60])
    ap.add_argument("--sets", nargs="+", default=["small", "medium"])
    ap.add_argument("--small", type=int, default=24, help="fit faces in the small set")
    ap.add_argument("--medium", type=int, default=0, help="fit faces in the medium set (0: all but the evaluation faces)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: FitConfig's")
    ap.add_argument("--lr", type=float, default=None, help="default: FitConfig's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: a miniature data/fit made from t1.jpg and the "
                    "astronaut instead of FOLDER, the small set of 12 faces, 1 and 2 epochs, 64-px crops, 2 flow steps (numbers meaningless)")
    args = ap.parse_args()
    config = FitConfig(group_by="folder", seed=args.seed)
    if args.smoke:
        from _smoke import default_data, fast_fit, workdir

        args.folder = default_data(workdir("fit_epochs"), frames_per_video=3) / "fit"
        args.epochs, args.sets, args.small, args.json = [1, 2], ["small"], 12, None
        config = fast_fit(group_by="folder", seed=args.seed)
    elif args.folder is None:
        ap.error("FOLDER is required (or --smoke)")
    if args.batch_size:
        config.batch_size = args.batch_size
    if args.lr:
        config.lr = args.lr
    crops, face_files, files, _, _ = collect_faces([args.folder], config, progress=False)
    rng = np.random.default_rng(1234)  # the evaluation split never changes with --seed
    groups = face_groups(face_files, config.group_by)[0]  # by folder: no fingerprints needed
    held = whole_groups(groups, 0.25, rng)
    pool = np.flatnonzero(~held)
    eval_crops = crops[held]
    print(f"{len(files)} files, {len(crops)} faces in {len(np.unique(groups))} folders: {len(eval_crops)} evaluation faces, "
          f"{len(pool)} to fit from; batch {config.batch_size}, lr {config.lr}", flush=True)
    backbone = create_feature_extractor()
    rows = []
    print("| set | fit faces | epochs | default? | Adam steps | training (s) | final train loss | held-out mean | held-out std | held-out median |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.sets:
        n = args.small if name == "small" else (args.medium or len(pool))
        idx = np.sort(np.random.default_rng(args.seed).permutation(pool)[:n])
        fit_crops = Rows(crops, idx)
        targets = fit_targets(backbone, fit_crops, np.random.default_rng(args.seed), config.batch_size)
        cache = cache_features(backbone, fit_crops, config, False)
        for epochs in args.epochs:
            torch.manual_seed(args.seed)
            report = FitReport(fit_faces=n, epochs=epochs)
            cfg = FitConfig(**{**config.__dict__, "epochs": epochs})
            model = train_flows(model_for(backbone, targets, cfg.flow, torch.device("cpu")), cache, cfg, report,
                                np.random.default_rng(args.seed), torch.device("cpu"), False)
            s = scores(backbone, model, eval_crops)
            row = {"set": name, "fit_faces": n, "epochs": epochs, "default": epochs == default_epochs(n),
                   "steps": epochs * -(-n // cfg.batch_size), "train_s": report.seconds["training"],
                   "final_loss": report.losses[-1], "heldout_mean": float(s.mean()), "heldout_std": float(s.std()),
                   "heldout_median": float(np.median(s))}
            rows.append(row)
            print(f"| {name} | {n} | {epochs} | {'yes' if row['default'] else ''} | {row['steps']} | {row['train_s']:.0f} | "
                  f"{row['final_loss']:.4f} | {row['heldout_mean']:.4f} | {row['heldout_std']:.4f} | {row['heldout_median']:.4f} |", flush=True)
        cache.close()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    t = time.perf_counter()
    code = main()
    print(f"wall {time.perf_counter() - t:.0f} s")
    raise SystemExit(code)
