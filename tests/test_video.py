"""muflow video on a real clip made here: t1.jpg drifting a few pixels per frame, then a cut to the astronaut."""

from __future__ import annotations

import math
import wave

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from muflow_cli.cli import app
from muflow_cli.faces.tracks import Tracker, iou_matrix, merge_p_values
from muflow_cli.inputs.video import sample_frames

FPS = 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory, t1_rgb, astronaut) -> "tuple":
    """4 s at 10 frames/s: 2 s of t1.jpg (6 faces) shifting 2 px right and 1 px down per frame, then 2 s of the astronaut."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    h, w = 448, 640
    group = cv2.resize(t1_rgb, (w, round(t1_rgb.shape[0] * w / t1_rgb.shape[1])), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
    assert writer.isOpened()
    for i in range(40):
        frame = np.full((h, w, 3), 90, np.uint8)
        if i < 20:
            dx, dy = 2 * i, i
            frame[dy : dy + group.shape[0], dx:] = group[: h - dy, : w - dx]
        else:
            frame[: 448, 96 : 96 + 448] = cv2.resize(astronaut, (448, 448), interpolation=cv2.INTER_AREA)
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def test_sampling_by_rate_and_by_count(clip):
    info, frames = sample_frames(clip, fps=2.0)
    got = [(f.index, round(f.time, 3)) for f in frames]
    assert info.fps == pytest.approx(FPS) and info.frames == 40
    assert got == [(i, i / FPS) for i in range(0, 40, 5)]
    _, frames = sample_frames(clip, fps=None, count=4)
    assert [f.index for f in frames] == [0, 13, 26, 39]


def test_video_tracks_and_time_spans(clip, tmp_path, small_model):
    frames_csv, tracks_csv, faces_dir = tmp_path / "frames.csv", tmp_path / "tracks.csv", tmp_path / "faces"
    res = CliRunner().invoke(app, ["video", str(clip), "--model", str(small_model), "--fps", "2", "--csv", str(frames_csv),
                                   "--tracks", str(tracks_csv), "--save-faces", str(faces_dir)], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    frames = pd.read_csv(frames_csv)
    tracks = pd.read_csv(tracks_csv)
    assert len(tracks) == 7, tracks  # six people in the group photo, then the astronaut
    group, solo = tracks[tracks["first_s"] == 0.0], tracks[tracks["first_s"] > 0]
    assert len(group) == 6 and set(group["last_s"]) == {1.5} and set(group["faces"]) == {4}
    assert len(solo) == 1 and solo["first_s"].item() == 2.0 and solo["last_s"].item() == 3.5 and solo["faces"].item() == 4
    assert len(frames) == 28 and set(frames["status"]) == {"ok"}
    assert frames.groupby("track")["frame"].nunique().eq(4).all()
    assert tracks["p_value"].between(0, 1).all() and set(tracks["verdict"]) <= {"real", "fake"}
    assert len(list(faces_dir.glob("clip/track*_*.png"))) == 7 * 3
    assert "muflow video" in res.output and "clip.mp4" in res.output


def test_bad_videos_get_a_status_row(tmp_path, clip, small_model):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "text.mp4").write_text("not a video")
    (bad / "truncated.mp4").write_bytes(clip.read_bytes()[:2000])
    with wave.open(str(bad / "audio_only.wav"), "wb") as w:  # audio, no video stream
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes((np.sin(np.arange(8000) / 5) * 3000).astype(np.int16).tobytes())
    out = tmp_path / "t.csv"
    args = ["video", str(bad), str(bad / "audio_only.wav"), "--model", str(small_model), "--tracks", str(out), "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    t = pd.read_csv(out).set_index("video")
    assert len(t) == 4
    for name in ("empty.mp4", "text.mp4", "truncated.mp4", "audio_only.wav"):
        row = t.loc[str(bad / name)]
        assert row["status"] in {"unreadable", "no_frames"} and len(row["message"]) > 0, (name, row.to_dict())


def test_tracks_survive_a_short_gap_but_not_a_long_one():
    tr = Tracker(min_iou=0.2, max_gap=2)
    box = np.array([[10, 10, 60, 70]])
    a = tr.update(0, box, [0])[0]
    assert tr.update(3, box + 2, [1])[0] == a  # missing from samples 1 and 2: same track
    assert tr.update(7, box + 4, [2])[0] != a  # missing from 4, 5, 6: a new track
    assert [len(t.members) for t in tr.tracks()] == [2, 1]
    assert iou_matrix(box, box)[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("dependence", ["identical", "independent", "correlated"])
def test_track_p_value_controls_false_positives_on_real_tracks(dependence):
    rng = np.random.default_rng(0)
    alpha, trials, m, hits = 0.1, 2000, 30, 0
    for _ in range(trials):
        if dependence == "identical":
            p = np.full(m, rng.uniform())
        elif dependence == "independent":
            p = rng.uniform(size=m)
        else:  # AR(1) scores, as consecutive frames of one face
            z = np.empty(m)
            z[0] = rng.normal()
            for i in range(1, m):
                z[i] = 0.9 * z[i - 1] + math.sqrt(1 - 0.81) * rng.normal()
            from scipy.stats import norm

            p = norm.sf(z)
        hits += merge_p_values(p) <= alpha
    assert hits / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


def test_video_resume_after_sigkill_is_identical(clip, tmp_path, small_model):
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from muflow_cli.pipelines.journal import journal_path

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        shutil.copy(clip, videos / name)

    def cmd(out, *extra):
        return [sys.executable, "-m", "muflow_cli", "video", str(videos), "--model", str(small_model), "--fps", "2",
                "--tracks", str(out), "-q", *extra]

    subprocess.run(cmd(tmp_path / "ref.csv"), check=True, timeout=300)
    out = tmp_path / "t.csv"
    proc = subprocess.Popen(cmd(out))
    journal = journal_path(out)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if journal.is_file() and journal.read_text().count("\n") >= 2:  # header + the first video
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    subprocess.run(cmd(out, "--resume"), check=True, timeout=300)
    assert out.read_bytes() == (tmp_path / "ref.csv").read_bytes()
