"""``muflow info`` and ``muflow weights``: what a model bundle is, and the bundled files' licences and integrity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from muflow_cli.errors import MuflowError
from muflow_cli.progress import stderr as err
from muflow_cli.progress import stdout as out


def info(
    model: Optional[Path] = typer.Argument(None, help="Model bundle; default: the bundled model."),
    as_json: bool = typer.Option(False, "--json", help="Print the model card as JSON (with the tensors' sha256) instead of a summary."),
    html_report: Optional[Path] = typer.Option(None, "--html", help="Also write an HTML report of the model: average and fit faces, loss per epoch, calibration."),
) -> None:
    """What a model bundle was fitted on, when and how, and how it is calibrated."""
    from muflow_cli.model.bundle import default_model_path, read_bundle

    path = model or default_model_path()
    if html_report is not None:
        from muflow_cli.outputs.fit_report import ReportModel, write_fit_report

        write_fit_report(ReportModel.load(path), html_report, Path(path).name)
        err.print(f"wrote {html_report}", highlight=False)
    card, _, sha = read_bundle(path)
    if as_json:
        out.print_json(json.dumps({**card.to_dict(), "tensors_sha256": sha}))
        return
    t = Table(title=f"muflow model {Path(path).name}" + (" (bundled demonstration model)" if model is None else ""), show_header=False)
    t.add_column("what", no_wrap=True)
    t.add_column("value", overflow="fold")
    for what, value in [*card.summary(), ("tensors sha256", sha)]:
        t.add_row(what, value)
    out.print(t)


def weights_list() -> None:
    """Bundled files with their licences and where they come from."""
    from muflow_cli.model.bundle import default_model_path, is_bundle
    from muflow_cli.weights import manifest

    t = Table(title="bundled weights")
    for col in ("name", "kind", "file", "licence", "from"):
        t.add_column(col, overflow="fold")
    for e in manifest().values():
        t.add_row(e.name, e.kind, e.file, e.licence, e.provenance)
    if is_bundle(default_model_path()):
        t.add_row("default", "model bundle", default_model_path().name,
                  "demonstration model; inherits the licences above (SCRFD: non-commercial)", "scripts/make_default_model.py")
    out.print(t)


def weights_verify() -> None:
    """Check the sha256 of every bundled file (and the default model)."""
    from muflow_cli.model.deepfake_model import DeepfakeModel
    from muflow_cli.weights import verify_all

    bad = 0
    for entry, ok, msg in verify_all():
        out.print(f"{'[green]ok[/]' if ok else '[red]FAIL[/]'}  {entry.file}  {msg if not ok else entry.sha256[:16]}")
        bad += not ok
    try:
        DeepfakeModel.load(None)
        out.print("[green]ok[/]  default.muflow  card and tensors match")
    except MuflowError as exc:
        out.print(f"[red]FAIL[/]  default.muflow  {exc}")
        bad += 1
    if bad:
        raise typer.Exit(1)
