"""Write examples/: a few small images that may be shipped, so `muflow scan examples` works on a fresh clone.

    python scripts/make_examples.py                  # fetches gan-face-generate 1.1.1's wheel with pip once
    python scripts/make_examples.py --cache data/.cache   # or uses a wheel downloaded there before

- astronaut.jpg: scikit-image's ``data.astronaut()`` (Eileen Collins, NASA; public domain), JPEG
  quality 90. Needs scikit-image (a test dependency of muflow).
- dcgan_0.png ... dcgan_3.png: faces from gan-face-generate 1.1.1's DCGAN (MIT), seed 0, each
  64x64 face on a 32-px grey margin (scripts/default_data.py builds the generator).

Deterministic: the same versions of torch, OpenCV and scikit-image write the same bytes. It prints
each file's size and sha256; examples/README.md says where each file comes from and its licence.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import default_data  # noqa: E402  (scripts/ is not a package)

ROOT = Path(__file__).resolve().parent.parent
DCGAN_FACES = 4
DCGAN_SEED = 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "examples")
    ap.add_argument("--cache", type=Path, default=None, help="folder holding (or to receive) gan-face-generate 1.1.1's wheel")
    args = ap.parse_args()
    from skimage import data

    images = {"astronaut.jpg": cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)}
    with tempfile.TemporaryDirectory(prefix="muflow-examples-") as tmp:
        for i, face in enumerate(default_data.dcgan_faces(args.cache or Path(tmp), DCGAN_FACES, DCGAN_SEED)):
            # The 64x64 face on a 32-px grey margin, as in the sanity check (scripts/default_data.py).
            images[f"dcgan_{i}.png"] = cv2.copyMakeBorder(face[..., ::-1], 32, 32, 32, 32, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, bgr in images.items():
        params = [cv2.IMWRITE_JPEG_QUALITY, 90] if name.endswith(".jpg") else [cv2.IMWRITE_PNG_COMPRESSION, 9]
        ok, buf = cv2.imencode(Path(name).suffix, bgr, params)
        assert ok, name
        (args.out / name).write_bytes(buf.tobytes())
        print(f"{name:<14} {len(buf):>7} bytes  sha256 {hashlib.sha256(buf.tobytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
