"""Does a face's score depend on its framing? The same face in its photo, tightly cropped, and bordered.

    python benchmarks/framing.py [--model M] [--photos DIR ...] [--fpr 0.05] [--json OUT]
    python benchmarks/framing.py --smoke         # seconds: t1.jpg and the astronaut, the 1.3 crop's four variants only

Issue #23: the aligned crop (context 1.5) reaches past the image edge when a face fills the frame, and the
missing pixels are filled by reflection; the flows then score the mirrored copy too. Here every face of
the photos (insightface's t1.jpg, scikit-image's astronaut, and any ``--photos`` folders, e.g. the
registry photos of scripts/default_data.py's data/heldout and data/fit/*_photos) is scanned in its photo,
then as a square crop of ``margin`` x the face box (clipped to the photo) at each margin of MARGINS, at
native resolution and resized to 256 px, and the 1.3 crop again on a grey and a black border of half its
side. Each variant is one image in one scan (the model loaded once); its face is the one whose box centre
lies nearest the expected one (IoU >= 0.3, else "lost").

Per variant: faces found, mean and largest |score change| against the in-photo score, the share of verdicts
(at ``--fpr``, the model's tail) that change (a face left unscored counts as changed), faces not scored (a
masked model: too little of the crop inside the image), the median share of the crop inside the image, and
the mean change as a share of the between-face spread (standard deviation of the in-photo scores, and a
robust one). Nothing is fitted; the model is the bundled one unless ``--model``.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from muflow_cli.inputs.images import iter_image_files
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.scan import ScanConfig, scan

MARGINS = (1.0, 1.15, 1.3, 2.0)
RESIZED = 256  # px, longest side: what a dataset crop or a generator output often is
BORDER_MARGIN, BORDER_SHARE = 1.3, 0.5  # the bordered variants: the 1.3 crop, half its side of border each way
BORDERS = {"grey": (128, 128, 128), "black": (0, 0, 0)}
MIN_IOU = 0.3


def default_photos() -> list[Path]:
    """t1.jpg (insightface) and the astronaut (scikit-image), written once to a temporary folder."""
    spec = importlib.util.find_spec("insightface")
    t1 = Path(spec.origin).parent / "data" / "images" / "t1.jpg"
    from skimage import data

    out = Path(tempfile.mkdtemp(prefix="framing_src_")) / "astronaut.png"
    atexit.register(shutil.rmtree, out.parent, ignore_errors=True)
    cv2.imwrite(str(out), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return [t1, out]


def unique(paths: list[Path]) -> list[Path]:
    """The photos, each picture once (data/heldout holds t1.jpg and the astronaut too): by decoded pixels."""
    seen, out = set(), []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        key = hashlib.sha1(img.tobytes()).hexdigest() if img is not None else str(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def square(box: np.ndarray, margin: float, w: int, h: int) -> tuple[int, int, int, int]:
    """A square of ``margin`` x the box's longer side around its centre, clipped to the image."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = margin * max(box[2] - box[0], box[3] - box[1]) / 2
    return (max(0, int(round(cx - half))), max(0, int(round(cy - half))),
            min(w, int(round(cx + half))), min(h, int(round(cy + half))))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def variants(image: np.ndarray, box: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (variant image, where the face's box should be in it)."""
    h, w = image.shape[:2]
    out = {}
    for m in MARGINS:
        x1, y1, x2, y2 = square(box, m, w, h)
        crop = image[y1:y2, x1:x2]
        where = box - np.array([x1, y1, x1, y1], float)
        out[f"crop {m:g} native"] = (crop, where)
        s = RESIZED / max(crop.shape[:2])
        small = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                           interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        out[f"crop {m:g} {RESIZED}px"] = (small, where * s)
        if m == BORDER_MARGIN:
            pad = round(BORDER_SHARE * max(crop.shape[:2]))
            for name, colour in BORDERS.items():
                framed = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=colour)
                out[f"crop {m:g} on {name} border"] = (framed, where + pad)
    return out


def match(rows: pd.DataFrame, where: np.ndarray) -> pd.Series | None:
    faces = rows[rows["status"] == "ok"]
    if faces.empty:
        return None
    boxes = faces[["x1", "y1", "x2", "y2"]].to_numpy(float)
    centre = (where[:2] + where[2:]) / 2
    i = int(np.argmin(np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - centre, axis=1)))
    return faces.iloc[i] if iou(boxes[i], where) >= MIN_IOU else None


def run(photos: list[Path], model: DeepfakeModel, fpr: float) -> tuple[pd.DataFrame, dict]:
    config = ScanConfig(fpr=fpr, provenance=False)
    base = scan(photos, model, config, progress=False)
    base = base[base["status"] == "ok"].reset_index(drop=True)
    records, expected = [], {}
    with tempfile.TemporaryDirectory(prefix="framing_") as tmp:
        for j, row in base.iterrows():
            image = cv2.imread(str(row["file"]), cv2.IMREAD_COLOR)
            box = row[["x1", "y1", "x2", "y2"]].to_numpy(float)
            for k, (name, (img, where)) in enumerate(variants(image, box).items()):
                path = Path(tmp) / f"f{j:04d}_v{k:02d}.png"
                cv2.imwrite(str(path), img)
                expected[path.name] = (j, name, where)
        table = scan(sorted(Path(tmp).glob("*.png")), model, config, progress=False)
        for file, rows in table.groupby("file"):
            j, name, where = expected[Path(file).name]
            hit = match(rows, where)
            ref = base.iloc[j]
            side = max(ref["x2"] - ref["x1"], ref["y2"] - ref["y1"])
            h, w = ref["image_height"], ref["image_width"]
            records.append({"face": j, "variant": name, "found": hit is not None,
                            "face_share": float(side / max(h, w)),
                            "inside": float(hit["inside"]) if hit is not None else np.nan,
                            "unscored": bool(hit is not None and pd.isna(hit["score"])),
                            "delta": float(hit["score"] - ref["score"]) if hit is not None and not pd.isna(hit["score"]) else np.nan,
                            "flip": (bool(pd.isna(hit["verdict"]) or hit["verdict"] != ref["verdict"])) if hit is not None else False})
    df = pd.DataFrame(records)
    spread = float(base["score"].std(ddof=1)) if len(base) > 1 else float("nan")
    sc = base["score"].to_numpy(float)
    robust = float(1.4826 * np.median(np.abs(sc - np.median(sc)))) if len(sc) else float("nan")  # a few tiny faces do not set it
    return df, {"faces": len(base), "spread": spread, "robust_spread": robust, "photos": len(photos),
                "flagged_in_photo": float((base["verdict"] == "fake").mean()) if len(base) else float("nan")}


def summarise(df: pd.DataFrame, spread: float, robust: float) -> pd.DataFrame:
    found = df[df["found"]]
    g = found.groupby("variant", sort=False)
    out = pd.DataFrame({
        "faces found": df.groupby("variant", sort=False)["found"].sum().astype(int),
        "of": df.groupby("variant", sort=False)["found"].size(),
        "mean |Δ|": g["delta"].apply(lambda d: d.abs().mean()),
        "max |Δ|": g["delta"].apply(lambda d: d.abs().max()),  # faces scored in both
        "verdicts changed": g["flip"].mean(),
        "not scored": g["unscored"].sum().astype(int),
        "median inside": g["inside"].median(),
    })
    out["mean |Δ| / spread"] = out["mean |Δ|"] / spread
    out["mean |Δ| / robust spread"] = out["mean |Δ|"] / robust
    return out


def markdown(table: pd.DataFrame) -> str:
    """The summary as a markdown table (shares as percentages, scores to 3 decimals)."""
    head = ["variant", *table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in table.iterrows():
        cells = [str(name), str(int(row["faces found"])), str(int(row["of"])), f"{row['mean |Δ|']:.3f}", f"{row['max |Δ|']:.3f}",
                 f"{row['verdicts changed']:.1%}", str(int(row["not scored"])), f"{row['median inside']:.2f}",
                 f"{row['mean |Δ| / spread']:.2f}", f"{row['mean |Δ| / robust spread']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="a .muflow bundle (default: the bundled model)")
    ap.add_argument("--photos", type=Path, nargs="*", default=[], help="more folders of photos")
    ap.add_argument("--fpr", type=float, default=0.05)
    ap.add_argument("--json", type=Path, default=None, help="write the per-face records and the summary here")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: the default photos only, margin 1.3 only "
                    "(native, resized, two borders; numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        global MARGINS
        MARGINS, args.photos, args.json = (BORDER_MARGIN,), [], None
    model = DeepfakeModel.load(args.model) if args.model else DeepfakeModel.load()
    photos = unique(default_photos() + [p for folder in args.photos for p in iter_image_files([folder])])
    df, info = run(photos, model, args.fpr)
    table = summarise(df, info["spread"], info["robust_spread"])
    print(f"{info['photos']} photos, {info['faces']} faces in them; between-face spread (sd of in-photo scores) "
          f"{info['spread']:.3f} (robust, 1.4826 MAD: {info['robust_spread']:.3f}); "
          f"flagged in their photos at fpr {args.fpr}: {info['flagged_in_photo']:.1%}\n")
    print(markdown(table))
    bins = pd.cut(df["face_share"], [0, 0.15, 0.75, np.inf], labels=["<= 0.15", "0.15-0.75", "> 0.75"])
    print("\n| face side / photo's longer side | faces | mean |Δ| over every variant | verdicts changed |\n|---|---|---|---|")
    for label, part in df[df["found"]].groupby(bins[df["found"]], observed=True):
        print(f"| {label} | {part['face'].nunique()} | {part['delta'].abs().mean():.3f} | {part['flip'].mean():.1%} |")
    if args.json:
        args.json.write_text(json.dumps({"info": info, "records": df.to_dict("records"),
                                         "summary": table.reset_index().to_dict("records")}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
