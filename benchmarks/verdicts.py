"""What share of real faces a model flags at the stated rate, as users' photos come: clean, re-saved, shrunk.

    python scripts/default_data.py data/                      # once: data/heldout, data/dcgan
    python benchmarks/verdicts.py --models weights/default.muflow stratified.muflow --data data
    python benchmarks/verdicts.py --smoke                     # seconds: a miniature data/ (numbers meaningless)

For each model and each processing of the held-out reals and the DCGAN faces (the processing applied to the
decoded photo before detection, as a re-save or a resize would; the header's compression follows it), at --fpr:

- FPR: the share of real faces flagged (inconclusive ones are not flagged), and the share inconclusive;
- TPR: the share of DCGAN faces flagged, and inconclusive;
- the strata the p-values came from (stats/strata.py).

Then, on the clean reals of the first model, the stability check (pipelines/verdicts.py): each face's crop after a
JPEG 90 round trip, scored again, its p-value in the same stratum; how many verdicts flip, by how far the p-value
was from --fpr (what STABILITY_BAND rests on); and the scan time with the check on and off (interleaved rounds).
Measures, tunes nothing: the strata grid and the band were chosen before this ran (docs/method.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.scan import ScanConfig, scan
from muflow_cli.pipelines.strata_calibration import Processing
from muflow_cli.pipelines.verdicts import jpeg_round_trip
from muflow_cli.stats.calibration import verdict
from muflow_cli.stats.strata import face_stratum

PROCESSINGS = ("none", "jpeg:90", "jpeg:75", "jpeg:50", "scale:0.75", "scale:0.5", "scale:0.35", "scale:0.5+jpeg:75",
               "jpeg:90+jpeg:75", "resize:0.5")


def rates(model: DeepfakeModel, folder: Path, spec: str, fpr: float) -> dict:
    config = ScanConfig(fpr=fpr)
    df = scan([folder], model, config, progress=False, transform=None if spec == "none" else Processing.parse(spec))
    faces = df[(df["status"] == "ok") & df["score"].notna()]
    v = faces["verdict"].astype(str)
    return {"faces": len(faces), "flagged": float((v == "fake").mean()) if len(faces) else float("nan"),
            "inconclusive": float((v == "inconclusive").mean()) if len(faces) else float("nan"),
            "strata": ", ".join(f"{k} {n}" for k, n in faces["stratum"].astype(str).value_counts().items())}


def stability(model: DeepfakeModel, folder: Path, fpr: float) -> pd.DataFrame:
    """Per clean real face: p, and p after a JPEG 90 round trip of its crop in the same stratum."""
    kept: list[tuple] = []

    def keep(chunk) -> None:
        faces = [(res, f) for res in chunk.files or [] if res.status == "ok" for f in res.faces]
        kept.extend((res.compression, f.scale, f.crop, f.mask) for res, f in faces)

    df = scan([folder], model, ScanConfig(fpr=fpr, stability=False), progress=False, observer=keep)
    faces = df[df["status"] == "ok"].reset_index(drop=True)
    crops = np.stack([k[2] for k in kept])
    valid = np.stack([k[3] for k in kept])
    again = model.score(jpeg_round_trip(crops), valid=valid)["score"]
    codes = [face_stratum(c, s) for c, s, _, _ in kept] if model.calibration.strata is not None else None
    p_again, _ = model.calibration.matched_p_values(again, codes)
    out = pd.DataFrame({"p": faces["p_value"].to_numpy(float), "p90": p_again,
                        "score": faces["score"].to_numpy(float), "score90": again})
    out = out[np.isfinite(out["p"])]
    out["flip"] = [verdict(a, fpr) != verdict(b, fpr) for a, b in zip(out["p"], out["p90"])]
    return out


def timing(model: DeepfakeModel, folder: Path, rounds: int) -> tuple[float, float]:
    on, off = [], []
    for _ in range(rounds):
        for flag, into in ((True, on), (False, off)):
            t = time.perf_counter()
            scan([folder], model, ScanConfig(stability=flag), progress=False)
            into.append(time.perf_counter() - t)
    return float(np.median(on)), float(np.median(off))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", type=Path, default=None, help="bundles to compare (default: the bundled model)")
    ap.add_argument("--data", type=Path, default=Path("data"), help="scripts/default_data.py's folder (heldout/, dcgan/)")
    ap.add_argument("--fpr", type=float, default=0.05)
    ap.add_argument("--processings", nargs="+", default=list(PROCESSINGS))
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds, stability on and off")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: a miniature data/ (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        from _smoke import default_data, workdir

        args.data = default_data(workdir("verdicts"))
        args.processings, args.rounds = ["none", "jpeg:75", "scale:0.5"], 1
    models = [(str(p) if p else "bundled", DeepfakeModel.load(p)) for p in (args.models or [None])]
    rows = []
    for name, model in models:
        strata = "pooled" if model.calibration.strata is None else f"{len(model.calibration.strata.usable())} usable strata"
        for spec in args.processings:
            real = rates(model, args.data / "heldout", spec, args.fpr)
            fake = rates(model, args.data / "dcgan", spec, args.fpr)
            rows.append({"model": Path(name).name, "calibration": strata, "processing": spec, "real faces": real["faces"],
                         "FPR": real["flagged"], "real inconclusive": real["inconclusive"], "DCGAN faces": fake["faces"],
                         "TPR": fake["flagged"], "fake inconclusive": fake["inconclusive"], "real strata": real["strata"]})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 60):
        print(table.drop(columns=["real strata"]).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    name, model = models[-1]
    st = stability(model, args.data / "heldout", args.fpr)
    lo, hi = 0.25 * args.fpr, 2 * args.fpr
    bands = {"p <= fpr/4": st["p"] <= lo, "fpr/4 < p <= 2 fpr": (st["p"] > lo) & (st["p"] <= hi), "p > 2 fpr": st["p"] > hi}
    print(f"\nstability ({Path(name).name}, {len(st)} clean real faces): |score change| under a JPEG 90 round trip of the crop "
          f"median {np.median(np.abs(st['score90'] - st['score'])):.4f}, 95th percentile "
          f"{np.quantile(np.abs(st['score90'] - st['score']), 0.95):.4f} nats/dim")
    for band, at in bands.items():
        print(f"  {band}: {int(at.sum())} faces, {int(st.loc[at, 'flip'].sum())} verdicts flip")
    on, off = timing(model, args.data / "heldout", args.rounds)
    print(f"scan time of heldout/ with the stability check on / off: {on:.2f} s / {off:.2f} s = {on / off:.3f} "
          f"(median of {args.rounds} interleaved rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
