"""Face finding: recall and false faces by margin and by face size, before and after issue #11.

    python benchmarks/face_recall.py [--json out.json] [--gan 50] [--repeat 5]
    python benchmarks/face_recall.py --smoke     # seconds: 2 faces a photo, one margin, one size, one canvas, SCRFD, examples/' DCGAN faces

Images (all from packages the project may use):
* ground truth: SCRFD (one 640-px pass, as before) on insightface's t1.jpg (6 faces) and
  scikit-image's astronaut (1 face): boxes and nose tips in photo pixels;
* margin crops: each face cut at 1.0, 1.15, 1.3, 1.6, 2.0, 3.0 x its box (centred), at native
  size and with the longer side resized to 256 px;
* size bins: each face cut at 1.3 x its box and resized so the face is 64-1024 px; and the faces
  at 24, 32 and 40 px pasted on a 4000x3000 textured background (scikit-image's grass, tiled);
* DCGAN faces (gan-face-generate 1.1.1, weights opened with weights_only=True) at 64 and 256 px;
* whole photos: t1 and astronaut (also the times per ordinary photo).

A true face counts as found when a detection's box contains its nose tip and the two boxes'
sizes (geometric mean of width and height) are within a factor of 2. A detection that matches
no true face (every face of the photo that lies in the image counts) is a false face.
A DCGAN image holds one face that fills it: found when a detection contains the image centre
and is at least a third of the image; every other detection is a false face.

Configurations: ``before`` = ``FaceDetector(mode="single")`` (the one pass muflow ran until now);
``after`` = the default; ``after/fallback`` = zoomed-out pass only when the normal pass finds
nothing; ``after/min24`` = default plus ``min_face=24`` (tiles in large images).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from muflow_cli.faces.detect import FaceDetector  # noqa: E402

MARGINS = (1.0, 1.15, 1.3, 1.6, 2.0, 3.0)
BIG_SIZES = (64, 128, 256, 512, 1024)
SMALL_SIZES = (24, 32, 40)
FACES_PER_PHOTO: int | None = None  # faces of each photo cut into margin and size cases (None: all; --smoke: 2)
CONFIGS = {
    "before": dict(mode="single"),
    "after": dict(),
    "after/fallback": dict(large_pass="fallback"),
    "after/min24": dict(min_face=24),
}


def photos() -> dict[str, np.ndarray]:
    import insightface
    from skimage import data

    t1 = cv2.imread(str(Path(insightface.__file__).parent / "data/images/t1.jpg"))[..., ::-1].copy()
    return {"t1": t1, "astronaut": data.astronaut()}


def size(box) -> float:
    return float(np.sqrt(max(box[2] - box[0], 0) * max(box[3] - box[1], 0)))


def cut(image: np.ndarray, box: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The box widened by ``margin`` about its centre, clipped to the image; and its top-left corner."""
    c = (box[:2] + box[2:]) / 2
    half = (box[2:] - box[:2]) * margin / 2
    x0, y0 = np.maximum(np.round(c - half), 0).astype(int)
    x1, y1 = np.minimum(np.round(c + half), image.shape[1::-1]).astype(int)
    return image[y0:y1, x0:x1], np.array([x0, y0], float)


def shifted(truth: list, origin: np.ndarray, scale: float, shape) -> list:
    """True faces moved into a crop's pixels; those whose nose lies outside are dropped."""
    out = []
    for box, nose in truth:
        b, n = (box - np.tile(origin, 2)) * scale, (nose - origin) * scale
        if 0 <= n[0] < shape[1] and 0 <= n[1] < shape[0]:
            out.append((b, n))
    return out


def make_cases(gan: int, cache: Path, gan_faces: np.ndarray | None = None) -> list[dict]:
    """Each case: image, group (margin/size bin), targets (faces to find), truth (all real faces).
    ``gan_faces``: (N, 64, 64, 3) DCGAN faces to use instead of ``gan`` drawn from the generator."""
    gt_det = FaceDetector("scrfd", mode="single")
    cases = []
    for name, img in photos().items():
        truth = [(f.box, f.landmarks[2]) for f in gt_det.detect(img)]
        cases.append(dict(group="whole photo", image=img, targets=truth, truth=truth, photo=name))
        for i, (box, _) in enumerate(truth[:FACES_PER_PHOTO]):
            for m in MARGINS:
                crop, origin = cut(img, box, m)
                local = shifted(truth, origin, 1.0, crop.shape)
                me = [shifted([truth[i]], origin, 1.0, crop.shape)[0]]
                cases.append(dict(group=f"margin {m} native", image=crop, targets=me, truth=local))
                s = 256 / max(crop.shape[:2])
                small = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
                cases.append(dict(group=f"margin {m} 256px", image=small, targets=shifted(me, np.zeros(2), s, small.shape),
                                  truth=shifted(local, np.zeros(2), s, small.shape)))
            crop, origin = cut(img, box, 1.3)
            local = shifted(truth, origin, 1.0, crop.shape)
            me = [shifted([truth[i]], origin, 1.0, crop.shape)[0]]
            for px in BIG_SIZES:
                s = px / size(box)
                im = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
                cases.append(dict(group=f"face {px} px", image=im, targets=shifted(me, np.zeros(2), s, im.shape),
                                  truth=shifted(local, np.zeros(2), s, im.shape)))
    cases += large_canvases(cases)
    if gan_faces is None and gan:
        from scripts.default_data import dcgan_faces

        gan_faces = dcgan_faces(cache, gan, seed=11)
    if gan_faces is not None:
        for img in gan_faces:
            cases.append(dict(group="DCGAN 64 px", image=img, gan=True))
            cases.append(dict(group="DCGAN 256 px", image=cv2.resize(img, (256, 256), interpolation=cv2.INTER_CUBIC), gan=True))
    return cases


def large_canvases(cases: list[dict]) -> list[dict]:
    """The 7 faces at 24, 32 and 40 px (1.3x crops, area-reduced) on 4000x3000 tiled grass, one canvas per size."""
    from skimage import data

    grass = cv2.cvtColor(data.grass(), cv2.COLOR_GRAY2RGB)
    tex = np.tile(grass, (6, 8, 1))[:3000, :4000]
    tex = (tex * np.array([0.7, 0.9, 0.6])).astype(np.uint8)
    faces = [c for c in cases if c["group"] == "face 256 px"]
    out = []
    rng = np.random.default_rng(0)
    for px in SMALL_SIZES:
        canvas, targets = tex.copy(), []
        for k, c in enumerate(faces * 3):
            s = px / 256
            im = cv2.resize(c["image"], None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            gy, gx = divmod(k, 7)
            x0, y0 = 300 + gx * 500 + int(rng.integers(0, 100)), 400 + gy * 900 + int(rng.integers(0, 100))
            h, w = im.shape[:2]
            canvas[y0 : y0 + h, x0 : x0 + w] = im
            box, nose = c["targets"][0]
            targets.append((box * s + [x0, y0, x0, y0], nose * s + [x0, y0]))
        out.append(dict(group=f"face {px} px in 4000x3000", image=canvas, targets=targets, truth=targets))
    return out


def judge(case: dict, faces) -> tuple[int, int, int]:
    """(targets found, targets, false faces)."""
    if case.get("gan"):
        h, w = case["image"].shape[:2]
        hit = [f for f in faces if f.box[0] <= w / 2 <= f.box[2] and f.box[1] <= h / 2 <= f.box[3] and f.size_px >= max(h, w) / 3]
        return int(bool(hit)), 1, len(faces) - min(1, len(hit))

    def match(f, box, nose) -> bool:
        inside = f.box[0] <= nose[0] <= f.box[2] and f.box[1] <= nose[1] <= f.box[3]
        return inside and 0.5 <= f.size_px / max(size(box), 1e-6) <= 2

    found = sum(any(match(f, *t) for f in faces) for t in case["targets"])
    false = sum(not any(match(f, *t) for t in case["truth"]) for f in faces)
    return found, len(case["targets"]), false


def run(cases: list[dict], kinds: tuple[str, ...], repeat: int) -> dict:
    results: dict = {}
    for kind in kinds:
        for cfg, kw in CONFIGS.items():
            det = FaceDetector(kind, threads=1, **kw)
            det.detect(cases[0]["image"])  # warm-up
            acc = defaultdict(lambda: [0, 0, 0, 0, 0.0])  # found, targets, false, images, seconds
            for c in cases:
                t = time.perf_counter()
                faces = det.detect(c["image"])
                dt = time.perf_counter() - t
                f, n, fp = judge(c, faces)
                a = acc[c["group"]]
                a[0] += f
                a[1] += n
                a[2] += fp
                a[3] += 1
                a[4] += dt
            results[f"{kind} {cfg}"] = dict(groups={g: dict(found=a[0], targets=a[1], false=a[2], images=a[3], seconds=a[4]) for g, a in acc.items()})
            print(f"done {kind} {cfg}", file=sys.stderr)
        for cfg, seconds in photo_times(kind, repeat).items():
            results[f"{kind} {cfg}"]["photo_seconds"] = seconds
    return results


def photo_times(kind: str, repeat: int) -> dict[str, dict[str, float]]:
    """Median seconds per whole photo; configurations take turns, so machine load hits all alike."""
    dets = {cfg: FaceDetector(kind, threads=1, **kw) for cfg, kw in CONFIGS.items()}
    out: dict[str, dict[str, float]] = {cfg: {} for cfg in dets}
    for name, img in photos().items():
        samples = defaultdict(list)
        for _ in range(repeat + 1):
            for cfg, det in dets.items():
                t = time.perf_counter()
                det.detect(img)
                samples[cfg].append(time.perf_counter() - t)
        for cfg in dets:
            out[cfg][name] = float(np.median(samples[cfg][1:]))  # the first round warms up
    return out


def table(results: dict) -> str:
    names = list(results)
    groups = list(next(iter(results.values()))["groups"])
    lines = ["| set (images) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for g in groups:
        r0 = results[names[0]]["groups"][g]
        cells = []
        for n in names:
            r = results[n]["groups"][g]
            cells.append(f"{100 * r['found'] / max(r['targets'], 1):.0f}% ({r['found']}/{r['targets']}), {r['false']} fp")
        lines.append(f"| {g} ({r0['images']}) | " + " | ".join(cells) + " |")
    lines.append("| ms per image, large canvases | " + " | ".join(
        f"{1000 * sum(v['seconds'] for k, v in results[n]['groups'].items() if '4000' in k) / 3:.0f}" for n in names) + " |")
    for photo in ("t1", "astronaut"):
        lines.append(f"| ms per {photo} (whole photo) | " + " | ".join(f"{1000 * results[n]['photo_seconds'][photo]:.0f}" for n in names) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None, help="also write the raw counts here")
    ap.add_argument("--gan", type=int, default=50, help="DCGAN faces (0: skip; needs torch and the wheel)")
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / ".cache", help="where the DCGAN wheel is downloaded")
    ap.add_argument("--repeat", type=int, default=15, help="timing repeats per whole photo")
    ap.add_argument("--kinds", default="scrfd,yunet")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: 2 faces a photo, margin 1.3, faces of 256 px, "
                    "one 32-px canvas, SCRFD only, one timing repeat, the DCGAN faces of examples/ (numbers meaningless)")
    args = ap.parse_args()
    gan_faces = None
    if args.smoke:
        global MARGINS, BIG_SIZES, SMALL_SIZES, FACES_PER_PHOTO
        from _smoke import dcgan_faces

        MARGINS, BIG_SIZES, SMALL_SIZES, FACES_PER_PHOTO = (1.3,), (256,), (32,), 2
        args.kinds, args.repeat, args.json, gan_faces = "scrfd", 1, None, dcgan_faces()
    cases = make_cases(args.gan, args.cache, gan_faces)
    results = run(cases, tuple(args.kinds.split(",")), args.repeat)
    print("Recall (found/targets) and false faces, one thread per detector; times on the same run (median of --repeat, configurations interleaved).\n")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
