"""Which combination of the score's parts: chosen on fit data, then measured on later reals and on fakes.

    python benchmarks/indomain_data.py data/ data/indomain/              # once
    muflow fit data/indomain/videos/fit -o four.muflow                    # `muflow fit` with no option
    python benchmarks/score_parts.py indomain data/indomain/ --model four.muflow
    python benchmarks/score_parts.py bundled data/                        # the bundled model, its own fit data
    python benchmarks/score_parts.py --smoke                              # a minute: tiny data, a tiny fit

µFlow's score is a negative log-likelihood, the sum of three parts (nn/nll.masked_layer_parts): the face-level
Gaussian term of the average faces, the per-position residual, and minus the flow's log-determinant. Issue #32
found them pulling different ways. Each candidate combination below is a function of the three parts whose
parameters (if any) come from the *fit faces* only:

- ``nll``: the sum (today's score); ``energy``: face + residual, the latent energy without the volume term
  (FastFlow's own anomaly map, -mean z^2 / 2, leaves the log-det out); ``face``, ``residual``, ``logdet`` alone;
- ``fisher``: one upper-tail p-value per part against the fit faces, combined by Fisher (-2 sum log p);
  ``fisher2``: the same over face and residual;
- ``typicality``: the Mahalanobis distance of the vector of parts from the fit faces' mean (their covariance).

The choice is made on the fit data alone (no fake, no later frame is looked at), by three rates that should
be the stated 0.05 for a score that generalises:

- *gap*: the share of held-out reals above the fit faces' 95 % quantile (a score the flows over-fit runs up
  on any face they did not see: later frames first);
- *forward*: the fit's forward check (stats/drift.py) with this score;
- *processed*: the share of held-out reals re-saved at JPEG 75 / shrunk to 1/2 above the clean held-out
  threshold (what processing alone does to the score, before any stratum matches it).

Then, for the record and never for the choice, per processing of the later reals (or the held-out sources'
reals for the bundled model): the rate at 0.05 against the clean held-out threshold (*pooled*) and against
the held-out reals processed the same way (*matched*, what the strata do), and the AUC and TPR (matched) on the
fakes processed the same way (GAN-upscaled later frames in domain; DCGAN faces for the bundled model).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from muflow_cli.faces.face import valid_masks
from muflow_cli.faces.options import FaceFinding
from muflow_cli.faces.stage import FaceStage
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.fit import FitConfig, gather_faces
from muflow_cli.pipelines.fit_config import FitReport
from muflow_cli.pipelines.fit_stages import hold_out
from muflow_cli.pipelines.strata_calibration import Processing, kept_faces
from muflow_cli.stats.calibration import Calibration
from muflow_cli.stats.drift import forward_rate

FPR = 0.05
PROCESSED = ("jpeg:75", "scale:0.5")  # the fit-data criterion's processings (the two that move scores most)
MEASURED = ("none", "jpeg:75", "jpeg:50", "scale:0.5", "resize:0.5")
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".webp"}


def scored_parts(model: DeepfakeModel, crops: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(n', 3) face, residual, log-det parts of the faces a scan scores, and which of the n faces those are
    (faces too little inside the photo have none, as in a scan)."""
    p = model.score_parts(crops, valid=valid, batch_size=16)
    out = np.stack([p["face"], p["residual"], p["logdet"]], 1)
    ok = np.isfinite(out).all(1)
    return out[ok], ok


def parts_of(model: DeepfakeModel, crops: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    return scored_parts(model, crops, valid)[0]


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXT)


def faces_parts(model: DeepfakeModel, files: list, spec: str) -> np.ndarray:
    """Parts of every face in ``files`` after processing ``spec``, found and aligned as a scan would."""
    finding = FaceFinding()
    make = model.card.face_detector.factory(finding)
    with FaceStage(finding, make, model.crop_size, model.context, None if spec == "none" else Processing.parse(spec)) as stage:
        faces = [f for res in stage.map([Path(f) for f in files]) for f in kept_faces(res, model.card.training.min_face_px, model.masked)[1]]
    if not faces:
        return np.zeros((0, 3))
    return parts_of(model, np.stack([f.crop for f in faces]), valid_masks(faces))


@dataclass
class Combination:
    """A score from the parts, its parameters taken from the fit faces' parts."""

    name: str

    def fitted(self, fit: np.ndarray) -> "Combination":
        self.ref = np.sort(fit, 0)
        self.mean, cov = fit.mean(0), np.cov(fit.T)
        self.prec = np.linalg.inv(cov + 1e-9 * np.eye(3))
        return self

    def __call__(self, p: np.ndarray) -> np.ndarray:
        f, r, ld = p[:, 0], p[:, 1], p[:, 2]
        if self.name == "nll":
            return f + r + ld
        if self.name == "energy":
            return f + r
        if self.name in ("face", "residual", "logdet"):
            return p[:, ("face", "residual", "logdet").index(self.name)]
        if self.name.startswith("fisher"):
            cols = (0, 1, 2) if self.name == "fisher" else (0, 1)
            n = len(self.ref)
            # upper-tail p of each part against the fit faces (+1 smoothing keeps log finite)
            ps = [(n - np.searchsorted(self.ref[:, c], p[:, c], side="left") + 1) / (n + 1) for c in cols]
            return -2 * np.sum(np.log(ps), 0)
        if self.name == "typicality":
            d = p - self.mean
            return np.einsum("ni,ij,nj->n", d, self.prec, d)
        raise ValueError(self.name)


COMBINATIONS = ("nll", "energy", "face", "residual", "logdet", "fisher", "fisher2", "typicality")


def rate_above(cal: np.ndarray, test: np.ndarray, fpr: float = FPR) -> float:
    """Share of ``test`` flagged at ``fpr`` by a conformal upper-tail calibration on ``cal``."""
    c = Calibration(cal, "upper")
    return c.verdicts(c.p_values(test), fpr).count("fake") / max(len(test), 1)


@dataclass
class FitData:
    fit: np.ndarray  # parts of the fit faces
    held: np.ndarray  # parts of the held-out (calibration) faces
    held_groups: np.ndarray
    held_order: np.ndarray | None
    per_group: bool
    held_files: list  # the held-out faces' files, processed for the criterion
    processed: dict  # spec -> parts of the held-out files processed so


def indomain_fit_data(model: DeepfakeModel, data: Path, config: FitConfig) -> FitData:
    """The fit's own split, made again: gather the fit folder's faces and hold out as `muflow fit` did (same seed)."""
    faces = gather_faces([data / "videos" / "fit"], config, progress=False)
    split = hold_out(faces.crops, faces.groups, faces.order, config, np.random.default_rng(config.seed), FitReport(), None, faces.valid)
    assert split.mask.sum() == model.card.calibration.faces, (split.mask.sum(), model.card.calibration.faces)
    fit = parts_of(model, np.asarray(split.fit[:]), None if split.fit_valid is None else np.asarray(split.fit_valid[:]))
    held, ok = scored_parts(model, np.asarray(split.calibration), None if split.calibration_valid is None else np.asarray(split.calibration_valid))
    files = list(dict.fromkeys(faces.sources[i] for i in np.flatnonzero(split.mask)))
    order = None if faces.order is None else np.asarray(faces.order)[split.mask][ok]
    return FitData(fit, held, np.asarray(faces.groups)[split.mask][ok], order, True, files, {})


def bundled_fit_data(model: DeepfakeModel, data: Path) -> FitData:
    """The bundled model's folders split again as scripts/make_default_model.py does."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from make_default_model import split_folders

    fit_folders, cal_folders = split_folders(data / "fit", 0.4, 0)
    fit_files = [f for d in fit_folders for f in files_in(d)]
    cal_files = [f for d in cal_folders for f in files_in(d)]
    fit = faces_parts(model, fit_files, "none")
    finding = FaceFinding()
    make = model.card.face_detector.factory(finding)
    groups, faces = [], []
    with FaceStage(finding, make, model.crop_size, model.context, None) as stage:
        for f, res in zip(cal_files, stage.map(cal_files)):
            for face in kept_faces(res, model.card.training.min_face_px, model.masked)[1]:
                groups.append(next(i for i, d in enumerate(cal_folders) if d in f.parents))
                faces.append(face)
    held, ok = scored_parts(model, np.stack([f.crop for f in faces]), valid_masks(faces))
    return FitData(fit, held, np.asarray(groups)[ok], None, False, cal_files, {})


def criteria(fd: FitData, combo: Combination) -> dict:
    fit_s, held_s = combo(fd.fit), combo(fd.held)
    out = {"gap": rate_above(fit_s, held_s)}
    fw = forward_rate(held_s, fd.held_groups, fd.held_order, fd.per_group, FPR, "upper")
    out["forward"] = None if fw is None else fw[0]
    for spec, parts in fd.processed.items():
        out[f"processed {spec}"] = rate_above(held_s, combo(parts))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("setting", nargs="?", choices=("indomain", "bundled"))
    ap.add_argument("data", type=Path, nargs="?", help="indomain: benchmarks/indomain_data.py's folder; bundled: scripts/default_data.py's")
    ap.add_argument("--model", type=Path, help="indomain: a bundle fitted on DATA/videos/fit; bundled: default weights/default.muflow")
    ap.add_argument("--measured", nargs="+", default=list(MEASURED), help="processings of the later reals and fakes measured")
    ap.add_argument("--out", type=Path, help="write every part of every face here (.npz) for further study")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    config = FitConfig()  # the settings `muflow fit` ran with (its split is made again)
    if args.smoke:
        sys.path.insert(0, str(Path(__file__).parent))
        from _smoke import fast_fit, indomain_data, indomain_fit, workdir

        args.setting, args.data = "indomain", indomain_data(workdir("score_parts"))
        args.model, config = indomain_fit(args.data), fast_fit()
        args.measured = ["none", "jpeg:75"]
    elif args.setting is None or args.data is None:
        ap.error("SETTING and DATA are required (or --smoke)")
    model = DeepfakeModel.load(args.model) if args.model else DeepfakeModel.load()
    if args.setting == "indomain":
        fd = indomain_fit_data(model, args.data, config)
        reals, fakes = args.data / "videos" / "later", args.data / "videos" / "fakes" / "gan"
    else:
        fd = bundled_fit_data(model, args.data)
        reals, fakes = args.data / "heldout", args.data / "dcgan"
    for spec in sorted(set(PROCESSED) | set(args.measured) - {"none"}):
        fd.processed[spec] = faces_parts(model, fd.held_files, spec)
    measured = {spec: (faces_parts(model, files_in(reals), spec), faces_parts(model, files_in(fakes), spec)) for spec in args.measured}
    print(f"{args.setting}: {len(fd.fit)} fit faces, {len(fd.held)} held out; "
          + ", ".join(f"{s}: {len(r)} reals / {len(f)} fakes" for s, (r, f) in measured.items()), flush=True)
    if args.out:
        np.savez(args.out, fit=fd.fit, held=fd.held, **{f"held_{k}": v for k, v in fd.processed.items()},
                 **{f"real_{k}": r for k, (r, _) in measured.items()}, **{f"fake_{k}": f for k, (_, f) in measured.items()})
    rows = []
    for name in COMBINATIONS:
        combo = Combination(name).fitted(fd.fit)
        row = {"combination": name, **criteria(fd, combo)}
        held_s = combo(fd.held)
        for spec, (r, f) in measured.items():
            cal = held_s if spec == "none" else combo(fd.processed[spec])
            rs, fs = combo(r), combo(f)
            row[f"{spec} FPR pooled"] = rate_above(held_s, rs)
            row[f"{spec} FPR matched"] = rate_above(cal, rs)
            row[f"{spec} TPR matched"] = rate_above(cal, fs)
            row[f"{spec} AUC"] = float(roc_auc_score(np.r_[np.zeros(len(rs)), np.ones(len(fs))], np.r_[rs, fs])) if len(rs) and len(fs) else None
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
