"""The stated rate, in domain, per processing: how many later real frames a fit flags at 0.05, matched and not.

    python benchmarks/indomain_data.py data/ data/indomain/            # once (benchmarks/indomain.py's data)
    muflow fit data/indomain/videos/fit -o four.muflow                  # `muflow fit` with no option
    python benchmarks/indomain_rates.py data/indomain/ --model four.muflow
    python benchmarks/indomain_rates.py --smoke                         # a minute: tiny data and a tiny fit (numbers meaningless)

Issue #32's table. The later real frames of the four fitted videos (``videos/later``), and the Real-ESRGAN fakes
of them (``videos/fakes/gan``), each processed as a user's copy would be — re-saved at JPEG 95/75/50, as lossy
WebP, saved twice (JPEG 90 then 75), shrunk to 3/4, 1/2, 1/3 (``scale``), shrunk and enlarged back
(``resize:0.5``, which no header shows) — the processing applied to the decoded frame before detection, the
header's compression following it (what the scan reads). Per processing:

- FPR at 0.05 on later frames, *matched* (the model's verdicts: p-values per processing stratum, inconclusive
  faces not flagged) and *unmatched* (the same scores against the pooled calibration, as models before strata),
  and the share of later frames inconclusive;
- TPR at 0.05 on the GAN fakes processed the same way (matched), and the AUC of later frames against them;
- beside the clean row, the fit's own forward estimate (card ``calibration.forward_fpr``);
- *by horizon*: each video's later frames cut in thirds by frame order (near the fitted part → far from it),
  the verdicts' rate in each (``near / middle / far``).

Then, clean, *recalibrated*: the model calibrated again (``muflow calibrate``'s own code, pipelines/calibrate.py)
on the near third, its rate and TPR on the two farther thirds — what the README's remedy for drift ("calibrate
on recent reals") buys and costs. Measures, tunes nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from muflow_cli.inputs.capture import capture_places
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.scan import ScanConfig, scan
from muflow_cli.pipelines.strata_calibration import Processing
from muflow_cli.stats.calibration import Calibration

FPR = 0.05
PROCESSINGS = ("none", "jpeg:95", "jpeg:75", "jpeg:50", "webp:80", "jpeg:90+jpeg:75", "scale:0.75", "scale:0.5", "scale:0.35",
               "resize:0.5")


def faces_of(model: DeepfakeModel, folder: Path, spec: str):
    df = scan([folder], model, ScanConfig(fpr=FPR), progress=False, transform=None if spec == "none" else Processing.parse(spec))
    return df[(df["status"] == "ok") & df["score"].notna()]


def row_for(model: DeepfakeModel, data: Path, spec: str, third: dict[str, int]) -> dict:
    pooled = Calibration(model.calibration.scores, model.calibration.tail)
    later = faces_of(model, data / "videos" / "later", spec)
    s = later["score"].to_numpy(float)
    v = later["verdict"].astype(str)
    where = later["file"].map(lambda f: third.get(Path(f).name, -1)).to_numpy()
    out = {"processing": spec, "later faces": len(later),
           "FPR matched": float((v == "fake").mean()) if len(v) else float("nan"),
           "near / middle / far": " / ".join(f"{(v[where == t] == 'fake').mean():.2f}" if (where == t).any() else "–" for t in range(3)),
           "FPR unmatched": pooled.verdicts(pooled.p_values(s), FPR).count("fake") / len(s) if len(s) else float("nan"),
           "inconclusive": float((v == "inconclusive").mean()) if len(v) else float("nan"),
           "strata": ", ".join(f"{k} {n}" for k, n in later["stratum"].astype(str).value_counts().items())}
    gan_dir = data / "videos" / "fakes" / "gan"
    if gan_dir.is_dir() and any(gan_dir.iterdir()):
        gan = faces_of(model, gan_dir, spec)
        g = gan["score"].to_numpy(float)
        out["GAN faces"] = len(gan)
        out["TPR matched"] = float((gan["verdict"].astype(str) == "fake").mean()) if len(gan) else float("nan")
        out["AUC GAN"] = float(roc_auc_score(np.r_[np.zeros(len(s)), np.ones(len(g))], np.r_[s, g])) if len(s) and len(g) else float("nan")
    return out


def thirds(files: list[str]) -> dict[str, int]:
    """0, 1, 2 for each later frame: which third of its video's later frames it lies in, by frame order
    (inputs/capture.py's numbered sequences: one per video)."""
    places = capture_places(files, read_exif=False)
    sizes: dict[str, int] = {}
    for pl in places:
        sizes[pl.sequence] = sizes.get(pl.sequence, 0) + 1
    return {f: min(2, 3 * pl.rank // sizes[pl.sequence]) for f, pl in zip(files, places)}


def later_thirds(data: Path) -> dict[str, int]:
    """Which third of its video's later frames each later frame (by file name) lies in."""
    files = sorted(str(p) for p in (data / "videos" / "later").iterdir() if p.is_file())
    return {Path(f).name: t for f, t in thirds(files).items()}


def recalibrated(model: DeepfakeModel, data: Path, third: dict[str, int]) -> list[dict]:
    """The model as fitted, and calibrated again on the near third: the rate on the middle and far thirds and the
    TPR / AUC on their GAN fakes (clean)."""
    from muflow_cli.pipelines.calibrate import CalibrateConfig, CalibrateError, calibrate

    later_dir, gan_dir = data / "videos" / "later", data / "videos" / "fakes" / "gan"

    def farther(df):
        return df[df["file"].map(lambda f: third.get(Path(f).name, -1)) > 0]

    models = [("as fitted", model)]
    try:
        near = [later_dir / name for name, t in sorted(third.items()) if t == 0]
        models.append(("recalibrated on the near third", calibrate(near, model, CalibrateConfig(), progress=False)[0]))
    except CalibrateError as e:
        print(f"recalibration not measured: {e}", flush=True)
    rows = []
    for label, m in models:
        far = farther(faces_of(m, later_dir, "none"))
        gan = farther(faces_of(m, gan_dir, "none")) if gan_dir.is_dir() else far.iloc[:0]
        s, g = far["score"].to_numpy(float), gan["score"].to_numpy(float)
        rows.append({"model": label, "middle + far faces": len(far),
                     "FPR": float((far["verdict"].astype(str) == "fake").mean()) if len(far) else float("nan"),
                     "TPR GAN": float((gan["verdict"].astype(str) == "fake").mean()) if len(gan) else float("nan"),
                     "AUC GAN": float(roc_auc_score(np.r_[np.zeros(len(s)), np.ones(len(g))], np.r_[s, g])) if len(s) and len(g) else float("nan")})
    return rows


def table(rows: list[dict], keys: list[str]) -> None:
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.3f}" if isinstance(r.get(k), float) else str(r.get(k, "–")) for k in keys) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", help="benchmarks/indomain_data.py's output folder")
    ap.add_argument("--model", type=Path, help="a bundle fitted on DATA/videos/fit (default: fit one here with `fit` defaults)")
    ap.add_argument("--processings", nargs="+", default=list(PROCESSINGS))
    ap.add_argument("--smoke", action="store_true", help="a check that it runs: indomain_data.py --smoke's data and a tiny fit")
    args = ap.parse_args()
    if args.smoke:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from _smoke import indomain_data, indomain_fit, workdir

        args.data = indomain_data(workdir("indomain_rates"))
        args.processings = ["none", "jpeg:75", "scale:0.5"]
        model = DeepfakeModel.load(indomain_fit(args.data))
    elif args.data is None:
        ap.error("DATA is required (or --smoke)")
    elif args.model is not None:
        model = DeepfakeModel.load(args.model)
    else:
        from muflow_cli.pipelines.fit import FitConfig, fit

        model, _ = fit([args.data / "videos" / "fit"], FitConfig(), progress=False)
    cal = model.card.calibration
    print(f"model: {args.model or 'fitted here'}; calibration {cal.faces} faces, strata {cal.strata or 'none'}; "
          f"forward estimate {'not measured' if cal.forward_fpr is None else f'{cal.forward_fpr:.3f} on {cal.forward_faces} faces'}",
          flush=True)
    rows = []
    t = time.perf_counter()
    third = later_thirds(args.data)
    for spec in args.processings:
        rows.append(row_for(model, args.data, spec, third))
        print(json.dumps(rows[-1]), flush=True)
    table(rows, ["processing", "later faces", "FPR matched", "near / middle / far", "FPR unmatched", "inconclusive", "GAN faces",
                 "TPR matched", "AUC GAN"])
    table(recalibrated(model, args.data, third), ["model", "middle + far faces", "FPR", "TPR GAN", "AUC GAN"])
    print(f"\n{time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
