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

from indomain import auc  # benchmarks/indomain.py's

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


def faces_pair(model: DeepfakeModel, data: Path, spec: str):
    """The later real frames and their GAN fakes (None where the data has none), each processed by ``spec``."""
    gan_dir = data / "videos" / "fakes" / "gan"
    gan = faces_of(model, gan_dir, spec) if gan_dir.is_dir() and any(gan_dir.iterdir()) else None
    return faces_of(model, data / "videos" / "later", spec), gan


def share(verdicts, value: str) -> float:
    """The share of ``verdicts`` equal to ``value`` (NaN for none)."""
    v = verdicts.astype(str)
    return float((v == value).mean()) if len(v) else float("nan")


def detection(later, gan) -> dict:
    """The model's verdicts on the reals (FPR) and, where there are fakes, its TPR and the AUC of reals against them."""
    out = {"FPR": share(later["verdict"], "fake")}
    if gan is not None:
        s, g = later["score"].to_numpy(float), gan["score"].to_numpy(float)
        out["TPR"] = share(gan["verdict"], "fake")
        out["AUC"] = auc(s, g)
        out["GAN faces"] = len(gan)
    return out


def row_for(model: DeepfakeModel, later, gan, spec: str, third: dict[str, int]) -> dict:
    pooled = Calibration(model.calibration.scores, model.calibration.tail)
    s = later["score"].to_numpy(float)
    where = later["file"].map(lambda f: third.get(Path(f).name, -1)).to_numpy()
    found = detection(later, gan)
    out = {"processing": spec, "later faces": len(later), "FPR matched": found["FPR"],
           "near / middle / far": " / ".join(f"{share(later['verdict'][where == t], 'fake'):.2f}" if (where == t).any() else "–"
                                             for t in range(3)),
           "FPR unmatched": pooled.verdicts(pooled.p_values(s), FPR).count("fake") / len(s) if len(s) else float("nan"),
           "inconclusive": share(later["verdict"], "inconclusive"),
           "strata": ", ".join(f"{k} {n}" for k, n in later["stratum"].astype(str).value_counts().items())}
    if gan is not None:
        out.update({"GAN faces": found["GAN faces"], "TPR matched": found["TPR"], "AUC GAN": found["AUC"]})
    return out


def later_thirds(data: Path) -> dict[str, int]:
    """0, 1, 2 for each later frame (by file name): which third of its video's later frames it lies in, by frame
    order (inputs/capture.py's numbered sequences: one per video)."""
    files = sorted(p for p in (data / "videos" / "later").iterdir() if p.is_file())
    places = capture_places(files, read_exif=False)
    sizes: dict[str, int] = {}
    for pl in places:
        sizes[pl.sequence] = sizes.get(pl.sequence, 0) + 1
    return {f.name: min(2, 3 * pl.rank // sizes[pl.sequence]) for f, pl in zip(files, places)}


def recalibrated(model: DeepfakeModel, data: Path, third: dict[str, int], clean: tuple) -> list[dict]:
    """The model as fitted (``clean``: its clean later frames and fakes, already scanned), and calibrated again on
    the near third: the rate on the middle and far thirds and the TPR / AUC on their GAN fakes."""
    from muflow_cli.pipelines.calibrate import CalibrateConfig, CalibrateError, calibrate

    def farther(df):
        return None if df is None else df[df["file"].map(lambda f: third.get(Path(f).name, -1)) > 0]

    pairs = [("as fitted", clean)]
    try:
        near = [data / "videos" / "later" / name for name, t in sorted(third.items()) if t == 0]
        recal = calibrate(near, model, CalibrateConfig(), progress=False)[0]
        pairs.append(("recalibrated on the near third", faces_pair(recal, data, "none")))
    except CalibrateError as e:
        print(f"recalibration not measured: {e}", flush=True)
    rows = []
    for label, (later, gan) in pairs:
        far = farther(later)
        found = detection(far, farther(gan))
        rows.append({"model": label, "middle + far faces": len(far), "FPR": found["FPR"], "TPR GAN": found.get("TPR", float("nan")),
                     "AUC GAN": found.get("AUC", float("nan"))})
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
    third, clean = later_thirds(args.data), None
    for spec in args.processings:
        pair = faces_pair(model, args.data, spec)
        clean = pair if spec == "none" else clean
        rows.append(row_for(model, *pair, spec, third))
        print(json.dumps(rows[-1]), flush=True)
    table(rows, ["processing", "later faces", "FPR matched", "near / middle / far", "FPR unmatched", "inconclusive", "GAN faces",
                 "TPR matched", "AUC GAN"])
    table(recalibrated(model, args.data, third, clean or faces_pair(model, args.data, "none")), ["model", "middle + far faces", "FPR", "TPR GAN", "AUC GAN"])
    print(f"\n{time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
