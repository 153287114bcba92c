"""The user's workflow, in domain: fit on your own reals, scan more of them and regenerated fakes of them.

    python scripts/default_data.py data/                        # once: the registry's videos and photos
    python benchmarks/indomain_data.py data/ data/indomain/     # once: splits and regenerated fakes
    python benchmarks/indomain.py data/indomain/ [--settings auto auto+augment file] [--reuse]
    python benchmarks/indomain.py --smoke                       # a minute: indomain_data.py --smoke's data, one setting, small flows

Data (benchmarks/indomain_data.py): frames of four real videos in one folder (``<video>__<frame>.png``), the
first 70 % of each to fit on; their later frames after a gap; two other videos ("held-out sequences");
from the later frames, three kinds of fakes: 4x downscaled then upscaled by Real-ESRGAN x4plus (``gan``),
a classical landmark-aligned, colour-matched, Poisson-blended face swap between people of the set
(``swap``), and a plain 4x bicubic round trip (``bicubic``, the control); a camera roll of independent
photos named IMG_0001.jpg… (fit) and more such photos (held out).

Per fit setting (``auto``: what `muflow fit FOLDER` does with no option; ``file``: every file its own group,
frames straddling the split; ``+augment``: one degraded copy of each fit face, nn/augment.py; ``+unmasked``:
the model of before issue #23, whole crops scored and no framed copies, for comparison):

- the fit's split (kind, groups, faces), and the grouping's pairwise precision and recall against the
  true video of each frame, and on the camera roll against "each photo its own source";
- AUC, later real frames against each kind of fake of them (clean, and both sides under jpeg:75 and
  resize:0.5), and held-out sequences against their gan/bicubic fakes;
- the false-positive rate at the model's own threshold (fpr 0.05) on later frames (clean, jpeg:75,
  resize:0.5) and on held-out sequences, two-sided and upper tail, and the share of later frames below
  the two-sided lower cutoff (faces flagged for being typical);
- a complexity-corrected score (Serrà et al., ICLR 2020): score - b * (c - mean c), c the PNG size of the
  grey aligned crop in bits per pixel, b fitted by least squares on the *fit* faces' scores (never on
  calibration or test faces), calibrated on the fit's own held-out faces (rebuilt here by the same seeded
  split, checked against the model's calibration scores), upper tail.

The choice of tail is made on the fit data, never on the test sets: ``muflow fit --tail auto`` probes it with
bicubic copies of the calibration faces (reported as ``tail`` / ``tail_probe_auc``), and the side the fit's own
regenerated fakes fall on (``videos/dev``: frames of the fit folder, made like the test fakes) is reported too.
Results go to stdout as markdown tables and to ``data/indomain/results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from muflow_cli.faces.options import FaceFinding
from muflow_cli.faces.stage import FaceStage
from muflow_cli.inputs.images import iter_image_files
from muflow_cli.inputs.perturb import parse
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.fit import FitConfig, collect_faces, fit
from muflow_cli.pipelines.grouping import face_groups
from muflow_cli.stats.calibration import Calibration
from muflow_cli.stats.near_duplicates import fingerprint
from muflow_cli.stats.splits import calibration_split

FPR = 0.05
PERTURB = ("none", "jpeg:75", "resize:0.5")
SMALL: dict = {}  # FitConfig settings every fit here takes (--smoke: 64-px crops, small flows, few averages)


def complexity(crops: np.ndarray) -> np.ndarray:
    """PNG size of each grey aligned crop, in bits per pixel: the input-complexity estimate of Serrà et al."""
    out = np.zeros(len(crops))
    for i, c in enumerate(crops):
        grey = cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_RGB2GRAY)
        out[i] = 8 * len(cv2.imencode(".png", grey, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1]) / grey.size
    return out


class Faces:
    """Aligned crops of every face of a folder, under each perturbation, found once for every model."""

    def __init__(self, size: int = 256, context: float = 1.5) -> None:
        self.size, self.context, self.memo = size, context, {}
        finding = FaceFinding()
        self.finding = finding
        self.make = DeepfakeModel.load().card.face_detector.factory(finding)

    def __call__(self, folder: Path, perturb: str = "none") -> tuple[np.ndarray, list[str]]:
        key = (str(folder), perturb)
        if key not in self.memo:
            files = list(iter_image_files([folder]))
            transform = None if perturb == "none" else parse(perturb)
            crops, names, valid = [], [], []
            with FaceStage(self.finding, self.make, self.size, self.context, transform) as stage:
                for res in stage.map(files):
                    if res.status == "ok":
                        kept = [f for f in res.faces if f.size_px >= 24]
                        crops += [f.crop for f in kept]
                        valid += [f.valid for f in kept]
                        names += [Path(res.path).name] * len(kept)
            empty = np.zeros((0, self.size, self.size, 3), np.uint8)
            self.memo[key] = (np.stack(crops) if crops else empty, names, np.stack(valid) if valid else np.zeros(empty.shape[:3], bool))
        return self.memo[key][:2]

    def scores(self, model: DeepfakeModel, folder: Path, perturb: str = "none") -> np.ndarray:
        """The model's scores of the faces of ``folder`` (a masked model: of what lies inside each photo)."""
        crops, _ = self(folder, perturb)
        return model.score(crops, valid=self.memo[(str(folder), perturb)][2])["score"]


def auc(real: np.ndarray, fake: np.ndarray) -> float:
    if not len(real) or not len(fake):
        return float("nan")
    return float(roc_auc_score(np.r_[np.zeros(len(real)), np.ones(len(fake))], np.r_[real, fake]))


def pairwise(groups: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pairwise precision and recall of a grouping against the true source of each face."""
    same_g, same_t = groups[:, None] == groups[None, :], truth[:, None] == truth[None, :]
    iu = np.triu_indices(len(groups), 1)
    together, true = same_g[iu], same_t[iu]
    tp = (together & true).sum()
    return {"precision": float(tp / max(together.sum(), 1)), "recall": float(tp / max(true.sum(), 1)),
            "groups": int(len(np.unique(groups))), "sources": int(len(np.unique(truth)))}


def grouping_quality(folder: Path, config: FitConfig, truth_of) -> dict[str, float]:
    crops, files, _, _, _ = collect_faces([folder], config, progress=False)
    groups = face_groups(files, "auto", fingerprint(crops))[0]
    truth = np.asarray([truth_of(Path(f).name) for f in files])
    return pairwise(groups, truth)


class Corrected:
    """score - b (c - c̄), b and c̄ fitted on the fit faces, calibrated on the fit's own held-out faces."""

    def __init__(self, model: DeepfakeModel, folder: Path, config: FitConfig) -> None:
        crops, files, _, _, valid = collect_faces([folder], config, progress=False)
        self.valid = valid
        groups, order, _ = face_groups(files, config.group_by, fingerprint(crops) if config.group_by == "auto" else None)
        split = calibration_split(groups, order, config.calibration_fraction, np.random.default_rng(config.seed))
        cal = model.score(crops[split.calibration], valid=valid[split.calibration])["score"]
        self.calibration_check = float(np.max(np.abs(np.sort(cal) - model.calibration.scores))) if len(cal) == len(
            model.calibration) else float("inf")
        fit_idx = np.flatnonzero(split.fit)
        pick = np.random.default_rng(1).choice(fit_idx, size=min(300, len(fit_idx)), replace=False)
        s_fit, c_fit = model.score(crops[pick], valid=valid[pick])["score"], complexity(crops[pick])
        self.slope, self.centre = np.polyfit(c_fit, s_fit, 1)[0], float(c_fit.mean())
        self.r = float(np.corrcoef(c_fit, s_fit)[0, 1])
        self.calibration = Calibration(cal - self.slope * (complexity(crops[split.calibration]) - self.centre), "upper")

    def scores(self, model: DeepfakeModel, faces: Faces, folder: Path, perturb: str) -> np.ndarray:
        crops, _ = faces(folder, perturb)
        return faces.scores(model, folder, perturb) - self.slope * (complexity(crops) - self.centre)


def flagged(cal: Calibration, scores: np.ndarray, tail: str) -> float:
    return float((cal.p_values(scores, tail) <= FPR).mean()) if len(scores) else float("nan")


def evaluate_model(name: str, model: DeepfakeModel, data: Path, faces: Faces, corrected: Corrected | None) -> dict:
    v = data / "videos"
    res: dict = {"setting": name}
    kinds = [k.name for k in sorted((v / "fakes").iterdir()) if k.is_dir()]
    low, _ = model.calibration.cutoffs(FPR, "two")
    for p in PERTURB:
        s_later = faces.scores(model, v / "later", p)
        row = {"later_faces": len(s_later)}
        for tail in ("two", "upper"):
            row[f"fpr_later_{tail}"] = flagged(model.calibration, s_later, tail)
        row["below_low_cutoff_later"] = float((s_later < low).mean()) if low is not None else 0.0
        for k in kinds:
            row[f"auc_{k}"] = auc(s_later, faces.scores(model, v / "fakes" / k, p))
            if corrected is not None:
                row[f"auc_{k}_corrected"] = auc(corrected.scores(model, faces, v / "later", p),
                                                corrected.scores(model, faces, v / "fakes" / k, p))
        if corrected is not None:
            row["fpr_later_corrected"] = flagged(corrected.calibration, corrected.scores(model, faces, v / "later", p), "upper")
        if p == "none" and (v / "heldout").is_dir():
            s_held = faces.scores(model, v / "heldout", p)
            for tail in ("two", "upper"):
                row[f"fpr_heldout_{tail}"] = flagged(model.calibration, s_held, tail)
            if corrected is not None:
                row["fpr_heldout_corrected"] = flagged(corrected.calibration, corrected.scores(model, faces, v / "heldout", p), "upper")
            for k in ("gan", "bicubic"):
                if (v / "fakes_heldout" / k).is_dir():
                    row[f"auc_heldout_{k}"] = auc(s_held, faces.scores(model, v / "fakes_heldout" / k, p))
        res[p] = row
    return res


def dev_sides(model: DeepfakeModel, data: Path, faces: Faces) -> dict:
    """On which side of the calibration the fit folder's own regenerated fakes fall (``videos/dev``: fakes
    of a sample of fit frames, made as the test fakes are): what the tail is chosen on."""
    dev = data / "videos" / "dev"
    out = {}
    if not dev.is_dir():
        return out
    low, high = model.calibration.cutoffs(FPR, "two")
    cal = model.calibration.scores
    for kind in sorted(k for k in dev.iterdir() if k.is_dir()):
        s = faces.scores(model, kind)
        out[kind.name] = {"faces": len(s), "above_median": float((s > np.median(cal)).mean()),
                          "below_low_cutoff": float((s < low).mean()) if low is not None else 0.0,
                          "above_high_cutoff": float((s > high).mean()) if high is not None else 0.0,
                          "flagged_two": flagged(model.calibration, s, "two"),
                          "flagged_upper": flagged(model.calibration, s, "upper")}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", help="benchmarks/indomain_data.py's output folder")
    ap.add_argument("--settings", nargs="+", default=["auto", "auto+augment"])
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--reuse", action="store_true", help="load models fitted by an earlier run")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs: the tiny data of indomain_data.py --smoke (made here, "
                    "from t1.jpg and the astronaut) instead of DATA, the auto setting, clean and jpeg:75 only, 1 epoch, 64-px crops, 2 flow steps "
                    "(numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        global SMALL, PERTURB
        from _smoke import indomain_data, small_fit, workdir

        args.data = indomain_data(workdir("indomain"))
        args.settings, args.epochs, args.reuse, PERTURB, SMALL = ["auto"], 1, False, PERTURB[:2], small_fit()
    elif args.data is None:
        ap.error("DATA is required (or --smoke)")
    models = args.data / "models"
    models.mkdir(exist_ok=True)
    faces = Faces(size=SMALL.get("crop_size", 256))
    results: dict = {"fpr": FPR, "settings": {}}
    t0 = time.perf_counter()
    video_of = lambda name: name.split("__")[0]  # noqa: E731
    results["grouping"] = {"videos": grouping_quality(args.data / "videos" / "fit", FitConfig(), video_of),
                           "camera_roll": grouping_quality(args.data / "photos" / "fit", FitConfig(), lambda n: n)}
    print("grouping (pairwise precision / recall):", json.dumps(results["grouping"]), flush=True)
    for setting in args.settings:
        group_by, *extras = setting.split("+")
        unmasked = "unmasked" in extras  # the model of before issue #23: the whole crop scored, no framed copies
        config = FitConfig(group_by=group_by, augment=1 if "augment" in extras else 0, epochs=args.epochs,
                           masked=not unmasked, **SMALL)
        path = models / f"{setting}.muflow"
        t = time.perf_counter()
        if args.reuse and path.is_file():
            model = DeepfakeModel.load(path)
        else:
            model, report = fit([args.data / "videos" / "fit"], config, progress=False)
            model.save(path)
        tr = model.card.training
        corrected = Corrected(model, args.data / "videos" / "fit", config)
        res = evaluate_model(setting, model, args.data, faces, corrected)
        res["fit"] = {"split": tr.split, "groups": tr.groups, "calibration_groups": tr.calibration_groups,
                      "faces": tr.faces, "fit_faces": tr.fit_faces, "calibration_faces": tr.calibration_faces,
                      "gap_faces": tr.gap_faces, "tail": model.calibration.tail,
                      "tail_probe_auc": model.card.calibration.tail_probe_auc, "seconds": time.perf_counter() - t}
        res["corrected"] = {"slope": float(corrected.slope), "r_fit": corrected.r,
                            "calibration_rebuilt_max_diff": corrected.calibration_check}
        res["dev"] = dev_sides(model, args.data, faces)
        results["settings"][setting] = res
        print(json.dumps(res), flush=True)
    cam = models / "camera.muflow"
    if args.reuse and cam.is_file():
        cmodel = DeepfakeModel.load(cam)
    else:
        cmodel, _ = fit([args.data / "photos" / "fit"], FitConfig(epochs=args.epochs, **SMALL), progress=False)
        cmodel.save(cam)
    s = faces.scores(cmodel, args.data / "photos" / "heldout")
    tr = cmodel.card.training
    results["camera_roll"] = {"split": tr.split, "groups": tr.groups, "faces": tr.faces, "calibration_faces": tr.calibration_faces,
                              "tail": cmodel.calibration.tail, "tail_probe_auc": cmodel.card.calibration.tail_probe_auc,
                              "heldout_faces": len(s), "fpr_two": flagged(cmodel.calibration, s, "two"),
                              "fpr_upper": flagged(cmodel.calibration, s, "upper"),
                              "min_p_two": cmodel.calibration.min_p("two"), "min_p_upper": cmodel.calibration.min_p("upper"),
                              **{f"flagged_at_{a}_{tail}": float((cmodel.calibration.p_values(s, tail) <= a).mean()) if len(s) else float("nan")
                                 for a in (0.1, 0.2) for tail in ("two", "upper")}}
    print("camera roll:", json.dumps(results["camera_roll"]), flush=True)
    results["seconds"] = time.perf_counter() - t0
    (args.data / "results.json").write_text(json.dumps(results, indent=1))
    print_tables(results)
    return 0


def print_tables(results: dict) -> None:
    print("\n| setting | split | perturb | AUC gan | AUC swap | AUC bicubic | AUC gan (corr.) | FPR later two / upper / corr. | below low cutoff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, res in results["settings"].items():
        for p in PERTURB:
            r = res[p]
            print(f"| {name} | {res['fit']['split']} ({res['fit']['groups']} groups) | {p} | {r.get('auc_gan', float('nan')):.3f} | "
                  f"{r.get('auc_swap', float('nan')):.3f} | {r.get('auc_bicubic', float('nan')):.3f} | "
                  f"{r.get('auc_gan_corrected', float('nan')):.3f} | {r['fpr_later_two']:.1%} / {r['fpr_later_upper']:.1%} / "
                  f"{r.get('fpr_later_corrected', float('nan')):.1%} | {r['below_low_cutoff_later']:.1%} |")
    print("\n| setting | FPR held-out sequences two / upper / corr. | AUC held-out gan / bicubic |")
    print("|---|---|---|")
    for name, res in results["settings"].items():
        r = res["none"]
        print(f"| {name} | {r.get('fpr_heldout_two', float('nan')):.1%} / {r.get('fpr_heldout_upper', float('nan')):.1%} / "
              f"{r.get('fpr_heldout_corrected', float('nan')):.1%} | {r.get('auc_heldout_gan', float('nan')):.3f} / "
              f"{r.get('auc_heldout_bicubic', float('nan')):.3f} |")


if __name__ == "__main__":
    sys.exit(main())
