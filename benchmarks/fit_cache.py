"""Benchmark 3 — one training epoch on cached backbone features vs re-running the frozen backbone.

    python scripts/default_data.py data/        # once
    python benchmarks/fit_cache.py data/fit
    python benchmarks/fit_cache.py --smoke      # seconds: 12 faces of photos made from t1.jpg and the astronaut, batch 4

muflow's fit runs the frozen backbone once and trains the flows on float16 features it keeps;
the reference re-runs the backbone on every batch of every epoch. Both epochs below train the
same flows on the same faces in the same order; the ratio is measured in the same run, next to
the ratio the FLOP counts predict (backbone forward vs flows forward + backward).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from muflow_cli.nn.features import create_feature_extractor
from muflow_cli.nn.flow_model import MuFlowModel
from muflow_cli.nn.training import train_step
from muflow_cli.pipelines.fit import FitConfig, cache_features, collect_faces


def epoch(model, batches, opt) -> float:
    t = time.perf_counter()
    for feats in batches():
        train_step(model, feats, opt)  # the fit's step
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, nargs="?", help="photos of real faces (data/fit)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--faces", type=int, default=128)
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: 12 photos made from t1.jpg and the "
                    "astronaut (benchmarks/_smoke.py) instead of FOLDER, batch 4 (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        from _smoke import photos, workdir

        args.folder, args.faces, args.batch = workdir("fit_cache"), 12, 4
        photos(args.folder, 12)
    elif args.folder is None:
        ap.error("FOLDER is required (or --smoke)")
    crops, *_ = collect_faces([args.folder], FitConfig(), progress=False)
    crops = crops[: args.faces]
    torch.manual_seed(0)
    backbone = create_feature_extractor()
    model = MuFlowModel(backbone.channels)
    opt = torch.optim.Adam(model.flows.parameters(), lr=1e-4)
    n, b = len(crops), args.batch

    t = time.perf_counter()
    cache = cache_features(backbone, crops, FitConfig(batch_size=b, cache="memory"), progress=False)
    t_cache = time.perf_counter() - t

    def cached():
        for s in range(0, n, b):
            yield cache.get(np.arange(s, min(s + b, n)), torch.device("cpu"))

    def rerun():
        for s in range(0, n, b):
            yield [f.clone() for f in backbone(torch.from_numpy(crops[s : s + b]))]  # as the reference: backbone output feeds training

    epoch(model, cached, opt)  # warm-up
    t_cached = min(epoch(model, cached, opt) for _ in range(2))
    t_rerun = min(epoch(model, rerun, opt) for _ in range(2))

    x = torch.from_numpy(crops[:1])
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        feats = backbone(x)
    f_backbone = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        model([f.clone() for f in feats])["score"].sum().backward()
    f_flows = fc.get_total_flops()
    predicted = (f_backbone + f_flows) / f_flows
    print(f"{n} faces, batch {b}: feature cache built once in {t_cache:.1f} s "
          f"({cache.bytes_per_face / 1024:.0f} KiB/face in float16)")
    print(f"epoch on cached features {t_cached:.1f} s; re-running the backbone {t_rerun:.1f} s; "
          f"speed-up {t_rerun / t_cached:.2f}x (FLOP counts predict {predicted:.2f}x: backbone "
          f"{f_backbone / 1e9:.2f} GFLOP, flows fwd+bwd {f_flows / 1e9:.2f} GFLOP per face)")
    print(f"so {math.ceil(6000 / n)} default epochs cost {math.ceil(6000 / n) * t_cached + t_cache:.0f} s cached vs "
          f"{math.ceil(6000 / n) * t_rerun:.0f} s re-running")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
