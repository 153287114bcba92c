"""What every command shares: failing with a message, loading the model, the resumable journal, and
the tables a scan prints. Rendering only: every rule lives in the library."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.table import Table

from muflow_cli.errors import MuflowError
from muflow_cli.progress import stderr as err
from muflow_cli.progress import stdout as out

PROVENANCE_NOTE = ("provenance: what each file says about itself (C2PA, IPTC/XMP labels, generator settings, EXIF), per file; "
                   "easy to strip and to forge, so reported beside the verdicts and never part of them")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def command(fn: Callable) -> Callable:
    """The one place where library errors become a message and an exit status (1: failed, 2: usage)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MuflowError as exc:
            fail(str(exc), exc.exit_code)

    return run


def load_model(model: Path | None, device: str, backbone_weights: Path | None = None, engine: str = "auto"):
    """The model, on ``device``, with ``engine`` ready: a named engine that cannot run fails here, before any work."""
    from muflow_cli.model.deepfake_model import DeepfakeModel

    return DeepfakeModel.load(model, backbone_weights=backbone_weights).to(device).use_engine(engine, check=engine != "auto")


def check_paths(paths: list[Path]) -> None:
    missing = [str(p) for p in paths if not p.exists() and not p.is_symlink()]
    if missing and len(missing) == len(paths):
        fail(f"no such file or folder: {', '.join(missing)}", 2)


def need_ray() -> None:
    """--ray without the optional extra: say how to get it, before any work."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        fail("--ray needs Ray Data: pip install 'muflow[ray]'", 2)


def read_files_from(files_from: Path | None) -> list[str]:
    if files_from is None:
        return []
    from muflow_cli.inputs.files import read_file_list

    try:
        return read_file_list(files_from)
    except OSError as exc:
        fail(f"cannot read --files-from {files_from}: {exc.strerror or exc}", 2)


def journaled(outputs: list[Path], settings: Callable[[], dict], resume: bool, run: Callable, write: Callable, unit: str = "files"):
    """``write(run(journal))`` with a journal beside the first output (None without one): say how to go
    on after Ctrl-C (exit 130); the journal is removed only once the outputs are written."""
    from muflow_cli.pipelines.journal import ScanJournal, journal_path

    journal = ScanJournal(journal_path(outputs[0]), settings(), resume) if outputs else None
    try:
        result = run(journal)
    except KeyboardInterrupt:
        if journal is None:
            err.print("interrupted; nothing was written (give an output file to make a run resumable)")
        else:
            journal.close()
            err.print(f"interrupted: {journal.files_done} {unit} are done and kept in {journal.path}; "
                      "run the same command with --resume to continue", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    write(result)
    if journal is not None:
        journal.close(remove=True)
    return result


def domain_warning(det, p_values, fpr: float, tail: str | None, model: Path | None, what: str = "") -> None:
    """Say so when the faces' p-values are far from what the model's calibration reals give (calibration.DomainCheck)."""
    check = det.calibration.domain_check(p_values, fpr, tail)
    if check.mismatch:
        err.print(f"[yellow]warning:[/] {what}{check.message(str(model) if model else None)}", highlight=False, soft_wrap=True)


def model_note(det, model: Path | None) -> str:
    """The line every report carries about the model it was made with."""
    return f"Model: {model or 'bundled demonstration model'}; fitted on {det.card.training.faces} real faces."


def report_written(path: Path, note: str | None) -> Path:
    """Say when a report named NAME.html became pages; the file to open."""
    if note:
        err.print(f"note: {note}", style="yellow", highlight=False, soft_wrap=True)
    return path


def short_name(file: str, roots: list[Path], width: int) -> str:
    """A file as the user will recognise it: relative to the folder they gave, shortened in the middle."""
    for root in roots:
        root_s = os.fsdecode(root).rstrip("/")
        if Path(root).is_dir() and file.startswith(root_s + "/"):
            file = file[len(root_s) + 1 :]
            break
    if len(file) <= width:
        return file
    keep = max(width - 1, 2)
    return file[: keep // 2] + "…" + file[len(file) - (keep - keep // 2) :]


def faces_table(df, roots: list[Path], limit: int = 50) -> None:
    import pandas as pd

    width = max(out.width - 40, 16)  # the other columns need about 40 characters
    t = Table(title="faces", show_lines=False)
    t.add_column("file", no_wrap=True)
    for col in ("face", "score", "p", "verdict"):
        t.add_column(col, justify="right" if col != "verdict" else "left", no_wrap=True)

    def fmt(v, spec="{}"):
        return "" if pd.isna(v) else spec.format(v)

    for _, r in df.head(limit).iterrows():
        style = "bold red" if r["verdict"] == "fake" else None
        shown = fmt(r["verdict"]) if r["status"] == "ok" else str(r["status"])
        t.add_row(short_name(str(r["file"]), roots, width), fmt(r["face"]), fmt(r["score"], "{:.4f}"),
                  fmt(r["p_value"], "{:.3f}"), shown, style=style)
    out.print(t)
    if len(df) > limit:
        out.print(f"… {len(df) - limit} more rows: write them with --csv/--parquet/--jsonl")


def scan_summary(counts: dict[str, int], rule: str, written: list[Path], provenance: dict[str, int] | None = None,
                 rate: str | None = None) -> None:
    """The counts of a scan; with ``provenance`` (files per kind), those too, in a section of their own: what
    the files say about themselves is shown beside the verdicts, not among them."""
    t = Table(title="muflow scan", show_header=False)
    t.add_column("what")
    t.add_column("count", justify="right")
    for k in ("files", "faces", "flagged", "inconclusive", "no_face", "errors"):
        if k in counts:
            t.add_row(k.replace("_", " "), str(counts[k]), style="bold red" if k == "flagged" and counts[k] else None)
    if provenance:
        t.add_section()
        for kind, n in provenance.items():
            t.add_row(f"provenance: {kind}", str(n))
    err.print(t)
    err.print(rule, highlight=False)
    if rate:
        err.print(rate, highlight=False)
    if provenance:
        err.print(PROVENANCE_NOTE, highlight=False)
    for p in written:
        err.print(f"wrote {p}", highlight=False)


def warn(warnings: list[str]) -> None:
    for w in warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)


def key_values(title: str, rows: list[tuple[str, object]]) -> None:
    """A two-column summary on stderr (fit, calibrate, info)."""
    t = Table(title=title, show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    for a, b in rows:
        t.add_row(a, str(b))
    err.print(t)
