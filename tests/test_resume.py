"""Kill a scan anywhere, resume it, and get the very table an uninterrupted scan writes."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from muflow_cli.pipelines.journal import journal_path


@pytest.fixture(scope="module")
def photos(tmp_path_factory, real_folder):
    root = tmp_path_factory.mktemp("resume") / "photos"
    shutil.copytree(real_folder, root)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "notes.png").write_text("not an image")
    return root  # 13 files, 36 faces


def scan_cmd(photos: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "muflow_cli", "scan", str(photos), "--model", str(model),
            "--csv", str(out), "--chunk-files", "1", "--batch-size", "4", "-q", *extra]


def _as_from_a_terminal() -> None:
    """In the child before exec: SIGINT at its default and unblocked, as a shell gives a command, whatever the
    test process inherited or a library in it set (a child started with SIGINT ignored keeps ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _signal_state(pid: int) -> str:
    """The process's signal masks from /proc (blocked, ignored, caught), for a failure message."""
    try:
        return " ".join(line.replace("\t", "=") for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                        if line.startswith(("SigBlk", "SigIgn", "SigCgt", "Threads")))
    except OSError as exc:
        return f"(no /proc status: {exc})"


def run_until(cmd: list[str], journal: Path, chunks: int, sig: int) -> tuple[subprocess.Popen, str]:
    """Start a scan; send ``sig`` once its journal holds ``chunks`` finished chunks; (process, stderr and,
    when nothing came on stderr, the child's signal masks at the time of sending)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_terminal)  # noqa: PLW1509 (two async-signal-safe calls)
    deadline = time.time() + 300
    state = "(not sent)"
    while proc.poll() is None and time.time() < deadline:
        if journal.is_file() and journal.read_text(errors="replace").count("\n") >= 1 + chunks:
            state = _signal_state(proc.pid)
            proc.send_signal(sig)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=300)
    return proc, err or f"(nothing on stderr; rc {proc.returncode}; child's signal state when sent: {state})"


@pytest.fixture(scope="module")
def reference(photos, small_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.csv"
    subprocess.run(scan_cmd(photos, small_model, out), check=True, timeout=300)
    assert not journal_path(out).exists()  # a finished scan leaves no journal behind
    return out.read_bytes()


@pytest.mark.parametrize("chunks", [0, 4, 11])
def test_sigkill_then_resume_gives_an_identical_table(photos, small_model, reference, tmp_path, chunks):
    out = tmp_path / "scan.csv"
    proc, _ = run_until(scan_cmd(photos, small_model, out), journal_path(out), chunks, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, "the scan finished before it could be killed"
    assert not out.exists()  # no table that looks complete
    subprocess.run(scan_cmd(photos, small_model, out, "--resume"), check=True, timeout=300)
    assert out.read_bytes() == reference


def test_ctrl_c_says_how_to_resume(photos, small_model, tmp_path):
    # 52 files: on a busy machine the 13-file scan could finish between the signal and its handling
    many = tmp_path / "many"
    for i in range(4):
        shutil.copytree(photos, many / f"copy{i}")
    out, ref = tmp_path / "scan.csv", tmp_path / "ref.csv"
    proc, err = run_until(scan_cmd(many, small_model, out), journal_path(out), 2, signal.SIGINT)
    assert proc.returncode == 130, err
    assert "--resume" in err and "files are done" in err
    subprocess.run(scan_cmd(many, small_model, out, "--resume"), check=True, timeout=300)
    subprocess.run(scan_cmd(many, small_model, ref), check=True, timeout=300)
    assert out.read_bytes() == ref.read_bytes()


def test_torn_journal_line_and_touched_file_are_redone(photos, small_model, reference, tmp_path):
    out = tmp_path / "scan.csv"
    run_until(scan_cmd(photos, small_model, out), journal_path(out), 6, signal.SIGKILL)
    journal = journal_path(out)
    lines = journal.read_text().split("\n")
    journal.write_text("\n".join(lines[:4]) + "\n" + lines[4][: len(lines[4]) // 2])  # a write cut short
    first = sorted(p for p in photos.rglob("*") if p.is_file())[0]
    first.touch()  # new mtime: its chunk must be scanned again
    subprocess.run(scan_cmd(photos, small_model, out, "--resume"), check=True, timeout=300)
    assert out.read_bytes() == reference


def test_resume_with_other_settings_is_refused(photos, small_model, tmp_path):
    out = tmp_path / "scan.csv"
    run_until(scan_cmd(photos, small_model, out), journal_path(out), 2, signal.SIGKILL)
    proc = subprocess.run(scan_cmd(photos, small_model, out, "--resume", "--fpr", "0.01"), capture_output=True, text=True)
    assert proc.returncode == 2 and "other settings (fpr)" in proc.stderr
