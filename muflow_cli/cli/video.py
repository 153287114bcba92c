"""``muflow video``: sampled frames, face tracks, a verdict per track and per video."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from muflow_cli.cli import options as opt
from muflow_cli.cli.common import (
    PROVENANCE_NOTE,
    check_paths,
    domain_warning,
    fail,
    journaled,
    load_model,
    model_note,
    report_written,
    short_name,
)
from muflow_cli.faces.options import FaceFinding
from muflow_cli.progress import stderr as err
from muflow_cli.progress import stdout as out


@opt.face_finding
def video(
    paths: list[Path] = typer.Argument(..., help="Video files or folders (searched recursively)."),
    model: Optional[Path] = opt.MODEL,
    csv: Optional[Path] = typer.Option(None, "--csv", help="Per-frame table (.csv, .parquet or .jsonl by its suffix)."),
    tracks: Optional[Path] = typer.Option(None, "--tracks", help="Per-track table (.csv, .parquet or .jsonl by its suffix)."),
    fps: float = typer.Option(1.0, "--fps", min=0.001, help="Frames sampled per second of video time."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="Sample N evenly spaced frames instead of --fps."),
    fpr: float = opt.FPR,
    fdr: Optional[float] = opt.FDR,
    tail: Optional[opt.Tail] = opt.TAIL,
    max_gap: int = typer.Option(2, "--max-gap", min=0, help="Samples a face may be missing before its track ends."),
    save_faces: Optional[Path] = typer.Option(None, "--save-faces", help="Write each track's first, middle and worst face crop here."),
    html_report: Optional[Path] = typer.Option(None, "--html", help=opt.HTML_HELP + " Per track: faces, heat maps, scores over time."),
    device: str = opt.DEVICE,
    engine: opt.EngineName = opt.ENGINE,
    batch_size: Optional[int] = opt.BATCH_SIZE,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (same arguments): finished videos are not redone."),
    provenance: bool = opt.PROVENANCE,
    quiet: bool = opt.QUIET,
    faces: FaceFinding = FaceFinding(),
) -> None:
    """Sample frames, track faces, and give a verdict per face track and per video."""
    from muflow_cli.outputs.tables import format_of, write_table
    from muflow_cli.pipelines.video_scan import VideoConfig, scan_videos, summarize_videos, video_settings

    outputs = [p for p in (csv, tracks) if p is not None]
    try:
        formats = [format_of(p) for p in outputs]
    except ValueError as exc:
        fail(str(exc), 2)
    config = VideoConfig(fps=fps, frames=frames, fpr=fpr, tail=tail, batch_size=batch_size, faces=faces, max_gap=max_gap,
                         save_faces=save_faces, provenance=provenance, fdr=fdr)
    config.check()
    if resume and not outputs:
        fail("--resume needs an output file (--csv or --tracks): the run's journal lives beside it", 2)
    check_paths(paths)
    target = None
    if html_report is not None:
        from muflow_cli.outputs.report import ReportTarget

        target = ReportTarget(html_report, resume)  # each video's picks are written there when it is done
    det = load_model(model, device, None, engine)
    visuals = None
    if target is not None:
        from muflow_cli.outputs.video_report import VideoVisuals

        visuals = VideoVisuals(det.card.channels, target)
    written = list(outputs)

    def write(tables) -> None:
        for path, fmt in zip(outputs, formats):
            write_table(tables[0] if path is csv else tables[1], path, fmt)
        if target is not None:
            from muflow_cli.outputs.video_report import write_video_html

            notes = [f"Track verdict: fake when min(1, 2 x median face p-value) <= {fpr:g}; face "
                     + det.calibration.describe(fpr, config.tail) + ".", model_note(det, model)]
            written.append(report_written(*write_video_html(*tables, target, "muflow video report", notes,
                                                            det.calibration.cutoffs(fpr, config.tail))))

    frame_df, track_df = journaled(outputs, lambda: video_settings(det, config, paths), resume,
                                   lambda journal: scan_videos(paths, det, config, progress=not quiet, journal=journal,
                                                               observer=visuals), write, "videos")
    if quiet:
        return
    t = Table(title="muflow video")
    t.add_column("video", overflow="fold")
    columns = ("status", "faces", "tracks", "flagged") + (("provenance",) if provenance else ())
    for col in columns:
        t.add_column(col, justify="left" if col in ("status", "provenance") else "right", no_wrap=True)
    for _, r in summarize_videos(frame_df, track_df).iterrows():
        t.add_row(short_name(str(r["video"]), paths, max(out.width - 40 - 16 * provenance, 16)),
                  *(str(r[c]) for c in columns), style="bold red" if r["flagged"] else None)
    err.print(t)
    err.print(f"track verdict: fake when min(1, 2 x median face p-value) <= {fpr:g}", highlight=False)
    if provenance:
        err.print(PROVENANCE_NOTE, highlight=False)
    domain_warning(det, frame_df["p_value"].dropna().to_numpy(float), fpr, config.tail, model, "faces of the sampled frames: ")
    for p in written:
        err.print(f"wrote {p}", highlight=False)
