"""Inputs beyond a folder on the command line: --files-from lists, and bytes already in memory (Ray readers)."""

from __future__ import annotations

import io

import pytest
from typer.testing import CliRunner

from muflow_cli.cli import app
from muflow_cli.inputs.images import ImageReadError, read_image


def test_files_from_lists_files_and_folders_for_a_local_scan(real_folder, small_model, tmp_path):
    listing = tmp_path / "list.txt"
    group = sorted((real_folder / "group").iterdir())
    listing.write_text(f"{group[0]}\n\n{real_folder / 'portrait'}\n")
    out = tmp_path / "scan.csv"
    res = CliRunner().invoke(app, ["scan", str(group[1]), "--files-from", str(listing), "--model", str(small_model), "--csv", str(out), "-q"])
    assert res.exit_code == 0, res.output
    files = {line.split(",")[0] for line in out.read_text().splitlines()[1:]}
    assert files == {str(group[1]), str(group[0])} | {str(p) for p in (real_folder / "portrait").iterdir()}


def test_scan_needs_paths_or_a_list_and_ray_needs_a_parquet_folder(tmp_path):
    res = CliRunner().invoke(app, ["scan"])
    assert res.exit_code == 2 and "--files-from" in res.output
    res = CliRunner().invoke(app, ["scan", str(tmp_path), "--ray", "local", "--csv", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "--parquet" in res.output
    res = CliRunner().invoke(app, ["scan", "--files-from", str(tmp_path / "missing.txt")])
    assert res.exit_code == 2 and "cannot read --files-from" in res.output


def test_bytes_in_memory_decode_like_a_file(tmp_path, astronaut):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="PNG")
    assert (read_image(io.BytesIO(buf.getvalue())) == astronaut).all()
    for data, message in ((b"", "empty file"), (b"not a picture", "not an image format muflow can read")):
        with pytest.raises(ImageReadError) as exc:
            read_image(io.BytesIO(data))
        assert (exc.value.status, exc.value.message) == ("unreadable", message)
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        read_image(io.BytesIO(buf.getvalue()[: len(buf.getvalue()) // 3]))
