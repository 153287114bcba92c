import numpy as np
import pytest
from PIL import Image

from muflow_cli.inputs.images import ImageReadError, iter_image_files, read_image


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = 255  # left half white
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    im.save(tmp_path / "o6.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "o6.jpg")
    assert out.shape == (40, 20, 3)
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # the white half is now on top


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.fromarray(np.full((8, 9), 77, np.uint8)),  # grey
        lambda: Image.fromarray(np.full((8, 9), 77 * 257, np.uint16)),  # 16-bit grey
        lambda: Image.fromarray(np.full((8, 9, 4), 77, np.uint8), "RGBA"),
        lambda: Image.fromarray(np.full((8, 9, 3), 77, np.uint8)).convert("P"),
    ],
    ids=["grey", "grey16", "rgba", "palette"],
)
def test_odd_modes_become_rgb8(tmp_path, make):
    make().save(tmp_path / "x.png")
    out = read_image(tmp_path / "x.png")
    assert out.shape == (8, 9, 3) and out.dtype == np.uint8


def test_bad_files_raise_with_a_status(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "full.jpg")
    (tmp_path / "trunc.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:200])
    for name, msg in [("empty.jpg", "empty"), ("text.jpg", "not an image"), ("trunc.jpg", "truncated")]:
        with pytest.raises(ImageReadError) as e:
            read_image(tmp_path / name)
        assert e.value.status == "unreadable" and msg in e.value.message


def test_huge_declared_size_is_refused_before_decoding(tmp_path):
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError) as e:
        read_image(tmp_path / "big.png", max_pixels=5000)
    assert e.value.status == "too_large"


def test_walk_is_sorted_recursive_and_survives_a_symlink_loop(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b" / "c.PNG").write_bytes(b"")
    (tmp_path / "b" / "readme.txt").write_text("x")
    (tmp_path / "b" / "loop").symlink_to(tmp_path)
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path])]
    assert found == ["a.jpg", "b/c.PNG"]


def _refused_in_time(read, path, seconds: float = 20.0):
    """``read(path)``'s exception, from a daemon thread, failing (not hanging) if it blocks."""
    import threading

    box: dict = {}

    def run():
        try:
            read(path)
        except Exception as exc:  # noqa: BLE001 - the caller checks what it was
            box["exc"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"reading {path} blocked for {seconds} s"
    return box.get("exc")


def test_special_files_are_refused_by_name_without_blocking(tmp_path):
    import os
    import socket

    os.mkfifo(tmp_path / "pipe.jpg")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock.png"))
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (tmp_path / "pipe_link.jpg").symlink_to(tmp_path / "pipe.jpg")
    (tmp_path / "dir.jpg").mkdir()
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    expected = {
        "pipe.jpg": "not a regular file: named pipe (FIFO)",
        "sock.png": "not a regular file: socket",
        "zero.jpg": "not a regular file: symbolic link to a character device",
        "pipe_link.jpg": "not a regular file: symbolic link to a named pipe (FIFO)",
        "dir.jpg": "not a regular file: directory",
        "gone.jpg": "broken symbolic link",
        "missing.jpg": "file not found",
    }
    for name, message in expected.items():
        exc = _refused_in_time(read_image, tmp_path / name)
        assert isinstance(exc, ImageReadError) and exc.status == "unreadable", (name, exc)
        assert exc.message == message


def test_a_symlink_to_an_image_is_read(tmp_path):
    Image.fromarray(np.full((8, 9, 3), 50, np.uint8)).save(tmp_path / "real.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "real.png")
    assert read_image(tmp_path / "link.png").shape == (8, 9, 3)


def test_a_fifo_named_like_a_video_is_refused_without_blocking(tmp_path):
    import os

    from muflow_cli.inputs.video import VideoReadError, open_video

    os.mkfifo(tmp_path / "x.mp4")
    exc = _refused_in_time(open_video, tmp_path / "x.mp4")
    assert isinstance(exc, VideoReadError) and exc.status == "unreadable"
    assert exc.message == "not a regular file: named pipe (FIFO)"
