"""Grouping faces for a calibration split by what they show, and splitting few long sequences by time.

Real photos only: faces cut out of t1.jpg (six people) and the astronaut and Tom Hanks portraits, as a
camera roll of numbered files; and clips written and decoded with OpenCV, as the frames of a few videos.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FAST_FIT, fast_fit_config, insightface_image, write_rgb
from PIL import Image
from typer.testing import CliRunner

from muflow_cli.cli import app
from muflow_cli.inputs.capture import capture_order, capture_places, capture_time
from muflow_cli.pipelines.fit import collect_faces, fit
from muflow_cli.pipelines.grouping import face_groups
from muflow_cli.stats.near_duplicates import fingerprint, similarity
from muflow_cli.stats.splits import MANY_GROUPS, calibration_split, sequence_tails, whole_groups

FAST_AUTO = [a for a in FAST_FIT if a not in ("--group-by", "file")]  # no grouping option: auto


def _people(t1_rgb, astronaut, face_detector) -> list[np.ndarray]:
    """Eight people as photos of their own: each face of t1.jpg with a margin, the astronaut, Tom Hanks."""
    faces = face_detector.faces(t1_rgb, size=128)
    out = []
    for f in faces:
        x0, y0, x1, y1 = f.box
        m = 0.6 * max(x1 - x0, y1 - y0)
        h, w = t1_rgb.shape[:2]
        out.append(t1_rgb[int(max(0, y0 - m)): int(min(h, y1 + m)), int(max(0, x0 - m)): int(min(w, x1 + m))])
    hanks = cv2.imread(str(insightface_image("Tom_Hanks_54745.png")))[..., ::-1]
    return out + [astronaut, hanks]


def _jitters(photo: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """The photo, a re-framed and downsized copy, and a mirrored one: near-copies, as re-posts are."""
    h, w = photo.shape[:2]
    dy, dx = (rng.integers(1, 6, size=2) * np.array([h, w]) / 200).astype(int)
    moved = cv2.resize(photo[dy: h - dy, dx: w - dx], None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    return [photo, moved, photo[:, ::-1]]


@pytest.fixture(scope="module")
def camera_roll(tmp_path_factory, t1_rgb, astronaut, face_detector) -> tuple[Path, dict[str, int]]:
    """24 files IMG_0001.jpg…IMG_0024.jpg: 8 people, 3 near-copies each, in shuffled order; and who is in each."""
    root = tmp_path_factory.mktemp("camera")
    rng = np.random.default_rng(0)
    photos = [(person, img) for person, photo in enumerate(_people(t1_rgb, astronaut, face_detector))
              for img in _jitters(photo, rng)]
    who = {}
    for n, k in enumerate(rng.permutation(len(photos)), start=1):
        person, img = photos[k]
        write_rgb(root / f"IMG_{n:04d}.jpg", img)
        who[f"IMG_{n:04d}.jpg"] = person
    return root, who


@pytest.fixture(scope="module")
def clips_folder(tmp_path_factory, t1_rgb, astronaut) -> Path:
    """Two clips written with OpenCV (mp4v) and decoded back, their frames in one folder as <clip>__<frame>.png:
    a slow pan over t1.jpg (6 faces a frame) and a slow zoom on the astronaut, 12 frames each."""
    root = tmp_path_factory.mktemp("clips")
    tmp = tmp_path_factory.mktemp("mp4")
    h, w = 360, 480
    scale = max((w + 48) / t1_rgb.shape[1], (h + 36) / t1_rgb.shape[0])  # room to pan 12 frames
    group = cv2.resize(t1_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    scenes = {
        "party": [group[3 * i: 3 * i + h, 4 * i: 4 * i + w] for i in range(12)],
        "portrait": [cv2.resize(astronaut[5 * i: 512 - 5 * i, 5 * i: 512 - 5 * i], (h, h), interpolation=cv2.INTER_AREA)
                     for i in range(12)],
    }
    for name, frames in scenes.items():
        path = tmp / f"{name}.mp4"
        size = frames[0].shape[1], frames[0].shape[0]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
        assert writer.isOpened()
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
        writer.release()
        cap, i = cv2.VideoCapture(str(path)), 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            cv2.imwrite(str(root / f"{name}__{i:05d}.png"), frame)
            i += 1
        cap.release()
        assert i == 12
    return root


def test_capture_order_is_natural_and_exif_time_is_read(tmp_path):
    names = ["clip__10.png", "clip__9.png", "IMG_0002.jpg", "IMG_0001.jpg"]
    places = capture_places([tmp_path / n for n in names], read_exif=False)
    assert [p.rank for p in places] == [1, 0, 1, 0]
    assert places[0].sequence == places[1].sequence != places[2].sequence
    assert capture_order(places, names) == [1, 0, 3, 2]  # clip__9, clip__10, IMG_0001, IMG_0002
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2026:05:01 12:00:05"
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg", exif=exif)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00garbage")
    assert capture_time(tmp_path / "a.jpg") is not None and capture_time(tmp_path / "bad.jpg") is None


def test_near_copies_are_joined_and_different_people_are_not(t1_rgb, astronaut, face_detector):
    people = _people(t1_rgb, astronaut, face_detector)
    crops = [face_detector.faces(p, size=256)[0].crop for p in people]
    prints = fingerprint(np.stack(crops))
    cosine, bits = similarity(prints, prints)
    other = ~np.eye(len(crops), dtype=bool)
    assert not ((bits <= 16) & (cosine >= 0.95) & other).any()  # eight people, eight groups
    again = cv2.imdecode(cv2.imencode(".jpg", cv2.resize(crops[0], (180, 180)), [cv2.IMWRITE_JPEG_QUALITY, 60])[1], 1)
    copies = fingerprint(np.stack([cv2.resize(again, (256, 256)), crops[0][:, ::-1]]))
    cosine, bits = similarity(copies, prints[:1])
    assert (bits[:, 0] <= 16).all() and (cosine[:, 0] >= 0.95).all()  # re-saved smaller, mirrored: near-copies


def test_a_camera_roll_is_one_group_per_person_not_one_burst(camera_roll):
    root, who = camera_roll
    crops, files, _, _, _ = collect_faces([root], fast_fit_config(crop_size=256), progress=False)
    assert len(files) == 24 and len(crops) == 24
    groups, order, links = face_groups(files, "auto", fingerprint(crops))
    persons = np.asarray([who[Path(f).name] for f in files])
    pairs = groups[:, None] == groups[None, :]
    same = persons[:, None] == persons[None, :]
    assert not (pairs & ~same).any()  # precision: no group holds two people
    assert (pairs[same]).mean() >= 0.9  # recall: a person's re-posts are found together
    assert links["copies"] >= 16 and len(np.unique(groups)) <= 10


def test_muflow_fit_takes_a_camera_roll_with_no_option(camera_roll, tmp_path):
    root, _ = camera_roll
    out = tmp_path / "camera.muflow"
    loud = [a for a in FAST_AUTO if a != "-q"]  # the summary too
    result = CliRunner().invoke(app, ["fit", str(root), "-o", str(out), *loud], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    from muflow_cli.model.deepfake_model import DeepfakeModel

    card = DeepfakeModel.load(out).card.training
    assert card.group_by == "auto" and card.split == "groups" and 7 <= card.groups <= 10
    assert card.calibration_faces >= 3 and card.fit_faces >= 12
    assert "calibration split" in result.output and "groups of near-duplicates, held out whole" in result.output
    assert "p-value tail" in result.output and "two (auto: too few held-out faces to probe)" in result.output
    info = CliRunner().invoke(app, ["info", str(out)], env={"COLUMNS": "200"})  # the card's split and its cautions, where a user looks
    assert info.exit_code == 0 and "whole groups held out" in info.output, info.output
    assert "caution" in info.output and f"only {card.calibration_faces} calibration faces" in info.output


def test_frames_of_a_few_clips_are_fitted_on_every_clip_and_calibrated_on_their_ends(clips_folder):
    model, report = fit([clips_folder], fast_fit_config(group_by="auto"), progress=False)
    assert report.split["kind"] == "tails" and report.split["groups"] == report.split["calibration_groups"] == 2
    assert report.fit_faces + report.calibration_faces + report.split["gap_faces"] == report.faces >= 60
    assert model.card.training.split == "tails" and any("2 groups" in w for w in report.warnings)
    crops, files, _, _, _ = collect_faces([clips_folder], fast_fit_config(), progress=False)
    groups, order, _ = face_groups(files, "auto", fingerprint(crops))
    split = calibration_split(groups, order, 0.2, np.random.default_rng(0))
    frame = np.asarray([int(Path(f).stem.split("__")[1]) for f in files])
    clip = np.asarray([Path(f).stem.split("__")[0] for f in files])
    for name in ("party", "portrait"):
        mine = clip == name
        assert len(np.unique(groups[mine])) == 1  # a clip is one group
        fitted, held, gap = frame[mine & split.fit], frame[mine & split.calibration], frame[mine & split.gap]
        assert len(fitted) and len(held) and fitted.max() < gap.min() <= gap.max() < held.min()


def test_whole_groups_with_many_groups_tails_with_few():
    rng = np.random.default_rng(0)
    many = np.repeat(np.arange(MANY_GROUPS), 12)
    split = calibration_split(many, None, 0.2, rng)
    assert split.kind == "groups" and not split.gap.any()
    for g in np.unique(many):
        assert len(set(split.calibration[many == g])) == 1
    few = np.repeat(np.arange(4), 50)
    order = np.tile(np.arange(50), 4)
    split = calibration_split(few, order, 0.2, rng)
    assert split.kind == "tails" and split.calibration_groups == 4
    for g in range(4):
        mine = few == g
        assert order[mine & split.calibration].min() == 40 and set(order[mine & split.gap]) == {38, 39}
    short = calibration_split(np.repeat(np.arange(5), 4), None, 0.2, rng)  # no sequence to cut: whole groups
    assert short.kind == "groups" and short.calibration.sum() == 4


def test_tails_never_cut_a_file_and_short_groups_go_whole():
    groups = np.r_[np.zeros(72, int), np.repeat(np.arange(1, 7), 2)]
    order = np.r_[np.repeat(np.arange(12), 6), np.arange(100, 112)]
    cal, gap = sequence_tails(groups, order, 0.2, np.random.default_rng(0))
    first = groups == 0
    assert set(order[first & cal]) == {9, 10, 11} and set(order[first & gap]) == {7, 8}
    for t in range(12):  # the six faces of a frame are on one side
        assert len({(c, g) for c, g in zip(cal[order == t], gap[order == t])}) == 1
    rest = ~first
    assert not gap[rest].any() and 0 < cal[rest].sum() <= 4
    assert np.array_equal(cal[rest], whole_groups(groups[rest], 0.2, np.random.default_rng(0)))


def test_a_long_group_with_one_place_in_time_goes_whole_instead_of_crashing():
    """A camera roll copied in one go: 12 faces of one group share one timestamp, so there is no later part
    to cut (this raised IndexError before); the group joins the short ones and goes whole or not at all."""
    groups = np.r_[np.zeros(12, int), np.repeat(np.arange(1, 5), 3), np.full(30, 5)]
    order = np.r_[np.zeros(12, int), np.arange(100, 112), np.arange(200, 230)]
    cal, gap = sequence_tails(groups, order, 0.2, np.random.default_rng(0))
    flat = groups == 0
    assert len(set(cal[flat])) == 1 and not gap[flat].any()  # whole, never cut
    assert cal[groups == 5].any() and gap[groups == 5].any()  # the cuttable sequence is still cut in time
    assert cal.any()
