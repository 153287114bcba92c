"""One folder walker for images and videos: sorted, recursive, loop-safe; named files always kept."""

import os

from muflow_cli.inputs.files import shown_path, walk_files
from muflow_cli.inputs.images import iter_image_files
from muflow_cli.pipelines.video_scan import iter_video_files


def test_walk_is_sorted_recursive_and_filters_by_suffix(tmp_path):
    for name in ("b/2.JPG", "b/1.png", "a/x.mp4", "a/notes.txt", "c.jpeg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path])] == ["c.jpeg", "b/1.png", "b/2.JPG"]
    assert [p.name for p in iter_video_files([tmp_path])] == ["x.mp4"]
    named = tmp_path / "a" / "notes.txt"
    assert list(walk_files([named], {".jpg"})) == [named]  # a file named explicitly is always taken


def test_symlink_loops_are_cut_for_images_and_videos(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "v.mp4").write_bytes(b"")
    (tmp_path / "d" / "i.png").write_bytes(b"")
    os.symlink(tmp_path, tmp_path / "d" / "loop")
    assert [p.name for p in iter_video_files([tmp_path])] == ["v.mp4"]
    assert [p.name for p in iter_image_files([tmp_path])] == ["i.png"]


def test_undecodable_names_are_shown_escaped(tmp_path):
    name = os.fsdecode(b"caf\xe9.jpg")
    assert shown_path(tmp_path / name).endswith("caf\\xe9.jpg")


def test_names_alone_never_make_a_group(tmp_path):
    """group_keys: file and folder as named; auto starts from each file alone (content joins them later:
    stats/near_duplicates.py), so a camera's IMG_2041, IMG_2042, IMG_2043 are three groups here."""
    from muflow_cli.inputs.files import group_keys

    names = ["v1/frame_0001.png", "v1/frame_0002.png", "photos/IMG_2041.JPG", "photos/IMG_2042.JPG", "photos/IMG_2043.JPG"]
    paths = [tmp_path / n for n in names]
    assert group_keys(paths, "auto") == group_keys(paths, "file") == [str(p) for p in paths]
    assert len(set(group_keys(paths, "folder"))) == 2
