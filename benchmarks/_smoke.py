"""Tiny inputs for the benchmarks' ``--smoke`` modes, made in seconds from images that ship with the dependencies.

Not a benchmark (no ``__main__``). Each script's ``--smoke`` runs its own measuring code on these inputs with
small sizes and one repeat, so that tests/test_benchmarks.py notices a benchmark that no longer runs (an import
that moved, a signature that changed) without the data sets (scripts/default_data.py, benchmarks/indomain_data.py)
or the minutes a real run takes. What a smoke run prints is no measurement.

Sources: insightface's ``data/images/t1.jpg`` (6 faces) and scikit-image's astronaut (1 face), cut into seven
one-face portraits; their variants (jitter, mirror, rescale, brightness) stand for photos, slowly drifting crops
for video frames; the DCGAN faces of ``examples/`` (64-px faces on a 32-px grey margin) for fakes.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def insightface_image(name: str = "t1.jpg") -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        raise SystemExit("insightface is not installed")
    return Path(spec.origin).parent / "data" / "images" / name


def t1_rgb() -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(insightface_image("t1.jpg")))[..., ::-1])


def astronaut_rgb() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def workdir(tag: str) -> Path:
    """A fresh temporary folder, removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix=f"muflow-smoke-{tag}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


# Set by tests/test_benchmarks.py to one folder for the whole test session: the in-domain smoke data (and the tiny fit
# on it) that three scripts need is then made once, by the first that asks, and copied by the others (about 20 s each
# saved). Unset (a script run by hand): each run makes its own in its work folder.
SHARED_ENV = "MUFLOW_SMOKE_SHARED"


def indomain_data(work: Path) -> Path:
    """``work``/indomain: benchmarks/indomain_data.py's build on its --smoke inputs (8 frames a video), made here or
    copied from the session's shared folder. indomain_data.py --smoke itself always builds: that is its test."""
    import os

    from indomain_data import build, smoke_inputs, smoke_upscaler

    shared = os.environ.get(SHARED_ENV)
    made = Path(shared) / "indomain" if shared else work / "indomain"
    if not (made / ".complete").is_file():
        shutil.rmtree(made, ignore_errors=True)
        build(smoke_inputs(made.parent / "inputs"), made, max_frames_per_video=8, verbose=False, upscaler=smoke_upscaler(made / ".cache"),
              large_side=48)
        (made / ".complete").write_text("ok\n")
    if not shared:
        return made
    out = work / "indomain"
    shutil.copytree(made, out, ignore=shutil.ignore_patterns(".complete", "fit.muflow"))
    return out


def indomain_fit(data: Path) -> Path:
    """The tiny :func:`fast_fit` model of ``data``/videos/fit, saved beside the data; fitted once a session where the
    data came from the shared folder (the same data, the same settings and seed: the same model)."""
    import os

    from muflow_cli.pipelines.fit import fit

    shared = os.environ.get(SHARED_ENV)
    path = (Path(shared) / "indomain" / "fit.muflow") if shared else (data / "fit.muflow")
    if not (path / "card.json").is_file():
        fit([data / "videos" / "fit"], fast_fit(), progress=False)[0].save(path)
    return path


def write(path: Path, rgb: np.ndarray, quality: int = 92) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())
    return path


@functools.cache
def portraits() -> tuple[np.ndarray, ...]:
    """Seven one-face RGB portraits: the astronaut, and each face of t1.jpg cut at 2.2x its box (square)."""
    from muflow_cli.faces.detect import FaceDetector

    t1 = t1_rgb()
    h, w = t1.shape[:2]
    out = [astronaut_rgb()]
    for f in sorted(FaceDetector("scrfd").detect(t1), key=lambda f: f.box[0]):
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        half = 1.1 * max(f.box[2] - f.box[0], f.box[3] - f.box[1])
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        out.append(np.ascontiguousarray(t1[y0 : min(h, int(cy + half)), x0 : min(w, int(cx + half))]))
    return tuple(out)


def variant(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A photo-like variant: a jittered crop, mirrored half the time, rescaled, brightness changed a little."""
    h, w = rgb.shape[:2]
    dx, dy = (int(v) for v in rng.integers(0, max(2, w // 12), size=2))
    img = rgb[dy : h - int(rng.integers(0, max(2, h // 12))), dx : w - int(rng.integers(0, max(2, w // 12)))]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    s = float(rng.uniform(0.8, 1.2))
    img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    return np.clip(img * rng.uniform(0.9, 1.1), 0, 255).astype(np.uint8)


def photos(folder: Path, n: int, seed: int = 0, suffix: str = ".jpg", start: int = 0) -> list[Path]:
    """``n`` one-face photos (variants of the portraits in turn, from portrait ``start``) written to ``folder``."""
    rng = np.random.default_rng(seed)
    src = portraits()
    return [write(folder / f"photo_{i:03d}{suffix}", variant(src[(start + i) % len(src)], rng)) for i in range(n)]


def frames(rgb: np.ndarray, n: int, seed: int = 0, side: int | None = None) -> list[np.ndarray]:
    """``n`` video-like frames of one portrait: a crop window drifting a pixel or two a frame, light drifting too."""
    rng = np.random.default_rng(seed)
    h, w = rgb.shape[:2]
    cw, ch = int(w * 0.85), int(h * 0.85)
    out = []
    for i in range(n):
        x0, y0 = min(w - cw, 2 * i), min(h - ch, i)
        img = rgb[y0 : y0 + ch, x0 : x0 + cw]
        if side:
            img = cv2.resize(img, (side, round(side * ch / cw)), interpolation=cv2.INTER_AREA)
        out.append(np.clip(img.astype(np.float32) * (1 + 0.01 * i) + rng.normal(0, 1.5, img.shape), 0, 255).astype(np.uint8))
    return out


def write_video(path: Path, rgb_frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """An MPEG-4 (mp4v) video of the frames (OpenCV's own encoder: no codec library needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = rgb_frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not out.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for f in rgb_frames:
        out.write(np.ascontiguousarray(f[..., ::-1]))
    out.release()
    return path


def dcgan_files() -> list[Path]:
    """examples/dcgan_*.png: DCGAN faces as scripts/default_data.py writes data/dcgan (64-px face, 32-px grey margin)."""
    return sorted(EXAMPLES.glob("dcgan_*.png"))


def dcgan_faces() -> np.ndarray:
    """(N, 64, 64, 3) RGB: the examples' DCGAN faces without their margin, as scripts/default_data.dcgan_faces returns them."""
    return np.stack([cv2.imread(str(p))[32:-32, 32:-32, ::-1] for p in dcgan_files()])


def default_data(root: Path, frames_per_video: int = 6) -> Path:
    """A miniature of scripts/default_data.py's output: ``fit/`` (one folder per photo, video or CK+-like
    sequence, as its fit_set lays them out), ``heldout/`` and ``dcgan/``. About 40 fit faces, 4 held out, 4 DCGAN."""
    src = portraits()
    rng = np.random.default_rng(0)
    fit = root / "fit"
    for i in range(4):
        write(fit / "dlib_photos" / f"photo{i}" / f"photo{i}.jpg", variant(src[i % len(src)], rng))
    for i in range(2):
        write(fit / "pyfeat_photos" / f"test{i}" / f"test{i}.jpg", variant(src[(4 + i) % len(src)], rng))
    for kind, k in (("fer_video", 1), ("fer_video", 2), ("pyfeat_video", 3), ("pyfeat_video", 5)):
        for j, f in enumerate(frames(src[k], frames_per_video, seed=k)):
            write(fit / kind / f"video{k}" / f"frame_{j:04d}.png", f)
    for k in (6, 0):  # greyscale sequences, as the CK+ frames are
        for j, f in enumerate(frames(src[k], frames_per_video, seed=10 + k)):
            write(fit / "ckplus" / f"S{k:03d}" / f"S{k:03d}_001_{j:08d}.png", np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[..., None], 3, 2))
    write(root / "heldout" / "insightface" / "t1.jpg", t1_rgb())
    write(root / "heldout" / "skimage" / "astronaut.png", astronaut_rgb())
    (root / "dcgan").mkdir(parents=True, exist_ok=True)
    for p in dcgan_files():
        shutil.copy(p, root / "dcgan" / p.name.replace("dcgan_", "dcgan_000"))
    return root


SMOKE_CROP = 64  # px: the smallest crop a fit takes (crop size >= 64, a multiple of the backbone's stride 16)


def fast_fit(**changes):
    """A FitConfig that fits in seconds: tests/conftest.py's fast_fit_config (2 flow steps, 16 averages, batch 8)
    with 64-px crops and one epoch."""
    from muflow_cli.nn.config import FlowConfig
    from muflow_cli.pipelines.fit import FitConfig

    return FitConfig(**{"crop_size": SMOKE_CROP, "epochs": 1, "flow": FlowConfig(steps=2), "averages": 16, "batch_size": 8, **changes})


def small_fit() -> dict:
    """fast_fit's size settings (crop size, flows, averages, batch) for a script's own ``FitConfig(..., **small_fit())``,
    and no calibration strata: re-saving, re-detecting and re-scoring the calibration photos per processing costs
    more than the rest of such a tiny fit, and the benchmark's own code runs the same either way."""
    c = fast_fit()
    return {"crop_size": c.crop_size, "flow": c.flow, "averages": c.averages, "batch_size": c.batch_size, "strata": False}
