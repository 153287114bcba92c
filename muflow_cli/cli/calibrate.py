"""``muflow calibrate``: new p-values and verdicts from your own reals, the same scores (minutes, not a refit)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from muflow_cli.choices import GROUP_UNITS
from muflow_cli.cli import options as opt
from muflow_cli.cli.common import check_paths, key_values, load_model, warn
from muflow_cli.faces.options import FaceFinding
from muflow_cli.progress import stderr as err


@opt.face_finding
def calibrate(
    paths: list[Path] = typer.Argument(..., help="Folders (or files) of faces you know are real, like the photos you will scan."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the re-calibrated model bundle (a folder)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model bundle to re-calibrate; default: the bundled demo model."),
    group_by: opt.GroupBy = typer.Option("auto", "--group-by", help="Unit of the held-out check: " + opt.GROUP_BY_HELP + "."),
    tail: Optional[opt.Tail] = typer.Option(None, "--tail", help="Default p-value tail stored in the model; default: the model's."),
    fpr: float = typer.Option(0.05, "--fpr", min=1e-6, max=0.999999, help="The false-positive rate the held-out check measures."),
    device: str = opt.DEVICE,
    engine: opt.EngineName = opt.ENGINE,
    batch_size: Optional[int] = opt.BATCH_SIZE,
    workers: int = opt.WORKERS,
    strata: bool = opt.STRATA,
    quiet: bool = opt.QUIET,
    faces: FaceFinding = FaceFinding(),
) -> None:
    """Re-calibrate a model on your own real faces (minutes, not a refit): new p-values and verdicts, same scores."""
    from muflow_cli.model.bundle import check_output
    from muflow_cli.pipelines.calibrate import CalibrateConfig
    from muflow_cli.pipelines.calibrate import calibrate as run_calibrate

    config = CalibrateConfig(tail=tail, group_by=group_by, fpr=fpr, batch_size=batch_size, faces=faces, workers=workers,
                             strata=strata)
    config.check()
    check_output(output)
    check_paths(paths)
    det = load_model(model, device, None, engine)
    new, report = run_calibrate(paths, det, config, progress=not quiet)
    new.save(output)
    warn(report.warnings)
    if quiet:
        return
    held = ("not measured (fewer groups than folds)" if report.heldout_fpr is None
            else f"{report.heldout_fpr:.3f} on {report.heldout_faces} faces (nominal {fpr:g})")
    key_values(f"muflow calibrate → {output}", [
        ("image files", report.files), ("skipped", ", ".join(f"{k}: {v}" for k, v in report.skipped.items()) or "none"),
        ("calibration faces (before → now)", f"{report.previous_faces} → {report.faces}"),
        (GROUP_UNITS[group_by], report.groups), ("smallest p-value", f"{report.min_p:.4f}"),
        ("held-out false-positive rate", held),
        ("calibration strata", ", ".join(f"{k} {v}" for k, v in report.strata.items()) or "none (pooled)"),
    ])
    err.print(f"scan with it: muflow scan PHOTOS --model {output}", highlight=False)
