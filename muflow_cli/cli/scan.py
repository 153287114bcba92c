"""``muflow scan``: every face in every image, locally or on Ray Data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from muflow_cli.cli import options as opt
from muflow_cli.cli.common import (
    check_paths,
    domain_warning,
    faces_table,
    fail,
    journaled,
    load_model,
    model_note,
    need_ray,
    read_files_from,
    report_written,
    scan_summary,
)
from muflow_cli.faces.options import FaceFinding
from muflow_cli.outputs.options import ScanOutputs
from muflow_cli.progress import stderr as err


@opt.face_finding
@opt.scan_outputs
def scan(
    paths: Optional[list[str]] = typer.Argument(None, help="Image files or folders (searched recursively); with --ray also s3://, gs://… URIs."),
    model: Optional[Path] = opt.MODEL,
    fpr: float = opt.FPR,
    fdr: Optional[float] = opt.FDR,
    stability: bool = opt.STABILITY,
    tail: Optional[opt.Tail] = opt.TAIL,
    device: str = opt.DEVICE,
    engine: opt.EngineName = opt.ENGINE,
    batch_size: Optional[int] = opt.BATCH_SIZE,
    backbone_weights: Optional[Path] = opt.BACKBONE_WEIGHTS,
    chunk_files: Optional[int] = typer.Option(None, "--chunk-files", min=1, help="Files per unit of work (scored and journaled together; with --ray, one Parquet part). Default: 16; 128 with --ray."),
    workers: int = opt.WORKERS,
    files_from: Optional[Path] = opt.FILES_FROM,
    ray_at: Optional[str] = opt.RAY,
    ray_actors: int = opt.RAY_ACTORS,
    ray_scorers: int = typer.Option(0, "--ray-scorers", min=0, help="With --ray: separate scoring actors (0: one per GPU; without GPUs none, the face actors score)."),
    provenance: bool = opt.PROVENANCE,
    quiet: bool = opt.QUIET,
    faces: FaceFinding = FaceFinding(),
    outputs: ScanOutputs = ScanOutputs(),
) -> None:
    """Score every face in every image: box, score, p-value, verdict."""
    from muflow_cli.pipelines.scan import ScanConfig

    if not paths and files_from is None:
        fail("give image files or folders to scan, or --files-from LIST", 2)
    listed = read_files_from(files_from)
    config = ScanConfig(fpr=fpr, tail=tail, batch_size=batch_size, faces=faces, chunk_files=chunk_files or 16,
                        visuals=outputs.html is not None, workers=workers, provenance=provenance, stability=stability,
                        fdr=fdr)
    if ray_at is not None:
        from muflow_cli.pipelines.ray.driver import DEFAULT_PART_FILES

        if fdr is not None:
            fail("--fdr needs every p-value of the run at once; with --ray, read the parts and apply it (muflow_cli.pipelines.verdicts.apply_fdr)", 2)
        config.chunk_files = chunk_files or DEFAULT_PART_FILES
        return _ray_scan(paths or [], listed, ray_at, outputs, model, backbone_weights, device, engine, quiet, ray_actors,
                         ray_scorers, config)
    config.check()
    outputs.check()
    _local_scan([Path(p) for p in paths or []], listed, files_from, outputs, model, backbone_weights, device, engine, quiet, config)


def _local_scan(roots: list[Path], listed: list[str], files_from: Path | None, outputs: ScanOutputs, model: Path | None,
                backbone_weights: Path | None, device: str, engine: str, quiet: bool, config) -> None:
    from muflow_cli.outputs.tables import write_table
    from muflow_cli.pipelines.scan import scan as run_scan
    from muflow_cli.pipelines.scan import scan_settings
    from muflow_cli.pipelines.schema import provenance_counts, summarize

    paths = roots + [Path(p) for p in listed]
    if roots:
        check_paths(roots)
    target = None
    if outputs.html is not None:
        from muflow_cli.outputs.report import ReportTarget

        target = ReportTarget(outputs.html, outputs.resume)  # pictures are written there chunk by chunk
    det = load_model(model, device, backbone_weights, engine)
    visuals = None
    if target is not None:
        from muflow_cli.outputs.report import ReportVisuals

        visuals = ReportVisuals(det.card.channels, target)
    tables = outputs.tables()
    written = [p for p, _ in tables]

    def write(df) -> None:
        for path, fmt in tables:
            write_table(df, path, fmt)
        if target is not None:
            from muflow_cli.outputs.report import write_html

            notes = [det.calibration.describe(config.fpr, config.tail).replace("verdict: ", "Verdict: ", 1) + ".", model_note(det, model)]
            written.append(report_written(*write_html(df, visuals, target, "muflow scan report", notes)))

    # The journal's settings name the list file, not its million lines: each chunk's files are checked anyway.
    settings_paths = roots + ([files_from] if files_from is not None else [])
    df = journaled([p for p, _ in tables], lambda: scan_settings(det, config, settings_paths), outputs.resume,
                   lambda journal: run_scan(paths, det, config, progress=not quiet, journal=journal, observer=visuals), write)
    if quiet:
        return
    if not (tables or outputs.html):
        faces_table(df, roots)
    counts = summarize(df)
    scan_summary(counts, det.calibration.describe(config.fpr, config.tail), written,
                 provenance_counts(df) if config.provenance else None,
                 det.calibration.rate_note(config.fpr, counts["faces"], config.tail, config.fdr))
    domain_warning(det, df["p_value"].dropna().to_numpy(float), config.fpr, config.tail, model)
    if model is None:
        err.print(
            "note: this is the bundled demonstration model, fitted on a few hundred faces from a few sources; "
            "real faces unlike them are often flagged. Fit on reals like yours: muflow fit DIR -o my.muflow",
            style="yellow", highlight=False,
        )


def _ray_scan(paths: list[str], listed: list[str], where: str, outputs: ScanOutputs, model: Path | None,
              backbone_weights: Path | None, device: str, engine: str, quiet: bool, actors: int, scorers: int, config) -> None:
    """``scan --ray``: the same table, as a folder of Parquet parts written by a Ray Data pipeline (pipelines/ray/)."""
    out = outputs.parquet
    if out is None or outputs.csv or outputs.jsonl or outputs.html:
        fail("--ray writes a folder of Parquet parts: give --parquet OUT (and no --csv, --jsonl or --html)", 2)
    need_ray()
    from muflow_cli.pipelines.ray import driver
    from muflow_cli.pipelines.ray.storage import is_uri

    config.check()
    local = [Path(p) for p in paths if not is_uri(p)]
    if local and len(local) == len(paths):
        check_paths(local)
    from muflow_cli.model.deepfake_model import DeepfakeModel

    det = DeepfakeModel.load(model, backbone_weights=backbone_weights)  # checked here; each scoring actor loads its own
    driver.connect(where, quiet)
    try:
        result = driver.ray_scan(paths, out, str(model) if model else None, config, files_from=listed, resume=outputs.resume,
                                 device=device, engine=engine, backbone_weights=str(backbone_weights) if backbone_weights else None,
                                 face_actors=actors, scorers=scorers, progress=not quiet, model=det)
    except KeyboardInterrupt:
        err.print(f"interrupted: the parts written so far are kept in {out}; run the same command with --resume to continue",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if quiet:
        return
    rule = det.calibration.describe(config.fpr, config.tail)
    err.print(f"{result.parts} parts ({result.parts_done_before} kept from an earlier run); {result.plan.describe()}", highlight=False)
    scan_summary(result.counts, rule, [Path(out)], result.counts.get("provenance") if config.provenance else None)
    domain_warning(det, driver.read_p_values(out), config.fpr, config.tail, model)
