"""Video frames: decode with OpenCV and sample them evenly in time (or in count).

Sampling reads the stream sequentially with ``grab()`` (no colour conversion) and ``retrieve()``
only for the frames it keeps. Seeking (``CAP_PROP_POS_FRAMES``) makes the decoder restart from
the previous key frame for every sample. benchmarks/video_throughput.py measures both at 1 frame/s
on the registry videos: seek/grab time 1.98, 1.26 and 0.75 — grabbing wins on two of three, and
decoding is under 5 % of the pipeline's time either way. Grabbing also gives exact container
timestamps for variable frame rates and needs no trustworthy frame count, so muflow grabs.

Timestamps come from the container (``CAP_PROP_POS_MSEC``), which also holds for variable
frame rates; when a stream reports none, the frame index over the nominal rate is used, and
when it reports no rate either, timestamps are left empty and sampling falls back to frame
indices (assuming 25 frames/s, said in the row's message).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from muflow_cli.inputs.images import InputError, refusal_message, special_file

# FFmpeg prints decoder complaints straight to stderr ("moov atom not found"); muflow reports
# each bad file as a row instead. Set OPENCV_FFMPEG_LOGLEVEL yourself to see them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".flv", ".mpg", ".mpeg", ".3gp", ".ts", ".mts"}
ASSUMED_FPS = 25.0


class VideoReadError(InputError):
    """A video that cannot be opened or decoded."""


@dataclass
class Frame:
    index: int  # frame number in the stream, from 0
    time: float  # seconds (NaN when the stream gives no timing)
    rgb: np.ndarray


@dataclass
class VideoInfo:
    fps: float  # nominal; NaN when unknown
    frames: int  # as the container declares (may be wrong or 0)
    width: int
    height: int
    note: str = ""


def open_video(path: Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a regular video file; a FIFO, socket, device or directory (or a link to one) is refused by
    name before OpenCV sees it (FFmpeg would wait forever on a FIFO)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise VideoReadError("unreadable", refusal_message(path, exc)) from None
    kind = special_file(path, st)
    if kind is not None:
        raise VideoReadError("unreadable", f"not a regular file: {kind}")
    if st.st_size == 0:
        raise VideoReadError("unreadable", "empty file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoReadError("unreadable", "not a video OpenCV can open (unknown container or codec, or no video stream)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and math.isfinite(fps) and 0 < fps < 1000 else float("nan")
    info = VideoInfo(fps, int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    if math.isnan(fps):
        info.note = f"no frame rate in the file: sampled by frame index assuming {ASSUMED_FPS:g} frames/s"
    return cap, info


def sample_frames(path: Path, fps: float | None = 1.0, count: int | None = None) -> tuple[VideoInfo, Iterator[Frame]]:
    """(info, frames): ``fps`` samples per second of video time, or ``count`` evenly spaced frames."""
    cap, info = open_video(path)
    rate = info.fps if not math.isnan(info.fps) else ASSUMED_FPS
    if count is not None:
        total = info.frames if info.frames > 0 else count_frames(path)
        keep = set(np.unique(np.linspace(0, max(total - 1, 0), min(count, max(total, 1))).round().astype(int)).tolist())
        want = lambda i, t: i in keep  # noqa: E731
    else:
        step = 1.0 / float(fps or 1.0)
        state = {"next": 0.0}

        def want(i: int, t: float) -> bool:
            clock = t if math.isfinite(t) else i / rate
            if clock + 1e-6 >= state["next"]:
                state["next"] += step * max(1, math.floor((clock - state["next"]) / step) + 1)
                return True
            return False

    def frames() -> Iterator[Frame]:
        i, last = 0, -1.0
        try:
            while cap.grab():
                pos = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                if math.isfinite(pos) and pos > last and (pos > 0 or i == 0):
                    t = last = pos  # container time: right for variable frame rates too
                elif not math.isnan(info.fps):
                    t = i / info.fps
                else:
                    t = float("nan")
                if want(i, t):
                    ok, bgr = cap.retrieve()
                    if ok and bgr is not None:
                        yield Frame(i, t, np.ascontiguousarray(bgr[..., ::-1]))
                i += 1
        finally:
            cap.release()

    return info, frames()


def count_frames(path: Path) -> int:
    """Frames OpenCV actually decodes (a container's frame count can be missing or off)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n
