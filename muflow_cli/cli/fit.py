"""``muflow fit``: a detector fitted on a folder of real faces."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

import typer

from muflow_cli.cli import options as opt
from muflow_cli.cli.common import check_paths, fail, key_values, need_ray, read_files_from, warn
from muflow_cli.faces.options import FaceFinding
from muflow_cli.pipelines.fit_config import FitConfig
from muflow_cli.progress import stderr as err
from muflow_cli.stats.drift import forward_bound

# Options a preset sets when the user does not: command-line name -> FitConfig field.
PRESET_OPTIONS = {"backbone": "backbone", "k": "k", "averages": "averages", "crop_size": "crop_size", "steps": "flow"}


@opt.face_finding
def fit(
    ctx: typer.Context,
    paths: Optional[list[Path]] = typer.Argument(None, help="Folders (or files) of real face images."),
    files_from: Optional[Path] = opt.FILES_FROM,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the model bundle (a folder); default: NAME.muflow here, after the first input."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Training epochs (default: ~6,000 face presentations, 8-60 epochs)."),
    k: Optional[int] = typer.Option(None, "--k", min=1, help="Crops per average face (default: n/4, at most 500)."),
    averages: Optional[int] = typer.Option(None, "--averages", min=8, help="Number of average faces (default: 2n, 64-1000)."),
    calibration_fraction: float = typer.Option(0.2, "--calibration-fraction", help="Share of faces held out to calibrate p-values."),
    group_by: opt.GroupBy = typer.Option("auto", "--group-by", help="Calibration split unit: " + opt.GROUP_BY_HELP + "."),
    crop_size: int = typer.Option(256, "--crop-size", min=64, help="Aligned crop side in pixels (multiple of 16)."),
    backbone: str = typer.Option("mobilenetv2_100", "--backbone", help="timm backbone name."),
    backbone_weights: Optional[Path] = typer.Option(None, "--backbone-weights", help="Backbone weights (.safetensors)."),
    download_backbone: bool = typer.Option(False, "--download-backbone", help="Let timm download pretrained weights (needs network)."),
    preset: Optional[opt.FitPresetName] = typer.Option(None, "--preset", help="A named configuration; options given beside it win. paper: the µFlow paper's (ResNet-50 stages 1-3, k 500, M 1000, 256-px crops, 8 flow steps; your ResNet-50 weights via --backbone-weights)."),
    framings: int = typer.Option(FitConfig.framings, "--framings", min=0, max=8, help="Copies of each fit face cut as headshots are, so the masked flows learn the photo's edge (docs/method.md, Framing)."),
    native: bool = typer.Option(False, "--native", help="Score faces at native resolution: never enlarged, larger faces as crop-size tiles whose scores are pooled (docs/method.md, Native resolution). Off by default: it did not beat the standard crop (docs/performance.md)."),
    native_pool: opt.NativePool = typer.Option("mean", "--native-pool", help="With --native: how a large face's tile scores are pooled: mean, or top (the mean of the highest quarter)."),
    augment: int = typer.Option(0, "--augment", min=0, max=8, help="Degraded copies (JPEG, resampling, blur, noise, colour) of each fit face in flow training; 1 makes verdicts hold on re-saved photos (docs/method.md)."),
    steps: int = typer.Option(8, "--flow-steps", min=1, help="Coupling steps per flow."),
    batch_size: int = typer.Option(16, "--batch-size", min=2),
    lr: float = typer.Option(1e-3, "--lr"),
    tail: opt.FitTail = typer.Option("auto", "--tail", help="Default p-value tail stored in the model: auto (upper, unless smooth copies of the held-out reals score low: then two), two or upper."),
    seed: int = typer.Option(0, "--seed"),
    device: str = opt.DEVICE,
    precision: opt.Precision = typer.Option("auto", "--precision", help="Flows' training precision: auto (bf16 where the CPU or GPU does it natively, else fp32), fp32 or bf16. Scoring is always fp32."),
    cache: opt.CachePlace = typer.Option("auto", "--cache", help="Feature cache: auto (RAM up to half the free memory, else disk), memory or disk."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Folder for an on-disk feature cache (default: the system's temporary folder)."),
    ray_at: Optional[str] = opt.RAY,
    ray_actors: int = opt.RAY_ACTORS,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted fit (same arguments) from its last finished stage and epoch, kept beside the output."),
    strata: bool = opt.STRATA,
    html_report: Optional[Path] = typer.Option(None, "--html", help="Also write an HTML report of the model: average and fit faces, loss per epoch, calibration."),
    quiet: bool = opt.QUIET,
    faces: FaceFinding = FaceFinding(),
) -> None:
    """Fit a detector on a folder of real faces."""
    from muflow_cli.model.bundle import check_output
    from muflow_cli.nn.config import FlowConfig
    from muflow_cli.pipelines.fit import fit as run_fit
    from muflow_cli.pipelines.fit_config import PRESETS

    fields = dict(
        crop_size=crop_size, faces=faces, backbone=backbone, backbone_weights=backbone_weights, download_backbone=download_backbone,
        flow=FlowConfig(steps=steps), k=k, averages=averages, calibration_fraction=calibration_fraction, group_by=group_by,
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, tail=tail, device=device, cache=cache, cache_dir=cache_dir,
        augment=augment, framings=framings, precision=precision, strata=strata, native=native, pool=native_pool,
    )
    if preset is None:
        config = FitConfig(**fields)
    else:  # the preset's values, except where the user gave the option
        unset = {field for name, field in PRESET_OPTIONS.items() if ctx.get_parameter_source(name).name != "COMMANDLINE"}
        fields = {k: v for k, v in fields.items() if k not in unset}
        config = PRESETS[preset].config(**fields)
    config.check()
    if not paths and files_from is None:
        fail("give folders or files of real faces, or --files-from LIST", 2)
    if paths:
        check_paths(paths)
    if output is None:
        output = default_output(paths[0] if paths else files_from)
    paths = list(paths or []) + [Path(p) for p in read_files_from(files_from)]
    check_output(output)  # before a long fit, not after it
    collection = None
    if ray_at is not None:
        need_ray()
        from muflow_cli.pipelines.ray.collect import RayCollection

        collection = RayCollection(ray_at, ray_actors)
    from muflow_cli.pipelines.fit_checkpoint import checkpoint_path, describe
    from muflow_cli.pipelines.fit_stages import split_text

    checkpoint = checkpoint_path(output)
    if resume and not checkpoint.is_dir():
        err.print(f"nothing to resume ({checkpoint} does not exist): fitting from the start", highlight=False)
    try:
        det, report = run_fit(paths, config, progress=not quiet, notify=None if quiet else lambda line: err.print(line, highlight=False),
                              checkpoint_dir=checkpoint, resume=resume, keep_checkpoint=True, ray_at=collection)
    except KeyboardInterrupt:
        err.print(f"interrupted: {describe(checkpoint)}, kept in {checkpoint}; "
                  "run the same command with --resume to continue", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    det.save(output)
    shutil.rmtree(checkpoint, ignore_errors=True)  # the model is written: the checkpoint has served
    if html_report is not None:
        from muflow_cli.outputs.fit_report import write_fit_report

        write_fit_report(det, html_report, output.name, report.seconds)
        err.print(f"wrote {html_report}", highlight=False)
    warn(report.warnings)
    if quiet:
        return
    key_values(f"muflow fit → {output}", [
        ("image files", report.files),
        ("skipped", ", ".join(f"{k}: {v}" for k, v in report.skipped.items()) or "none"),
        ("faces", report.faces),
        ("fit / calibration faces", f"{report.fit_faces} / {report.calibration_faces}"
         + (f" ({report.crops['fit']} / {report.crops['calibration']} native crops)" if report.crops else "")),
        ("calibration split", split_text(report.split, config.group_by)),
        ("averages (k crops each)", f"{report.averages} ({report.k})"),
        ("epochs", report.epochs),
        ("final loss (nats/dim)", f"{report.losses[-1]:.4f}"),
        ("calibration mean score", f"{report.calibration_mean:.4f}"),
        ("p-value tail", report.tail + ("" if config.tail != "auto" else " (auto: too few held-out faces to probe)"
                                        if report.tail_probe_auc != report.tail_probe_auc else
                                        f" (auto: smooth copies of the held-out reals score above them with AUC {report.tail_probe_auc:.2f})")),
        ("forward check", "not measured (too few held-out faces)" if report.forward_fpr is None else
         f"{report.forward_fpr:.1%} of {report.forward_faces} later held-out faces flagged at 0.05 "
         f"(95 % upper bound {forward_bound(report.forward_fpr, report.forward_faces):.1%})"),
        ("calibration strata", ", ".join(f"{k} {v}" for k, v in report.strata.items()) or "none (pooled)"),
        ("feature cache", f"{report.cache['bytes'] / 2**20:.0f} MiB in {report.cache['where']}"),
        ("time", " ".join(f"{k} {v:.0f}s" for k, v in report.seconds.items())),
    ])
    err.print(f"wrote {output}\nscan with it: muflow scan PHOTOS --model {output}", highlight=False)


def default_output(first_input: Path) -> Path:
    """NAME.muflow in the current folder, NAME from the first input; never an existing path (NAME-2.muflow, …)."""
    name = Path(os.path.basename(os.path.abspath(first_input))).stem or "model"  # as the user named it (no link resolved)
    candidate, n = Path(f"{name}.muflow"), 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = Path(f"{name}-{n}.muflow")
    return candidate
