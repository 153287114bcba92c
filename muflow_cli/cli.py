"""The ``muflow`` command: parses arguments, calls the Python API, renders results.

Every rule lives in the library (a config's ``check()``); every error is a ``MuflowError``
caught in one place (:func:`_command`) and turned into a message and an exit status.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .version import __version__
from . import choices
from .errors import MuflowError
from .progress import stderr as err
from .progress import stdout as out

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Find deepfake faces with µFlow (one-class, fitted on real faces).")
weights_app = typer.Typer(no_args_is_help=True, help="Bundled model files: licences and integrity.")
app.add_typer(weights_app, name="weights")


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A Typer choice type built from one of the library's own name lists."""
    return Enum(name, {v: v for v in values}, type=str)


Tail = _choices("Tail", choices.TAILS)
CacheWhere = _choices("CacheWhere", choices.CACHE_PLACES)
Engine = _choices("Engine", choices.ENGINES)
GroupBy = _choices("GroupBy", choices.GROUP_BY)
FaceDetectorKind = _choices("FaceDetectorKind", choices.FACE_DETECTORS)
Aligned = _choices("Aligned", choices.ALIGNED_CONVENTIONS)
Precision = _choices("Precision", choices.PRECISIONS)

ALIGNED_HELP = ("Each image is one already-aligned face in this convention (muflow: muflow's own crops, e.g. --save-faces; "
                "arcface: 112-px ArcFace crops; ffhq: FFHQ/StyleGAN crops): scored without detection.")
MIN_FACE_HELP = "Also look for faces this small (px) in large images, by tiles (slow: ~30x per 12-Mpixel photo; 0 = off)."


def _aligned_option():
    return typer.Option(None, "--aligned", help=ALIGNED_HELP)


def _min_face_option():
    return typer.Option(0.0, "--min-face", min=0.0, help=MIN_FACE_HELP)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _command(fn: Callable) -> Callable:
    """The one place where library errors become a message and an exit status (1: failed, 2: usage)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MuflowError as exc:
            _fail(str(exc), exc.exit_code)

    return run


def _version(value: bool) -> None:
    if value:
        out.print(f"muflow {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Find deepfake faces with µFlow (one-class, fitted on real faces)."""


ENGINE_HELP = "Scoring engine: auto (ONNX Runtime on CPU, checked against torch; torch on CUDA), torch or onnx."
FACE_DETECTOR_HELP = "Face detector; default: the one the model was fitted with."


HTML_HELP = ("Write an HTML report: NAME.html is one self-contained file (for a large scan: NAME.html is the index, "
             "its pages are in NAME_files/); any other NAME is a folder of pages with NAME/index.html.")


def _face_detector_option(default):
    return typer.Option(default, "--face-detector", help=FACE_DETECTOR_HELP if default is None else "Face detector.")


# `--detector` was the face detector's flag before 0.2; it still works, hidden.
_OLD_DETECTOR = typer.Option(None, "--detector", hidden=True)


def _face_detector(new, old) -> Optional[str]:
    chosen = new or old
    return chosen.value if chosen is not None else None


def _load(model: Optional[Path], device: str, backbone_weights: Optional[Path] = None, engine: str = "auto"):
    from .deepfake_model import DeepfakeModel

    det = DeepfakeModel.load(model, backbone_weights=backbone_weights).to(device).use_engine(engine)
    if engine != "auto":
        det.engine  # build now: a named engine that cannot run is an error before any work starts
    return det


def _check_paths(paths: list[Path]) -> None:
    missing = [str(p) for p in paths if not p.exists() and not p.is_symlink()]
    if missing and len(missing) == len(paths):
        _fail(f"no such file or folder: {', '.join(missing)}", 2)


def _journaled(outputs: list[Path], settings: Callable[[], dict], resume: bool, run: Callable, write: Callable, unit: str = "files"):
    """``write(run(journal))`` with a journal beside the first output (None without one): say how to go
    on after Ctrl-C (exit 130); the journal is removed only once the outputs are written."""
    from .journal import ScanJournal, journal_path

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
        raise typer.Exit(130)
    write(result)
    if journal is not None:
        journal.close(remove=True)
    return result


@app.command()
@_command
def scan(
    paths: Optional[list[str]] = typer.Argument(None, help="Image files or folders (searched recursively); with --ray also s3://, gs://… URIs."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model bundle; default: the bundled demo model."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Write the table as CSV."),
    parquet: Optional[str] = typer.Option(None, "--parquet", help="Write the table as Parquet (with --ray: a folder of Parquet parts, local or a URI)."),
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="Write the table as JSON lines."),
    html_report: Optional[Path] = typer.Option(None, "--html", help=HTML_HELP + " Thumbnails, heat maps, marked-up images."),
    fpr: float = typer.Option(0.05, "--fpr", min=1e-6, max=0.999999, help="False-positive rate on real faces for the verdict."),
    tail: Optional[Tail] = typer.Option(None, "--tail", help="p-value tail: two (flags atypically high or low scores) or upper; default: the model's."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    engine: Engine = typer.Option(Engine.auto, "--engine", help=ENGINE_HELP),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Faces scored per batch (default: 8 on CPU, 32 on CUDA)."),
    face_detector: Optional[FaceDetectorKind] = _face_detector_option(None),
    old_detector: Optional[FaceDetectorKind] = _OLD_DETECTOR,
    max_faces: int = typer.Option(0, "--max-faces", min=0, help="Keep at most N faces per image (0 = all)."),
    aligned: Optional[Aligned] = _aligned_option(),
    min_face: float = _min_face_option(),
    backbone_weights: Optional[Path] = typer.Option(None, "--backbone-weights", help="Backbone .safetensors for models fitted on a non-bundled backbone."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted scan (same arguments): finished files are not scanned again."),
    chunk_files: Optional[int] = typer.Option(None, "--chunk-files", min=1, help="Files per unit of work (scored and journaled together; with --ray, one Parquet part). Default: 16; 128 with --ray."),
    workers: int = typer.Option(0, "--workers", min=0, help="Threads decoding and detecting ahead of scoring, one image each (0: one per CPU core)."),
    files_from: Optional[Path] = typer.Option(None, "--files-from", help="Also scan the files (or folders, URIs) listed in this file, one per line."),
    ray_at: Optional[str] = typer.Option(None, "--ray", help="Scan on Ray Data: local (a cluster on this machine), auto (the cluster `ray start` joined) or its ADDRESS. Needs --parquet OUT (a folder)."),
    ray_actors: int = typer.Option(0, "--ray-actors", min=0, help="With --ray: face-finding actors (0: one per CPU not given to a scoring actor; where there are no scoring actors, they score too)."),
    ray_scorers: int = typer.Option(0, "--ray-scorers", min=0, help="With --ray: separate scoring actors (0: one per GPU; without GPUs none, the face actors score)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Score every face in every image: box, score, p-value, verdict."""
    from .scan import ScanConfig, scan_settings
    from .scan import scan as run_scan
    from .tables import summarize, write_table

    if not paths and files_from is None:
        _fail("give image files or folders to scan, or --files-from LIST", 2)
    listed = _read_files_from(files_from)
    if ray_at is not None:
        return _ray_scan(paths or [], listed, ray_at, parquet, csv or jsonl or html_report, model, backbone_weights, device,
                         engine.value, resume, quiet, ray_actors, ray_scorers,
                         dict(fpr=fpr, tail=tail.value if tail else None, batch_size=batch_size,
                              face_detector=_face_detector(face_detector, old_detector), max_faces=max_faces, chunk_files=chunk_files,
                              aligned=aligned.value if aligned else None, min_face=min_face))
    roots = [Path(p) for p in paths or []]
    paths = roots + [Path(p) for p in listed]
    parquet = Path(parquet) if parquet is not None else None
    outputs = [(p, fmt) for p, fmt in ((csv, "csv"), (parquet, "parquet"), (jsonl, "jsonl")) if p is not None]
    config = ScanConfig(fpr=fpr, tail=tail.value if tail else None, batch_size=batch_size,
                        face_detector=_face_detector(face_detector, old_detector), max_faces=max_faces,
                        chunk_files=chunk_files or 16, visuals=html_report is not None, workers=workers,
                        aligned=aligned.value if aligned else None, min_face=min_face)
    config.check()
    if resume and not outputs:
        _fail("--resume needs an output file (--csv, --parquet or --jsonl): the scan's journal lives beside it", 2)
    if roots:
        _check_paths(roots)
    target = None
    if html_report is not None:
        from .report import ReportTarget, ReportVisuals

        target = ReportTarget(html_report, resume)  # pictures are written there chunk by chunk
    det = _load(model, device, backbone_weights, engine.value)
    visuals = ReportVisuals(det.card.channels, target) if target is not None else None
    written = [p for p in (csv, parquet, jsonl) if p]

    def write(df) -> None:
        for path, fmt in outputs:
            write_table(df, path, fmt)
        if html_report is not None:
            from .report import write_html

            notes = [det.calibration.describe(fpr, config.tail).replace("verdict: ", "Verdict: ", 1) + ".",
                     f"Model: {model or 'bundled demonstration model'}; fitted on {det.card.training.faces} real faces."]
            written.append(_report_written(*write_html(df, visuals, target, "muflow scan report", notes)))

    # The journal's settings name the list file, not its million lines: each chunk's files are checked anyway.
    settings_paths = roots + ([files_from] if files_from is not None else [])
    df = _journaled([p for p, _ in outputs], lambda: scan_settings(det, config, settings_paths), resume,
                    lambda journal: run_scan(paths, det, config, progress=not quiet, journal=journal, observer=visuals), write)
    if quiet:
        return
    if not (outputs or html_report):
        _faces_table(df, roots)
    _summary(summarize(df), det.calibration.describe(fpr, config.tail), written)
    _domain_warning(det, df["p_value"].dropna().to_numpy(float), fpr, config.tail, model)
    if model is None:
        err.print(
            "note: this is the bundled demonstration model, fitted on a few hundred faces from a few sources; "
            "real faces unlike them are often flagged. Fit on reals like yours: muflow fit DIR -o my.muflow",
            style="yellow", highlight=False,
        )


def _read_files_from(files_from: Optional[Path]) -> list[str]:
    if files_from is None:
        return []
    from .files import read_file_list

    try:
        return read_file_list(files_from)
    except OSError as exc:
        _fail(f"cannot read --files-from {files_from}: {exc.strerror or exc}", 2)


def _ray_scan(paths: list[str], listed: list[str], where: str, out: Optional[str], other_output, model: Optional[Path],
              backbone_weights: Optional[Path], device: str, engine: str, resume: bool, quiet: bool, actors: int, scorers: int,
              options: dict) -> None:
    """``scan --ray``: the same table, as a folder of Parquet parts written by a Ray Data pipeline (ray_scan.py)."""
    if out is None or other_output:
        _fail("--ray writes a folder of Parquet parts: give --parquet OUT (and no --csv, --jsonl or --html)", 2)
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        _fail("--ray needs Ray Data: pip install 'muflow[ray]'", 2)
    from . import ray_scan
    from .scan import ScanConfig

    config = ScanConfig(**{**options, "chunk_files": options["chunk_files"] or ray_scan.DEFAULT_PART_FILES})
    config.check()
    local = [Path(p) for p in paths if not ray_scan.is_uri(p)]
    if local and len(local) == len(paths):
        _check_paths(local)
    from .deepfake_model import DeepfakeModel

    det = DeepfakeModel.load(model, backbone_weights=backbone_weights)  # checked here; each scoring actor loads its own
    ray_scan.connect(where, quiet)
    try:
        result = ray_scan.ray_scan(paths, out, str(model) if model else None, config, files_from=listed, resume=resume,
                                   device=device, engine=engine, backbone_weights=str(backbone_weights) if backbone_weights else None,
                                   face_actors=actors, scorers=scorers, progress=not quiet, model=det)
    except KeyboardInterrupt:
        err.print(f"interrupted: the parts written so far are kept in {out}; run the same command with --resume to continue",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    if quiet:
        return
    rule = det.calibration.describe(config.fpr, config.tail)
    err.print(f"{result.parts} parts ({result.parts_done_before} kept from an earlier run); {result.plan.describe()}", highlight=False)
    _summary(result.counts, rule, [Path(out)])
    _domain_warning(det, ray_scan.read_p_values(out), config.fpr, config.tail, model)


def _domain_warning(det, p_values, fpr: float, tail: Optional[str], model: Optional[Path], what: str = "") -> None:
    """Say so when the faces' p-values are far from what the model's calibration reals give (calibration.DomainCheck)."""
    check = det.calibration.domain_check(p_values, fpr, tail)
    if check.mismatch:
        err.print(f"[yellow]warning:[/] {what}{check.message(str(model) if model else None)}", highlight=False, soft_wrap=True)


def _report_written(path: Path, note: Optional[str]) -> Path:
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


def _faces_table(df, roots: list[Path], limit: int = 50) -> None:
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


def _summary(counts: dict[str, int], rule: str, written: list[Path]) -> None:
    t = Table(title="muflow scan", show_header=False)
    t.add_column("what")
    t.add_column("count", justify="right")
    for k in ("files", "faces", "flagged", "no_face", "errors"):
        t.add_row(k.replace("_", " "), str(counts[k]), style="bold red" if k == "flagged" and counts[k] else None)
    err.print(t)
    err.print(rule, highlight=False)
    for p in written:
        err.print(f"wrote {p}", highlight=False)


@app.command()
@_command
def fit(
    paths: Optional[list[Path]] = typer.Argument(None, help="Folders (or files) of real face images."),
    files_from: Optional[Path] = typer.Option(None, "--files-from", help="Also fit on the files (or folders) listed in this file, one per line."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the model bundle (a folder); default: NAME.muflow here, after the first input."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Training epochs (default: ~6,000 face presentations, 8-60 epochs)."),
    k: Optional[int] = typer.Option(None, "--k", min=1, help="Crops per average face (default: n/4, at most 500)."),
    averages: Optional[int] = typer.Option(None, "--averages", min=8, help="Number of average faces (default: 2n, 64-1000)."),
    calibration_fraction: float = typer.Option(0.2, "--calibration-fraction", help="Share of faces held out to calibrate p-values."),
    group_by: GroupBy = typer.Option(GroupBy.auto, "--group-by", help="Calibration split unit: auto (each file, but numbered sequences like frame_0001.png… together), file, or folder (one folder per video or person)."),
    crop_size: int = typer.Option(256, "--crop-size", min=64, help="Aligned crop side in pixels (multiple of 16)."),
    face_detector: FaceDetectorKind = _face_detector_option(FaceDetectorKind.scrfd),
    old_detector: Optional[FaceDetectorKind] = _OLD_DETECTOR,
    aligned: Optional[Aligned] = _aligned_option(),
    min_face: float = _min_face_option(),
    backbone: str = typer.Option("mobilenetv2_100", "--backbone", help="timm backbone name."),
    backbone_weights: Optional[Path] = typer.Option(None, "--backbone-weights", help="Backbone weights (.safetensors)."),
    download_backbone: bool = typer.Option(False, "--download-backbone", help="Let timm download pretrained weights (needs network)."),
    augment: int = typer.Option(0, "--augment", min=0, max=8, help="Degraded copies (JPEG, resampling, blur, noise, colour) of each fit face in flow training; 1 makes verdicts hold on re-saved photos (docs/method.md)."),
    steps: int = typer.Option(8, "--flow-steps", min=1, help="Coupling steps per flow."),
    batch_size: int = typer.Option(16, "--batch-size", min=2),
    lr: float = typer.Option(1e-3, "--lr"),
    tail: Tail = typer.Option(Tail.two, "--tail", help="Default p-value tail stored in the model."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    precision: Precision = typer.Option(Precision.auto, "--precision", help="Flows' training precision: auto (bf16 where the CPU or GPU does it natively, else fp32), fp32 or bf16. Scoring is always fp32."),
    cache: CacheWhere = typer.Option(CacheWhere.auto, "--cache", help="Feature cache: auto (RAM up to half the free memory, else disk), memory or disk."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Folder for an on-disk feature cache (default: the system's temporary folder)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted fit (same arguments) from its last finished stage and epoch, kept beside the output."),
    html_report: Optional[Path] = typer.Option(None, "--html", help="Also write an HTML report of the model: average and fit faces, loss per epoch, calibration."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Fit a detector on a folder of real faces."""
    from .bundle import check_output
    from .card import FlowConfig
    from .fit import FitConfig
    from .fit import fit as run_fit

    config = FitConfig(
        crop_size=crop_size, face_detector=_face_detector(face_detector, old_detector) or "scrfd", backbone=backbone,
        backbone_weights=backbone_weights, download_backbone=download_backbone, flow=FlowConfig(steps=steps), k=k,
        averages=averages, calibration_fraction=calibration_fraction, group_by=group_by.value, epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, tail=tail.value, device=device, cache=cache.value, cache_dir=cache_dir,
        aligned=aligned.value if aligned else None, min_face=min_face, augment=augment, precision=precision.value,
    )
    config.check()
    if not paths and files_from is None:
        _fail("give folders or files of real faces, or --files-from LIST", 2)
    if paths:
        _check_paths(paths)
    if output is None:
        output = default_output(paths[0] if paths else files_from)
    paths = list(paths or []) + [Path(p) for p in _read_files_from(files_from)]
    check_output(output)  # before a long fit, not after it
    from .fitcheck import checkpoint_path, describe

    checkpoint = checkpoint_path(output)
    if resume and not checkpoint.is_dir():
        err.print(f"nothing to resume ({checkpoint} does not exist): fitting from the start", highlight=False)
    try:
        det, report = run_fit(paths, config, progress=not quiet, notify=None if quiet else lambda line: err.print(line, highlight=False),
                              checkpoint_dir=checkpoint, resume=resume, keep_checkpoint=True)
    except KeyboardInterrupt:
        err.print(f"interrupted: {describe(checkpoint)}, kept in {checkpoint}; "
                  "run the same command with --resume to continue", highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    det.save(output)
    shutil.rmtree(checkpoint, ignore_errors=True)  # the model is written: the checkpoint has served
    if html_report is not None:
        from .fit_report import write_fit_report

        write_fit_report(det, html_report, output.name, report.seconds)
        err.print(f"wrote {html_report}", highlight=False)
    _warn(report.warnings)
    if quiet:
        return
    _key_values(f"muflow fit → {output}", [
        ("image files", report.files),
        ("skipped", ", ".join(f"{k}: {v}" for k, v in report.skipped.items()) or "none"),
        ("faces", report.faces),
        ("fit / calibration faces", f"{report.fit_faces} / {report.calibration_faces}"),
        ("averages (k crops each)", f"{report.averages} ({report.k})"),
        ("epochs", report.epochs),
        ("final loss (nats/dim)", f"{report.losses[-1]:.4f}"),
        ("calibration mean score", f"{report.calibration_mean:.4f}"),
        ("feature cache", f"{report.cache['bytes'] / 2**20:.0f} MiB in {report.cache['where']}"),
        ("time", " ".join(f"{k} {v:.0f}s" for k, v in report.seconds.items())),
    ])
    err.print(f"wrote {output}\nscan with it: muflow scan PHOTOS --model {output}", highlight=False)


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)


def _key_values(title: str, rows: list[tuple[str, object]]) -> None:
    """A two-column summary on stderr (fit, calibrate)."""
    t = Table(title=title, show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    for a, b in rows:
        t.add_row(a, str(b))
    err.print(t)


def default_output(first_input: Path) -> Path:
    """NAME.muflow in the current folder, NAME from the first input; never an existing path (NAME-2.muflow, …)."""
    name = Path(os.path.basename(os.path.abspath(first_input))).stem or "model"  # as the user named it (no link resolved)
    candidate, n = Path(f"{name}.muflow"), 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = Path(f"{name}-{n}.muflow")
    return candidate


@app.command()
@_command
def video(
    paths: list[Path] = typer.Argument(..., help="Video files or folders (searched recursively)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model bundle; default: the bundled demo model."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Per-frame table (.csv, .parquet or .jsonl by its suffix)."),
    tracks: Optional[Path] = typer.Option(None, "--tracks", help="Per-track table (.csv, .parquet or .jsonl by its suffix)."),
    fps: float = typer.Option(1.0, "--fps", min=0.001, help="Frames sampled per second of video time."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="Sample N evenly spaced frames instead of --fps."),
    fpr: float = typer.Option(0.05, "--fpr", min=1e-6, max=0.999999, help="False-positive rate on real faces for the verdicts."),
    tail: Optional[Tail] = typer.Option(None, "--tail", help="p-value tail (two or upper); default: the model's."),
    max_gap: int = typer.Option(2, "--max-gap", min=0, help="Samples a face may be missing before its track ends."),
    save_faces: Optional[Path] = typer.Option(None, "--save-faces", help="Write each track's first, middle and worst face crop here."),
    html_report: Optional[Path] = typer.Option(None, "--html", help=HTML_HELP + " Per track: faces, heat maps, scores over time."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    engine: Engine = typer.Option(Engine.auto, "--engine", help=ENGINE_HELP),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Faces scored per batch (default: 8 on CPU, 32 on CUDA)."),
    face_detector: Optional[FaceDetectorKind] = _face_detector_option(None),
    old_detector: Optional[FaceDetectorKind] = _OLD_DETECTOR,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (same arguments): finished videos are not redone."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Sample frames, track faces, and give a verdict per face track and per video."""
    from .tables import format_of, write_table
    from .video_scan import VideoConfig, scan_videos, summarize_videos, video_settings

    outputs = [p for p in (csv, tracks) if p is not None]
    try:
        formats = [format_of(p) for p in outputs]
    except ValueError as exc:
        _fail(str(exc), 2)
    config = VideoConfig(fps=fps, frames=frames, fpr=fpr, tail=tail.value if tail else None, batch_size=batch_size,
                         face_detector=_face_detector(face_detector, old_detector), max_gap=max_gap, save_faces=save_faces)
    config.check()
    if resume and not outputs:
        _fail("--resume needs an output file (--csv or --tracks): the run's journal lives beside it", 2)
    _check_paths(paths)
    target = None
    if html_report is not None:
        from .report import ReportTarget
        from .video_report import VideoVisuals

        target = ReportTarget(html_report, resume)  # each video's picks are written there when it is done
    det = _load(model, device, None, engine.value)
    visuals = VideoVisuals(det.card.channels, target) if target is not None else None
    written = list(outputs)

    def write(tables) -> None:
        for path, fmt in zip(outputs, formats):
            write_table(tables[0] if path is csv else tables[1], path, fmt)
        if target is not None:
            from .video_report import write_video_html

            notes = [f"Track verdict: fake when min(1, 2 x median face p-value) <= {fpr:g}; face "
                     + det.calibration.describe(fpr, config.tail) + ".",
                     f"Model: {model or 'bundled demonstration model'}; fitted on {det.card.training.faces} real faces."]
            written.append(_report_written(*write_video_html(*tables, target, "muflow video report", notes,
                                                             det.calibration.cutoffs(fpr, config.tail))))

    frame_df, track_df = _journaled(outputs, lambda: video_settings(det, config, paths), resume,
                                    lambda journal: scan_videos(paths, det, config, progress=not quiet, journal=journal,
                                                                observer=visuals), write, "videos")
    if quiet:
        return
    t = Table(title="muflow video")
    t.add_column("video", overflow="fold")
    for col in ("status", "faces", "tracks", "flagged"):
        t.add_column(col, justify="left" if col == "status" else "right", no_wrap=True)
    for _, r in summarize_videos(frame_df, track_df).iterrows():
        t.add_row(short_name(str(r["video"]), paths, max(out.width - 40, 16)), str(r["status"]), str(r["faces"]),
                  str(r["tracks"]), str(r["flagged"]), style="bold red" if r["flagged"] else None)
    err.print(t)
    err.print(f"track verdict: fake when min(1, 2 x median face p-value) <= {fpr:g}", highlight=False)
    _domain_warning(det, frame_df["p_value"].dropna().to_numpy(float), fpr, config.tail, model, "faces of the sampled frames: ")
    for p in written:
        err.print(f"wrote {p}", highlight=False)


# Headline columns of the eval table that fit 80 columns; the rest show on wider terminals (all are in metrics.json).
EVAL_HEADLINE = ("perturbation", "fakes", "n real/fake", "AUC [95% CI]", "TPR@thr", "FPR@thr", "fakes score")
EVAL_WIDE = ("AP", "EER", "acc@thr", "TPR@1%", "TPR@5%")


@app.command("eval")
@_command
def evaluate_cmd(
    real: list[str] = typer.Option(..., "--real", help="Folder of real images, NAME=DIR or DIR (repeatable)."),
    fake: list[str] = typer.Option(..., "--fake", help="Folder of fake images, NAME=DIR or DIR (repeatable)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for metrics.json, scores.csv and plots."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model bundle; default: the bundled demo model."),
    perturb: list[str] = typer.Option([], "--perturb", help="jpeg:Q, resize:F, blur:SIGMA, noise:SIGMA or flip (repeatable); clean is always measured."),
    fpr: float = typer.Option(0.05, "--fpr", min=1e-6, max=0.999999, help="The model's operating point for accuracy and TPR at threshold."),
    tail: Optional[Tail] = typer.Option(None, "--tail", help="p-value tail for the verdicts; default: the model's."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for 95 % intervals (0: none)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    engine: Engine = typer.Option(Engine.auto, "--engine", help=ENGINE_HELP),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Faces scored per batch (default: 8 on CPU, 32 on CUDA)."),
    aligned: Optional[Aligned] = _aligned_option(),
    min_face: float = _min_face_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Measure a detector on labelled real and fake folders, clean and perturbed. Tunes nothing."""
    from .evaluate import EvalConfig, evaluate, parse_source, write_outputs
    from .perturb import parse

    try:
        perts = [parse(p) for p in perturb]
    except ValueError as exc:
        _fail(str(exc), 2)
    reals, fakes = [parse_source(r) for r in real], [parse_source(f) for f in fake]
    for name, path in reals + fakes:
        if not path.exists():
            _fail(f"no such folder: {path} ({name})", 2)
    config = EvalConfig(fpr=fpr, tail=tail.value if tail else None, bootstrap=bootstrap, seed=seed, batch_size=batch_size,
                        aligned=aligned.value if aligned else None, min_face=min_face)
    config.check()
    det = _load(model, device, None, engine.value)
    scores, metrics = evaluate(reals, fakes, det, perts, config, progress=not quiet)
    written = write_outputs(scores, metrics, det, config, output)
    from .report import write_eval_index

    notes = [det.calibration.describe(fpr, config.tail).replace("verdict: ", "Verdicts: ", 1) + ".",
             f"Model: {model or 'bundled demonstration model'}; fitted on {det.card.training.faces} real faces."]
    written.append(write_eval_index(output, metrics, written, notes))
    if quiet:
        return
    wide = out.width >= 150
    t = Table(title=f"muflow eval ({det.calibration.resolve(config.tail)}-sided, fpr {fpr:g})")
    columns = EVAL_HEADLINE[:-1] + (EVAL_WIDE if wide else ()) + EVAL_HEADLINE[-1:]
    for col in columns:
        t.add_column(col, justify="left" if col in ("perturbation", "fakes") else "right")
    f = lambda m, k: f"{m[k]:.3f}" if k in m else "–"  # noqa: E731
    for m in metrics:
        ci = m.get("ci95", {}).get("auc")
        auc = (f"{m['auc']:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")) if "auc" in m else "–"
        cells = {"perturbation": m["perturbation"], "fakes": m["fake_source"], "n real/fake": f"{m['n_real']}/{m['n_fake']}",
                 "AUC [95% CI]": auc, "AP": f(m, "ap"), "EER": f(m, "eer"), "TPR@thr": f(m, "tpr_at_threshold"),
                 "FPR@thr": f(m, "fpr_at_threshold"), "acc@thr": f(m, "accuracy_at_threshold"), "TPR@1%": f(m, "tpr_at_fpr_1"),
                 "TPR@5%": f(m, "tpr_at_fpr_5"), "fakes score": m["fakes_side"]}
        t.add_row(*(cells[c] for c in columns))
    out.print(t)
    for pert, rows in scores[(scores["label"] == "real") & (scores["status"] == "ok")].groupby("perturbation", sort=False):
        _domain_warning(det, rows["p_value"].to_numpy(float), fpr, config.tail, model, f"the real faces ({pert}): ")
    err.print("AUC ranks faces by score (higher = fake); @thr uses the model's own verdicts. "
              f"{'' if wide else 'AP, EER, accuracy and TPR at FPR 1 %/5 % are in metrics.json. '}"
              f"wrote {len(written)} files to {output}", highlight=False)


@app.command()
@_command
def calibrate(
    paths: list[Path] = typer.Argument(..., help="Folders (or files) of faces you know are real, like the photos you will scan."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the re-calibrated model bundle (a folder)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model bundle to re-calibrate; default: the bundled demo model."),
    group_by: GroupBy = typer.Option(GroupBy.auto, "--group-by", help="Unit of the held-out check: auto (numbered sequences together), file, or folder."),
    tail: Optional[Tail] = typer.Option(None, "--tail", help="Default p-value tail stored in the model; default: the model's."),
    fpr: float = typer.Option(0.05, "--fpr", min=1e-6, max=0.999999, help="The false-positive rate the held-out check measures."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    engine: Engine = typer.Option(Engine.auto, "--engine", help=ENGINE_HELP),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Faces scored per batch (default: 8 on CPU, 32 on CUDA)."),
    face_detector: Optional[FaceDetectorKind] = _face_detector_option(None),
    workers: int = typer.Option(0, "--workers", min=0, help="Threads decoding and detecting ahead of scoring (0: one per CPU core)."),
    aligned: Optional[Aligned] = _aligned_option(),
    min_face: float = _min_face_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Re-calibrate a model on your own real faces (minutes, not a refit): new p-values and verdicts, same scores."""
    from .bundle import check_output
    from .calibrate import CalibrateConfig
    from .calibrate import calibrate as run_calibrate

    config = CalibrateConfig(tail=tail.value if tail else None, group_by=group_by.value, fpr=fpr, batch_size=batch_size,
                             face_detector=_face_detector(face_detector, None), workers=workers,
                             aligned=aligned.value if aligned else None, min_face=min_face)
    config.check()
    check_output(output)
    _check_paths(paths)
    det = _load(model, device, None, engine.value)
    new, report = run_calibrate(paths, det, config, progress=not quiet)
    new.save(output)
    _warn(report.warnings)
    if quiet:
        return
    held = ("not measured (fewer groups than folds)" if report.heldout_fpr is None
            else f"{report.heldout_fpr:.3f} on {report.heldout_faces} faces (nominal {fpr:g})")
    _key_values(f"muflow calibrate → {output}", [
        ("image files", report.files), ("skipped", ", ".join(f"{k}: {v}" for k, v in report.skipped.items()) or "none"),
        ("calibration faces (before → now)", f"{report.previous_faces} → {report.faces}"),
        (f"{group_by.value}s", report.groups), ("smallest p-value", f"{report.min_p:.4f}"),
        ("held-out false-positive rate", held),
    ])
    err.print(f"scan with it: muflow scan PHOTOS --model {output}", highlight=False)


@app.command()
@_command
def info(
    model: Optional[Path] = typer.Argument(None, help="Model bundle; default: the bundled model."),
    html_report: Optional[Path] = typer.Option(None, "--html", help="Also write an HTML report of the model: average and fit faces, loss per epoch, calibration."),
) -> None:
    """Show a model bundle's card: what it was fitted on and how."""
    import json

    from .bundle import default_model_path, read_bundle

    path = model or default_model_path()
    if html_report is not None:
        from .fit_report import ReportModel, write_fit_report

        write_fit_report(ReportModel.load(path), html_report, Path(path).name)
        err.print(f"wrote {html_report}", highlight=False)
    card, _, sha = read_bundle(path)
    doc = card.to_dict()
    doc["tensors_sha256"] = sha
    out.print_json(json.dumps(doc))


@weights_app.command("list")
@_command
def weights_list() -> None:
    """Bundled files with their licences and where they come from."""
    from .bundle import default_model_path, is_bundle
    from .weights import manifest

    t = Table(title="bundled weights")
    for col in ("name", "kind", "file", "licence", "from"):
        t.add_column(col, overflow="fold")
    for e in manifest().values():
        t.add_row(e.name, e.kind, e.file, e.licence, e.provenance)
    if is_bundle(default_model_path()):
        t.add_row("default", "model bundle", default_model_path().name,
                  "demonstration model; inherits the licences above (SCRFD: non-commercial)", "scripts/make_default_model.py")
    out.print(t)


@weights_app.command("verify")
def weights_verify() -> None:
    """Check the sha256 of every bundled file (and the default model)."""
    from .deepfake_model import DeepfakeModel
    from .weights import verify_all

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
