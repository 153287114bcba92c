"""The ``muflow`` command: parses arguments, calls the Python API, renders results."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Find deepfake faces with µFlow (one-class, fitted on real faces).")
weights_app = typer.Typer(no_args_is_help=True, help="Bundled model files: licences and integrity.")
app.add_typer(weights_app, name="weights")
out = Console()
err = Console(stderr=True)


class Tail(str, Enum):
    two = "two"
    upper = "upper"


class CacheWhere(str, Enum):
    auto = "auto"
    memory = "memory"
    disk = "disk"


class Engine(str, Enum):
    auto = "auto"
    torch = "torch"
    onnx = "onnx"


class GroupBy(str, Enum):
    file = "file"
    folder = "folder"


class DetectorKind(str, Enum):
    scrfd = "scrfd"
    yunet = "yunet"


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        out.print(f"muflow {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Find deepfake faces with µFlow (one-class, fitted on real faces)."""


def _batch(batch_size: Optional[int], det) -> int:
    """Measured on a 2-core CPU (benchmarks/scoring.py): batch 8 is the fastest or within noise of it for
    both engines (eager torch: ~25 % more faces/s than 32, depthwise convolutions spill the cache at large
    batches; ONNX Runtime: flat from 1 to 8, a few % slower at 32). CUDA: not measured yet."""
    return batch_size or (8 if det.device.type == "cpu" else 32)


ENGINE_HELP = "Scoring engine: auto (ONNX Runtime on CPU, checked against torch; torch on CUDA), torch or onnx."


def _load(model: Optional[Path], device: str, backbone_weights: Optional[Path], engine: str = "auto"):
    from .detector import Detector
    from .engine import EngineError
    from .weights import WeightsError

    try:
        det = Detector.load(model, backbone_weights=backbone_weights).to(device).use_engine(engine)
        if engine != "auto":
            det.engine  # build now: a named engine that cannot run is an error before any work starts
        return det
    except (WeightsError, EngineError, ValueError) as exc:
        _fail(str(exc))


def _open_journal(output: Optional[Path], settings: dict, resume: bool):
    """The run's journal beside its first output file (None without one)."""
    from .journal import ResumeError, ScanJournal, journal_path

    if output is None:
        return None
    try:
        return ScanJournal(journal_path(output), settings, resume)
    except ResumeError as exc:
        _fail(str(exc), 2)


def _interrupted(journal, unit: str) -> None:
    """Ctrl-C: say how far the run got and how to go on; exit 130 like a shell."""
    if journal is None:
        err.print("interrupted; nothing was written (give an output file to make a run resumable)")
    else:
        journal.close()
        err.print(f"interrupted: {journal.files_done} {unit} are done and kept in {journal.path}; "
                  "run the same command with --resume to continue", highlight=False, soft_wrap=True)
    raise typer.Exit(130)


@app.command()
def scan(
    paths: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Detector bundle; default: the bundled demo model."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Write the table as CSV."),
    parquet: Optional[Path] = typer.Option(None, "--parquet", help="Write the table as Parquet."),
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="Write the table as JSON lines."),
    html_report: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML report (thumbnails, heat maps, marked-up images)."),
    fpr: float = typer.Option(0.05, "--fpr", min=1e-6, max=0.999999, help="False-positive rate on real faces for the verdict."),
    tail: Optional[Tail] = typer.Option(None, "--tail", help="p-value tail: two (flags atypically high or low scores) or upper; default: the model's."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    engine: Engine = typer.Option(Engine.auto, "--engine", help=ENGINE_HELP),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Faces scored per batch (default: 8 on CPU, 32 on CUDA)."),
    detector: Optional[DetectorKind] = typer.Option(None, "--detector", help="Face detector; default: the one the model was fitted with."),
    max_faces: int = typer.Option(0, "--max-faces", min=0, help="Keep at most N faces per image (0 = all)."),
    backbone_weights: Optional[Path] = typer.Option(None, "--backbone-weights", help="Backbone .safetensors for models fitted on a non-bundled backbone."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted scan (same arguments): finished files are not scanned again."),
    chunk_files: int = typer.Option(16, "--chunk-files", min=1, help="Files per unit of work (scored and journaled together)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Threads decoding and detecting ahead of scoring, one image each (0: one per CPU core)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Score every face in every image: box, score, p-value, verdict."""
    from .scan import ScanConfig, scan_settings, summarize
    from .scan import scan as run_scan
    from .tables import write_table

    outputs = [(p, fmt) for p, fmt in ((csv, "csv"), (parquet, "parquet"), (jsonl, "jsonl")) if p is not None]
    if resume and not outputs:
        _fail("--resume needs an output file (--csv, --parquet or --jsonl): the scan's journal lives beside it", 2)
    missing = [str(p) for p in paths if not p.exists() and not p.is_symlink()]
    if missing and len(missing) == len(paths):
        _fail(f"no such file or folder: {', '.join(missing)}", 2)
    det = _load(model, device, backbone_weights, engine.value)
    config = ScanConfig(fpr=fpr, tail=tail.value if tail else None, batch_size=_batch(batch_size, det),
                        detector=detector.value if detector else None, max_faces=max_faces, chunk_files=chunk_files,
                        visuals=html_report is not None, workers=workers)
    journal = _open_journal(outputs[0][0] if outputs else None, scan_settings(det, config, paths), resume)
    try:
        df = run_scan(paths, det, config, progress=not quiet, journal=journal)
    except KeyboardInterrupt:
        _interrupted(journal, "files")
    for path, fmt in outputs:
        write_table(df, path, fmt)
    if html_report is not None:
        from .report import write_html

        tail_used = config.tail or det.default_tail
        notes = [f"Verdict: fake when p <= {fpr:g} ({tail_used}-sided conformal p-value, {len(det.calibration)} calibration faces).",
                 f"Model: {model or 'bundled demonstration model'}; fitted on {det.card['training'].get('faces', '?')} real faces."]
        write_html(df, df.attrs.get("visuals", []), html_report, "muflow scan report", notes)
    if journal is not None:
        journal.close(remove=True)
    if quiet:
        return
    if not (csv or parquet or jsonl or html_report):
        _faces_table(df)
    _summary(summarize(df), det, config, [p for p in (csv, parquet, jsonl, html_report) if p])
    if model is None:
        err.print(
            "note: this is the bundled demonstration model, fitted on a few hundred faces from a few sources; "
            "real faces unlike them are often flagged. Fit on reals like yours: muflow fit DIR -o my.muflow",
            style="yellow", highlight=False,
        )


def _faces_table(df, limit: int = 50) -> None:
    t = Table(title="faces", show_lines=False)
    for col in ("file", "face", "status", "score", "p_value", "verdict"):
        t.add_column(col, overflow="fold")
    import pandas as pd

    def fmt(v, spec="{}"):
        return "" if pd.isna(v) else spec.format(v)

    for _, r in df.head(limit).iterrows():
        style = "bold red" if r["verdict"] == "fake" else None
        t.add_row(str(r["file"]), fmt(r["face"]), str(r["status"]), fmt(r["score"], "{:.4f}"),
                  fmt(r["p_value"], "{:.3f}"), fmt(r["verdict"]), style=style)
    out.print(t)
    if len(df) > limit:
        out.print(f"… {len(df) - limit} more rows: write them with --csv/--parquet/--jsonl")


def _summary(counts: dict[str, int], det, config, written: list[Path]) -> None:
    t = Table(title="muflow scan", show_header=False)
    t.add_column("what")
    t.add_column("count", justify="right")
    for k in ("files", "faces", "flagged", "no_face", "errors"):
        t.add_row(k.replace("_", " "), str(counts[k]), style="bold red" if k == "flagged" and counts[k] else None)
    err.print(t)
    tail = config.tail or det.default_tail
    note = f"verdict: fake when p <= {config.fpr:g} ({tail}-sided, {len(det.calibration)} calibration faces)"
    if det.min_p(tail) > config.fpr:
        note += f" — this model's smallest p-value is {det.min_p(tail):.3f}, so nothing can be flagged"
    err.print(note, highlight=False)
    for p in written:
        err.print(f"wrote {p}", highlight=False)


@app.command()
def fit(
    paths: list[Path] = typer.Argument(..., help="Folders (or files) of real face images."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the detector bundle (a folder)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Training epochs (default: ~6,000 face presentations, 8-60 epochs)."),
    k: Optional[int] = typer.Option(None, "--k", min=1, help="Crops per average face (default: n/4, at most 500)."),
    averages: Optional[int] = typer.Option(None, "--averages", min=8, help="Number of average faces (default: 2n, 64-1000)."),
    calibration_fraction: float = typer.Option(0.2, "--calibration-fraction", help="Share of faces held out to calibrate p-values."),
    group_by: GroupBy = typer.Option(GroupBy.file, "--group-by", help="Calibration split unit: file, or folder (e.g. one folder per video or person)."),
    crop_size: int = typer.Option(256, "--crop-size", min=64, help="Aligned crop side in pixels (multiple of 16)."),
    detector: DetectorKind = typer.Option(DetectorKind.scrfd, "--detector", help="Face detector."),
    backbone: str = typer.Option("mobilenetv2_100", "--backbone", help="timm backbone name."),
    backbone_weights: Optional[Path] = typer.Option(None, "--backbone-weights", help="Backbone weights (.safetensors)."),
    download_backbone: bool = typer.Option(False, "--download-backbone", help="Let timm download pretrained weights (needs network)."),
    steps: int = typer.Option(8, "--flow-steps", min=1, help="Coupling steps per flow."),
    batch_size: int = typer.Option(16, "--batch-size", min=2),
    lr: float = typer.Option(1e-3, "--lr"),
    tail: Tail = typer.Option(Tail.two, "--tail", help="Default p-value tail stored in the model."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    cache: CacheWhere = typer.Option(CacheWhere.auto, "--cache", help="Feature cache: auto (RAM up to half the free memory, else disk), memory or disk."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Folder for an on-disk feature cache (default: the system's temporary folder)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Fit a detector on a folder of real faces."""
    from .fit import FitConfig, FitError
    from .fit import fit as run_fit
    from .model import FlowConfig
    from .weights import WeightsError

    if crop_size % 16:
        _fail("--crop-size must be a multiple of 16", 2)
    if output.exists() and not (output / "card.json").is_file():
        _fail(f"{output} exists and is not a muflow model; choose another --output", 2)  # checked before a long fit
    config = FitConfig(
        crop_size=crop_size, detector=detector.value, backbone=backbone, backbone_weights=backbone_weights,
        download_backbone=download_backbone, flow=FlowConfig(steps=steps), k=k, averages=averages,
        calibration_fraction=calibration_fraction, group_by=group_by.value, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
        tail=tail.value, device=device, cache=cache.value, cache_dir=cache_dir,
    )
    try:
        det, report = run_fit(paths, config, progress=not quiet)
    except (FitError, WeightsError, ValueError) as exc:
        _fail(str(exc))
    det.save(output)
    if quiet:
        return
    t = Table(title=f"muflow fit → {output}", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    rows = [
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
    ]
    for a, b in rows:
        t.add_row(a, str(b))
    err.print(t)


@app.command()
def video(
    paths: list[Path] = typer.Argument(..., help="Video files or folders (searched recursively)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Detector bundle; default: the bundled demo model."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Per-frame table (.csv, .parquet or .jsonl by its suffix)."),
    tracks: Optional[Path] = typer.Option(None, "--tracks", help="Per-track table (.csv, .parquet or .jsonl by its suffix)."),
    fps: float = typer.Option(1.0, "--fps", min=0.001, help="Frames sampled per second of video time."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="Sample N evenly spaced frames instead of --fps."),
    fpr: float = typer.Option(0.05, "--fpr", min=1e-6, max=0.999999, help="False-positive rate on real faces for the verdicts."),
    tail: Optional[Tail] = typer.Option(None, "--tail", help="p-value tail (two or upper); default: the model's."),
    max_gap: int = typer.Option(2, "--max-gap", min=0, help="Samples a face may be missing before its track ends."),
    save_faces: Optional[Path] = typer.Option(None, "--save-faces", help="Write each track's first, middle and worst face crop here."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    engine: Engine = typer.Option(Engine.auto, "--engine", help=ENGINE_HELP),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Faces scored per batch (default: 8 on CPU, 32 on CUDA)."),
    detector: Optional[DetectorKind] = typer.Option(None, "--detector", help="Face detector; default: the model's."),
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
    if resume and not outputs:
        _fail("--resume needs an output file (--csv or --tracks): the run's journal lives beside it", 2)
    if all(not p.exists() for p in paths):
        _fail(f"no such file or folder: {', '.join(map(str, paths))}", 2)
    det = _load(model, device, None, engine.value)
    config = VideoConfig(fps=fps, frames=frames, fpr=fpr, tail=tail.value if tail else None, batch_size=_batch(batch_size, det),
                         detector=detector.value if detector else None, max_gap=max_gap, save_faces=save_faces)
    journal = _open_journal(outputs[0] if outputs else None, video_settings(det, config, paths), resume)
    try:
        frame_df, track_df = scan_videos(paths, det, config, progress=not quiet, journal=journal)
    except KeyboardInterrupt:
        _interrupted(journal, "videos")
    for path, df, fmt in zip(outputs, [frame_df if p is csv else track_df for p in outputs], formats):
        write_table(df, path, fmt)
    if journal is not None:
        journal.close(remove=True)
    if quiet:
        return
    t = Table(title="muflow video")
    for col in ("video", "status", "faces", "tracks", "flagged"):
        t.add_column(col, overflow="fold", justify="left" if col in ("video", "status") else "right")
    for _, r in summarize_videos(frame_df, track_df).iterrows():
        t.add_row(str(r["video"]), str(r["status"]), str(r["faces"]), str(r["tracks"]), str(r["flagged"]),
                  style="bold red" if r["flagged"] else None)
    err.print(t)
    err.print(f"track verdict: fake when min(1, 2 x median face p-value) <= {fpr:g}", highlight=False)
    for p in outputs:
        err.print(f"wrote {p}", highlight=False)


@app.command("eval")
def evaluate_cmd(
    real: list[str] = typer.Option(..., "--real", help="Folder of real images, NAME=DIR or DIR (repeatable)."),
    fake: list[str] = typer.Option(..., "--fake", help="Folder of fake images, NAME=DIR or DIR (repeatable)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for metrics.json, scores.csv and plots."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Detector bundle; default: the bundled demo model."),
    perturb: list[str] = typer.Option([], "--perturb", help="jpeg:Q, resize:F, blur:SIGMA, noise:SIGMA or flip (repeatable); clean is always measured."),
    fpr: float = typer.Option(0.05, "--fpr", min=1e-6, max=0.999999, help="The model's operating point for accuracy and TPR at threshold."),
    tail: Optional[Tail] = typer.Option(None, "--tail", help="p-value tail for the verdicts; default: the model's."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for 95 % intervals (0: none)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    engine: Engine = typer.Option(Engine.auto, "--engine", help=ENGINE_HELP),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Faces scored per batch (default: 8 on CPU, 32 on CUDA)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Measure a detector on labelled real and fake folders, clean and perturbed. Tunes nothing."""
    from .evaluate import EvalConfig, evaluate, parse_source, write_outputs
    from .perturb import Perturbation, parse

    try:
        perts = [Perturbation("none")] + [parse(p) for p in perturb if p.strip().lower() != "none"]
    except ValueError as exc:
        _fail(str(exc), 2)
    reals, fakes = [parse_source(r) for r in real], [parse_source(f) for f in fake]
    for name, path in reals + fakes:
        if not path.exists():
            _fail(f"no such folder: {path} ({name})", 2)
    det = _load(model, device, None, engine.value)
    config = EvalConfig(fpr=fpr, tail=tail.value if tail else None, bootstrap=bootstrap, seed=seed, batch_size=_batch(batch_size, det))
    scores, metrics = evaluate(reals, fakes, det, perts, config, progress=not quiet)
    written = write_outputs(scores, metrics, det, config, output)
    if quiet:
        return
    t = Table(title=f"muflow eval ({config.tail or det.default_tail}-sided, fpr {fpr:g})")
    for col in ("perturbation", "fakes", "n real/fake", "AUC [95% CI]", "AP", "EER", "TPR@thr", "FPR@thr", "acc@thr", "TPR@1%", "TPR@5%", "fakes score"):
        t.add_column(col, justify="left" if col in ("perturbation", "fakes") else "right")
    f = lambda m, k: f"{m[k]:.3f}" if k in m else "–"  # noqa: E731
    for m in metrics:
        ci = m.get("ci95", {}).get("auc")
        auc = f"{m['auc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") if "auc" in m else "–"
        t.add_row(m["perturbation"], m["fake_source"], f"{m['n_real']}/{m['n_fake']}", auc, f(m, "ap"), f(m, "eer"),
                  f(m, "tpr_at_threshold"), f(m, "fpr_at_threshold"), f(m, "accuracy_at_threshold"),
                  f(m, "tpr_at_fpr_1"), f(m, "tpr_at_fpr_5"), m["fakes_side"])
    out.print(t)
    err.print("AUC, AP, EER, TPR@1%/5% rank faces by score (higher = fake); @thr uses the model's own verdicts. "
              f"wrote {len(written)} files to {output}", highlight=False)


@app.command()
def info(model: Optional[Path] = typer.Argument(None, help="Detector bundle; default: the bundled model.")) -> None:
    """Show a detector bundle's card: what it was fitted on and how."""
    import json

    det = _load(model, "cpu", None)
    card = {k: v for k, v in det.card.items() if k != "crop"}
    out.print_json(json.dumps(card))


@weights_app.command("list")
def weights_list() -> None:
    """Bundled files with their licences and where they come from."""
    from .detector import CARD, default_model_path
    from .weights import manifest

    t = Table(title="bundled weights")
    for col in ("name", "kind", "file", "licence", "from"):
        t.add_column(col, overflow="fold")
    for e in manifest().values():
        t.add_row(e.name, e.kind, e.file, e.licence, e.provenance)
    if (default_model_path() / CARD).is_file():
        t.add_row("default", "detector bundle", default_model_path().name,
                  "demonstration model; inherits the licences above (SCRFD: non-commercial)", "scripts/make_default_model.py")
    out.print(t)


@weights_app.command("verify")
def weights_verify() -> None:
    """Check the sha256 of every bundled file (and the default model)."""
    from .detector import Detector
    from .weights import WeightsError, verify_all

    bad = 0
    for entry, ok, msg in verify_all():
        out.print(f"{'[green]ok[/]' if ok else '[red]FAIL[/]'}  {entry.file}  {msg if not ok else entry.sha256[:16]}")
        bad += not ok
    try:
        Detector.load(None)
        out.print("[green]ok[/]  default.muflow  card and tensors match")
    except WeightsError as exc:
        out.print(f"[red]FAIL[/]  default.muflow  {exc}")
        bad += 1
    if bad:
        raise typer.Exit(1)
