"""The time `muflow fit` should take on N faces, computed from phases measured on this machine.

    python benchmarks/fit_time.py                                  # --preset paper on FFHQ: 70,000 aligned 1024-px faces
    python benchmarks/fit_time.py --preset default --faces 1000000 # the default model's settings, a million photos
    python benchmarks/fit_time.py --smoke                          # seconds: 64-px crops, a tiny probe (numbers meaningless)

Nobody waits days to learn a fit is too slow for their machine. Each phase is timed here on a few faces, in
``--rounds`` rounds (the median is kept: the machine is shared), and multiplied by what a fit of N faces does
with `fit`'s defaults (20 % held out to calibrate, epochs from ``default_epochs``, k and M from
``default_average_plan`` unless the preset sets them, the copies of each fit face that ``copies_per_face`` counts
(none by default since issue #32), strata from at most 300 calibration photos x 7 processings):

- *collect*: ``--collect aligned``: read a 1024-px PNG and align it as ``--aligned ffhq`` does (FFHQ is already
  aligned: no detector); ``photos``: read a 1280-px JPEG photo, find its face with the default detector (SCRFD)
  and align it, as `fit` does on a folder of photos. One core; ``fit`` runs one such worker per core, and
  ``fit --ray`` one per CPU of the cluster (benchmarks/fit_ray.py), so divide by the cores you give it;
- *averages*: one average face of k crops (numpy, memory-bound) and the backbone on it, x M;
- *features*, *training*, *calibration*: the fit's own probe (pipelines/fit_training.estimate_seconds): one
  batch through the backbone and two training steps of the flows, on all the cores torch uses here. The
  backbone's weights are random (speed does not depend on their values; muflow ships no ResNet-50 weights);
- *strata*: the calibration photos' copies aligned and scored again.

CPU only unless ``--device cuda`` (where a GPU is lent); writes a table of seconds per phase, per face, and the
total, and ``--json`` the same as one object.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time

import cv2
import numpy as np
import torch

from muflow_cli.faces.options import FaceFinding
from muflow_cli.faces.stage import faces_in_file
from muflow_cli.nn.averages import average_faces, default_average_plan
from muflow_cli.nn.config import FlowConfig
from muflow_cli.nn.features import FeatureExtractor, backbone_card
from muflow_cli.pipelines.fit_config import PRESETS, FitConfig, FitReport, default_epochs, detector_spec
from muflow_cli.pipelines.fit_training import estimate_seconds
from muflow_cli.pipelines.strata_calibration import MAX_SOURCES, PROCESSINGS

CALIBRATION_SHARE = 0.2  # fit's default --calibration-fraction


def collect_seconds(kind: str, crop: int, reps: int, smoke: bool = False) -> float:
    """Seconds on one core to read one file and get its aligned face: ``aligned`` a 1024-px PNG as ``--aligned ffhq``
    reads it; ``photos`` a 1280-px JPEG through the default face detector."""
    from skimage import data

    side = 128 if smoke else 1024 if kind == "aligned" else 1280
    rgb = cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_CUBIC)
    if kind == "aligned":
        ok, encoded = cv2.imencode(".png", rgb[..., ::-1])
        finding, detector = FaceFinding(aligned="ffhq"), None
    else:
        ok, encoded = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        finding = FaceFinding()
        detector = detector_spec(FitConfig()).factory(finding)()
    assert ok
    faces_in_file(io.BytesIO(encoded.tobytes()), detector, finding, crop, 1.5)  # the detector's first call pays one-off costs
    t = time.perf_counter()
    for _ in range(reps):
        res = faces_in_file(io.BytesIO(encoded.tobytes()), detector, finding, crop, 1.5)
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
    ap.add_argument("--preset", choices=["paper", "default"], default="paper",
                    help="paper: `fit --preset paper` (ResNet-50 stages 1-3, k 500, M 1000); default: `fit`'s own settings")
    ap.add_argument("--faces", type=int, default=70_000, help="faces in the folder (FFHQ: 70,000)")
    ap.add_argument("--collect", choices=["aligned", "photos"], default=None,
                    help="what the folder holds: aligned crops (FFHQ; the paper preset's default) or photos (the default preset's)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=str, default=None, help="also write the table as one JSON object to this file")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    collect = args.collect or ("aligned" if args.preset == "paper" else "photos")
    small = {"crop_size": 64, "batch_size": 2, "flow": FlowConfig(steps=1)} if args.smoke else {}
    if args.preset == "paper":
        config = PRESETS["paper"].config(backbone_weights="(random: timing only)", **small)
    else:
        config = FitConfig(**small)
    n_cal = round(args.faces * CALIBRATION_SHARE)
    k, m = default_average_plan(args.faces - n_cal, config.k, config.averages)
    if args.smoke:
        k, args.rounds = 8, 1
    crop = config.crop_size
    device = torch.device(args.device)
    torch.manual_seed(0)
    backbone = FeatureExtractor(backbone_card(config.backbone, config.taps), random_init=True).to(device)
    report = FitReport(fit_faces=args.faces - n_cal, calibration_faces=n_cal, averages=m, k=k,
                       epochs=default_epochs(args.faces - n_cal), precision="fp32")
    crops = np.random.default_rng(1).integers(0, 256, (config.batch_size, crop, crop, 3), dtype=np.uint8)
    rounds: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        probe = estimate_seconds(backbone, crops, report, config, device)
        per = {"collect": collect_seconds(collect, crop, 3 if args.smoke else 10, args.smoke),
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
    held = "aligned crops" if collect == "aligned" else "one a photo, found by the detector"
    print(f"muflow fit{' --preset paper' if args.preset == 'paper' else ''} on {args.faces:,} faces ({held}) "
          f"({report.fit_faces:,} fitted, {n_cal:,} held out, {report.epochs} epochs, k {k}, M {m}, {crop}-px crops, "
          f"{config.backbone}), device {device}, torch threads {torch.get_num_threads()}, median of {args.rounds} rounds:\n")
    print("| phase | seconds | ms per face of the folder | share |\n|---|---|---|---|")
    for key, v in table.items():
        print(f"| {key}{' (one core)' if key == 'collect' else ''} | {v:,.0f} | {1000 * v / args.faces:.2f} | {v / total:.0%} |")
    print(f"| **total** | **{total:,.0f}** ({total / 3600:.1f} h) | {1000 * total / args.faces:.1f} | |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"preset": args.preset, "collect": collect, "faces": args.faces, "fit_faces": report.fit_faces,
                       "epochs": report.epochs, "k": k, "averages": m, "device": str(device), "torch_threads": torch.get_num_threads(),
                       "seconds": table, "total": total}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
