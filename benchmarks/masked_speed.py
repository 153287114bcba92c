"""What masking costs at scan time: the same flows scored by their masked and their unmasked ONNX graph.

    python benchmarks/masked_speed.py [--model M] [--batch 8] [--rounds 5]
    python benchmarks/masked_speed.py --smoke    # seconds: batch 2, one round of one batch

Issue #23 asks that scoring stay within 10 % of the unmasked model's speed. Both graphs are exported from
one model's tensors (the bundled one unless ``--model``): once with ``masked`` on (the ``valid`` input, the
masked layer norm and likelihood, nn/masking.py) and once off (the graph every bundle before masking has).
They score the same batch of real aligned crops (t1.jpg's and the astronaut's faces, repeated to
``--batch``; half of each masked crop cut off, as a headshot's is), in interleaved rounds so that the
machine's load falls on both alike; reported: faces/s of each (median of rounds) and their ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from muflow_cli.faces.detect import FaceDetector
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.model.engines.onnx_engine import OnnxEngine


def crops(size: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("insightface")
    t1 = cv2.imread(str(Path(spec.origin).parent / "data" / "images" / "t1.jpg"))[..., ::-1]
    from skimage import data

    det = FaceDetector("scrfd")
    faces = [f for img in (np.ascontiguousarray(t1), data.astronaut()) for f in det.faces(img, size=size)]
    out = np.stack([faces[i % len(faces)].crop for i in range(batch)])
    valid = np.ones(out.shape[:3], np.uint8)
    valid[:, :, : size // 2] = 0
    return out, valid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5, help="batches per round and graph")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: batch 2, one round of one batch (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        args.batch, args.rounds, args.reps = 2, 1, 1
    model = DeepfakeModel.load(args.model)
    backbone, flows = model.backbone, model.model
    was = flows.masked
    engines = {}
    for masked in (False, True):
        flows.masked = masked
        engines["masked" if masked else "unmasked"] = OnnxEngine.export(backbone, flows, model.crop_size)
    flows.masked = was
    batch, valid = crops(model.crop_size, args.batch)
    rates: dict[str, list[float]] = {k: [] for k in engines}
    for eng in engines.values():  # warm-up: session build, first run
        eng.set_spinning(False)
        eng(batch, valid, False)
    for _ in range(args.rounds):
        for name, eng in engines.items():
            t = time.perf_counter()
            for _ in range(args.reps):
                eng(batch, valid, False)
            rates[name].append(args.reps * len(batch) / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"batch {args.batch}, {args.rounds} rounds of {args.reps} batches per graph (interleaved)")
    for k, v in med.items():
        print(f"{k:9s} {v:7.1f} faces/s (rounds: {', '.join(f'{r:.1f}' for r in rates[k])})")
    print(f"masked / unmasked: {med['masked'] / med['unmasked']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
