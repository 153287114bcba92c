"""How a pre-aligned crop scores under `--aligned`, per convention, against the face it came from.

    python benchmarks/aligned_conventions.py [--model M]
    python benchmarks/aligned_conventions.py --smoke     # seconds: t1.jpg's faces only, two conventions

Each face of insightface's t1.jpg and scikit-image's astronaut is cut out of its photo in each
convention (muflow's own crop at 256 and 512 px, a 112-px ArcFace crop, a 512-px FFHQ-style crop),
saved losslessly, read back with `--aligned CONVENTION` and scored; the score is compared with the
face's score when scanned in its photo. Differences come from resampling twice and from the
reflected border where a convention's crop holds less context than muflow's template.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from muflow_cli.faces.align import aligned_face, aligned_landmarks, similarity
from muflow_cli.faces.detect import FaceDetector
from muflow_cli.model.deepfake_model import DeepfakeModel

CONVENTIONS = [("muflow", 256), ("muflow", 512), ("arcface", 112), ("ffhq", 512)]


def photos() -> list[np.ndarray]:
    from skimage import data

    t1 = Path(importlib.util.find_spec("insightface").origin).parent / "data" / "images" / "t1.jpg"
    return [cv2.imread(str(t1))[..., ::-1].copy(), data.astronaut()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: t1.jpg only, the muflow 256 and arcface conventions")
    args = ap.parse_args()
    model = DeepfakeModel.load(args.model)
    det = FaceDetector("scrfd")
    images = photos()[:1] if args.smoke else photos()
    conventions = [CONVENTIONS[0], CONVENTIONS[2]] if args.smoke else CONVENTIONS
    faces = [(img, f) for img in images for f in det.faces(img, model.crop_size, model.context)]
    base = model.score(np.stack([f.crop for _, f in faces]))["score"]
    print(f"{len(faces)} faces; spread of their scores (std) {base.std():.4f} nats/dim")
    print("| convention | crop px | mean abs score difference | max | as a share of the spread between faces |")
    print("|---|---|---|---|---|")
    for convention, size in conventions:
        crops = []
        for img, f in faces:
            M = similarity(f.landmarks, aligned_landmarks(size, size, convention))
            crop = cv2.warpAffine(img, M, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
            ok, buf = cv2.imencode(".png", crop[..., ::-1])  # lossless, as a user's crop folder would be
            crop = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
            crops.append(aligned_face(crop, convention, model.crop_size, model.context).crop)
        diff = np.abs(model.score(np.stack(crops))["score"] - base)
        print(f"| {convention} | {size} | {diff.mean():.4f} | {diff.max():.4f} | {diff.mean() / base.std():.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
