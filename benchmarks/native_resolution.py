"""Native resolution against the standard crop: the same fit data, two fits, the same faces scored.

    python benchmarks/indomain_data.py data/ data/indomain/ [--large-only]     # once: data/indomain, with videos/large
    muflow fit data/indomain/videos/fit -o four.muflow                          # the standard crop (the default)
    muflow fit data/indomain/videos/fit -o native.muflow --native              # native resolution
    python benchmarks/native_resolution.py data/indomain/ --standard four.muflow --native native.muflow
    python scripts/make_default_model.py --native --out default_native.muflow  # the bundled model's recipe, native
    python benchmarks/native_resolution.py --sanity data/ --standard weights/default.muflow --native default_native.muflow
    python benchmarks/native_resolution.py --smoke                             # a minute: tiny data, two tiny fits

Issue #33, item 3. The standard crop (faces/align.py) resamples every face to one size; a native model
(faces/native.py) never enlarges a face and scores a larger one as tiles at its own scale, pooled. Per model,
on data/indomain (benchmarks/indomain_data.py):

- *in domain*: the later real frames of the four fitted videos against their gan, bicubic and swap fakes
  (``videos/fakes/<kind>``; the gan fakes are Real-ESRGAN outputs left at the frame's size): AUC, the rate on the
  later frames at 0.05 and the TPR on each kind (the model's verdicts); a native model's AUCs by both poolings;
- *large*: ``videos/large/gan`` against ``videos/large/bicubic``: 128-px face images enlarged 4x to 512 px by
  Real-ESRGAN or by bicubic. Both are equally far from the fit's faces in scale and equally blurred; what tells
  them apart is the generator's texture, which the standard crop shrinks about 2x before anything sees it. AUC
  (gan above bicubic), pooled by the model's own pooling and, for a native model, by the other one too, and the
  share of each flagged at 0.05 (by the model's own pooling: its calibration was pooled so);
- how many native crops a face needs (its tiles), and the scan's speed: faces per second of each model scanning
  the later frames, in alternating rounds in one process, as a ratio (this machine is shared and noisy).

``--sanity``: the bundled model's recipe fitted both ways, on the DCGAN sanity faces against unseen-source reals,
as they are and shrunk to the DCGAN faces' size (a native score depends on a face's size; this separates that
from the generator). Measures, tunes nothing: both models are `muflow fit` with default settings but --native.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from indomain import auc  # benchmarks/indomain.py's, as indomain_rates.py's helpers below
from indomain_rates import faces_of, share

from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.scan import ScanConfig

KINDS = ("gan", "bicubic", "swap")
ROUNDS = 3


def scanned(model: DeepfakeModel, folder: Path):
    """The scored faces of a folder, as `muflow scan` gives them (the model's verdicts at 0.05)."""
    return faces_of(model, folder, "none")


def pooled_by(model: DeepfakeModel, pool: str) -> DeepfakeModel:
    """The same flows, calibration and engine, pooling a native model's tiles by ``pool``."""
    card = replace(model.card, crop=replace(model.card.crop, pool=pool))
    return model.with_calibration(model.calibration.scores, card.calibration, card, model.calibration.strata)


def flagged(df) -> float:
    return share(df["verdict"], "fake")


def in_domain(model: DeepfakeModel, data: Path) -> dict:
    later = scanned(model, data / "videos" / "later")
    s = later["score"].to_numpy(float)
    out = {"later faces": len(later), "FPR": flagged(later)}
    for kind in KINDS:
        folder = data / "videos" / "fakes" / kind
        if folder.is_dir() and any(folder.iterdir()):
            fake = scanned(model, folder)
            out[f"AUC {kind}"] = auc(s, fake["score"].to_numpy(float))
            out[f"TPR {kind}"] = flagged(fake)
    return out


def large(model: DeepfakeModel, data: Path) -> dict:
    """AUC of the 512-px GAN faces above their bicubic twins, by each pooling a native model can use."""
    root = data / "videos" / "large"
    if not (root / "gan").is_dir():
        return {}
    pools = ("mean", "top") if model.native else (model.card.crop.pool,)
    out: dict = {}
    for pool in pools:
        m = pooled_by(model, pool) if model.native else model
        gan, bic = scanned(m, root / "gan"), scanned(m, root / "bicubic")
        how = f" ({pool})" if model.native else ""
        out[f"large AUC{how}"] = auc(bic["score"].to_numpy(float), gan["score"].to_numpy(float))
        if pool == model.card.crop.pool:  # verdicts only by the pooling the calibration was made with
            out["large flagged gan / bicubic"] = f"{flagged(gan):.2f} / {flagged(bic):.2f}"
        out.setdefault("large faces", f"{len(gan)} gan / {len(bic)} bicubic")
    return out


def crops_per_face(model: DeepfakeModel, folder: Path) -> str:
    """How many native crops the faces of ``folder`` need (median, largest) and the share tiled."""
    if not model.native:
        return "1"
    from muflow_cli.faces.stage import FaceStage

    finding = ScanConfig().faces
    with FaceStage(finding, model.card.face_detector.factory(finding), model.crop_size, model.context, native=True) as stage:
        counts = [len(f.native) for res in stage.map(sorted(p for p in folder.iterdir() if p.is_file())) for f in (res.faces or [])]
    c = np.asarray(counts)
    return f"median {np.median(c):g}, max {c.max()}, {np.mean(c > 1):.0%} tiled" if len(c) else "no faces"


def sanity(model: DeepfakeModel, data: Path, work: Path) -> dict:
    """The DCGAN sanity set (scripts/default_data.py's data/dcgan: 64-px faces) against the reals of unseen sources
    (data/heldout) as they are, and against the same reals shrunk until their faces are the DCGAN faces' median
    size: a model that merely finds small faces unusual separates the first pair, not the second."""
    import cv2

    reals, fakes = scanned(model, data / "heldout"), scanned(model, data / "dcgan")
    small = fakes["face_px"].median()
    shrunk = work / "heldout_shrunk"
    if not shrunk.is_dir():
        shrunk.mkdir(parents=True)
        for i, (_, row) in enumerate(reals.drop_duplicates("file").iterrows()):  # by the file's first face
            image = cv2.imread(str(row["file"]), cv2.IMREAD_COLOR)
            f = min(1.0, small / row["face_px"])
            cv2.imwrite(str(shrunk / f"{i:03d}_{Path(row['file']).stem}.png"), cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA))
    tiny = scanned(model, shrunk)
    d, r, t = (x["score"].to_numpy(float) for x in (fakes, reals, tiny))
    return {"dcgan AUC vs unseen reals": auc(r, d), f"vs the reals shrunk to {small:.0f}-px faces": auc(t, d),
            "faces dcgan / reals / shrunk": f"{len(d)} / {len(r)} / {len(t)}", "flagged dcgan / reals / shrunk":
            f"{flagged(fakes):.2f} / {flagged(reals):.2f} / {flagged(tiny):.2f}"}


def speed(models: dict[str, DeepfakeModel], folder: Path, rounds: int) -> dict[str, float]:
    """Faces per second scanning ``folder``, each model in turn for ``rounds`` rounds (the median of each)."""
    per: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for name, m in models.items():
            t = time.perf_counter()
            n = len(scanned(m, folder))
            per[name].append(n / (time.perf_counter() - t))
    return {k: float(np.median(v)) for k, v in per.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", help="benchmarks/indomain_data.py's output folder")
    ap.add_argument("--standard", type=Path, help="a bundle fitted on DATA/videos/fit with `muflow fit` defaults")
    ap.add_argument("--native", type=Path, help="the same fit with --native")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="speed rounds per model")
    ap.add_argument("--sanity", type=Path, default=None, metavar="DATA",
                    help="only the DCGAN sanity check: scripts/default_data.py's folder (heldout/, dcgan/), for models fitted on its fit/")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs: indomain_data.py --smoke's data and two tiny fits")
    args = ap.parse_args()
    if args.smoke:
        sys.path.insert(0, str(Path(__file__).parent))
        from _smoke import default_data, fast_fit, indomain_data, indomain_fit, workdir

        from muflow_cli.pipelines.fit import fit

        args.data = indomain_data(workdir("native_resolution"))
        standard = DeepfakeModel.load(indomain_fit(args.data))
        native = fit([args.data / "videos" / "fit"], fast_fit(native=True), progress=False)[0]
        args.rounds = 1
        smoke_sanity = default_data(workdir("native_sanity_data"))  # heldout: t1.jpg and the astronaut; dcgan: examples/'
    elif args.standard is None or args.native is None or (args.data is None and args.sanity is None):
        ap.error("--standard, --native and DATA or --sanity DATA are required (or --smoke)")
    else:
        standard, native = DeepfakeModel.load(args.standard), DeepfakeModel.load(args.native)
        smoke_sanity = None
    if not native.native or standard.native:
        ap.error("--native must be a native model (fit --native) and --standard one that is not")
    models = {"standard": standard, "native": native}
    t = time.perf_counter()
    from _smoke import workdir

    if args.sanity is not None:
        for name, m in models.items():
            print(json.dumps({"model": name, **sanity(m, args.sanity, workdir("native_sanity"))}), flush=True)
        print(f"{time.perf_counter() - t:.0f} s")
        return 0
    rows = []
    variants = {"standard": standard, "native (mean)": pooled_by(native, "mean"), "native (top)": pooled_by(native, "top")}
    for name, m in variants.items():
        row = {"model": name, **in_domain(m, args.data)}
        if name == "native (top)":  # its calibration was pooled by mean, as the fit pooled it: rank only, no verdicts
            row = {k: v for k, v in row.items() if not k.startswith(("FPR", "TPR"))}
        else:  # large() reports both poolings of a native model
            row.update({**large(m, args.data), "crops a later face": crops_per_face(m, args.data / "videos" / "later")})
        rows.append(row)
        print(json.dumps(row), flush=True)
    if smoke_sanity is not None:  # the --sanity code too, on the smoke models
        for name, m in models.items():
            print(json.dumps({"model": name, **sanity(m, smoke_sanity, workdir("native_sanity"))}), flush=True)
    fast = speed(models, args.data / "videos" / "later", args.rounds)
    print(json.dumps({"faces/s": fast, "native / standard": fast["native"] / fast["standard"]}), flush=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.3f}" if isinstance(r.get(k), float) else str(r.get(k, "–")) for k in keys) + " |")
    print(f"\nspeed (later frames, median of {args.rounds} rounds): standard {fast['standard']:.1f} faces/s, native "
          f"{fast['native']:.1f} faces/s ({fast['native'] / fast['standard']:.2f}x)\n{time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
