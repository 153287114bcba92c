"""The time `muflow fit --preset paper` should take on N faces, computed from phases measured on this machine.

    python benchmarks/paper_fit_time.py                    # FFHQ: 70,000 aligned 1024-px faces
    python benchmarks/paper_fit_time.py --faces 1000000    # the same rates, a million faces
    python benchmarks/paper_fit_time.py --smoke            # seconds: 64-px crops, a tiny probe (numbers meaningless)

Nobody waits days to learn a fit is too slow for their machine. Each phase is timed here on a few faces, in
``--rounds`` rounds (the median is kept: the machine is shared), and multiplied by what a fit of N faces does
with `fit`'s defaults (20 % held out to calibrate, epochs from ``default_epochs``, one framed copy per fit face,
strata from at most 300 calibration photos x 7 processings):

- *collect*: read a 1024-px PNG and align it as ``--aligned ffhq`` does (FFHQ is already aligned: no detector);
- *averages*: one average face of k = 500 crops (numpy, memory-bound) and the backbone on it, x M = 1000;
- *features*, *training*, *calibration*: the fit's own probe (pipelines/fit_training.estimate_seconds): one
  batch through ResNet-50 stages 1-3 and two training steps of the 8-step flows. ResNet-50's weights are
  random here (speed does not depend on their values; muflow ships no ResNet-50 weights);
- *strata*: the calibration photos' copies aligned and scored again.

CPU only unless ``--device cuda`` (where a GPU is lent); writes a table of seconds per phase and the total.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import cv2
import numpy as np
import torch

from muflow_cli.faces.options import FaceFinding
from muflow_cli.faces.stage import faces_in_file
from muflow_cli.nn.averages import average_faces
from muflow_cli.nn.config import FlowConfig
from muflow_cli.nn.features import FeatureExtractor, backbone_card
from muflow_cli.pipelines.fit_config import PRESETS, FitReport, default_epochs
from muflow_cli.pipelines.fit_training import estimate_seconds
from muflow_cli.pipelines.strata_calibration import MAX_SOURCES, PROCESSINGS

CALIBRATION_SHARE = 0.2  # fit's default --calibration-fraction


def collect_seconds(side: int, crop: int, reps: int) -> float:
    """Seconds to decode a ``side``-px PNG and align its face as ``--aligned ffhq`` does."""
    from skimage import data

    rgb = cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_CUBIC)
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    assert ok
    finding = FaceFinding(aligned="ffhq")
    t = time.perf_counter()
    for _ in range(reps):
        res = faces_in_file(io.BytesIO(png.tobytes()), None, finding, crop, 1.5)
        assert res.status == "ok" and res.faces, res.message
    return (time.perf_counter() - t) / reps


def averaging_seconds(k: int, crop: int, reps: int) -> float:
    """Seconds to average ``k`` crops into one average face (the backbone's part is in the probe)."""
    crops = np.random.default_rng(0).integers(0, 256, (k + 8, crop, crop, 3), dtype=np.uint8)
    t = time.perf_counter()
    for _ in average_faces(crops, k, reps, np.random.default_rng(0), batch=reps):
        pass
    return (time.perf_counter() - t) / reps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=70_000, help="faces in the folder (FFHQ: 70,000)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    preset = PRESETS["paper"]
    config = preset.config(backbone_weights="(random: timing only)")
    crop, k, m = config.crop_size, config.k, config.averages
    if args.smoke:
        crop, k, args.rounds = 64, 8, 1
        config = preset.config(backbone_weights="x", crop_size=crop, batch_size=2, flow=FlowConfig(steps=1))
    device = torch.device(args.device)
    torch.manual_seed(0)
    backbone = FeatureExtractor(backbone_card(config.backbone, config.taps), random_init=True).to(device)
    n_cal = round(args.faces * CALIBRATION_SHARE)
    report = FitReport(fit_faces=args.faces - n_cal, calibration_faces=n_cal, averages=m, k=k,
                       epochs=default_epochs(args.faces - n_cal), precision="fp32")
    crops = np.random.default_rng(1).integers(0, 256, (config.batch_size, crop, crop, 3), dtype=np.uint8)
    rounds: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        probe = estimate_seconds(backbone, crops, report, config, device)
        per = {"collect": collect_seconds(1024 if not args.smoke else 128, crop, 3 if args.smoke else 10),
               "average": averaging_seconds(k, crop, 2 if args.smoke else 4)}
        phases = {
            "collect": args.faces * per["collect"],
            "averages": m * per["average"] + probe["averages"],
            "features": probe["features"],
            "training": probe["training"],
            "calibration": probe["calibration"],
            # each copy is read, aligned and scored as a calibration face is (backbone + flows)
            "strata": min(MAX_SOURCES, n_cal) * len(PROCESSINGS) * (per["collect"] + probe["calibration"] / max(n_cal, 1)),
        }
        for key, v in phases.items():
            rounds.setdefault(key, []).append(v)
    table = {key: statistics.median(v) for key, v in rounds.items()}
    total = sum(table.values())
    print(f"muflow fit --preset paper on {args.faces:,} faces ({report.fit_faces:,} fitted, {n_cal:,} held out, "
          f"{report.epochs} epochs, k {k}, M {m}, {crop}-px crops), device {device}, median of {args.rounds} rounds:\n")
    print("| phase | seconds | share |\n|---|---|---|")
    for key, v in table.items():
        print(f"| {key} | {v:,.0f} | {v / total:.0%} |")
    print(f"| **total** | **{total:,.0f}** ({total / 3600:.1f} h) | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
