"""Every option that more than one command takes, declared once.

Options of one concern travel as one library object: ``--face-detector``, ``--aligned``, ``--min-face``
and ``--max-faces`` become a :class:`~muflow_cli.faces.options.FaceFinding`; ``--csv``, ``--parquet``,
``--jsonl``, ``--html`` and ``--resume`` an :class:`~muflow_cli.outputs.options.ScanOutputs`. A command
asks for them with :func:`grouped`, which adds the declarations to its signature (Typer reads that)
and hands the command the built object. A new face-finding option is one field of FaceFinding and
one entry of :data:`FACE_FINDING` here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import typer

from muflow_cli import choices
from muflow_cli.faces.options import FaceFinding
from muflow_cli.outputs.options import ScanOutputs

# Choice types from the library's own name lists (values stay plain strings).
Tail = Literal[choices.TAILS]
FitTail = Literal[choices.FIT_TAILS]
EngineName = Literal[choices.ENGINES]
GroupBy = Literal[choices.GROUP_BY]
FaceDetectorName = Literal[choices.FACE_DETECTORS]
AlignedConvention = Literal[choices.ALIGNED_CONVENTIONS]
Precision = Literal[choices.PRECISIONS]
NativePool = Literal[choices.NATIVE_POOLS]
CachePlace = Literal[choices.CACHE_PLACES]
FitPresetName = Literal[choices.FIT_PRESETS]

HTML_HELP = ("Write an HTML report: NAME.html is one self-contained file (for a large scan: NAME.html is the index, "
             "its pages are in NAME_files/); any other NAME is a folder of pages with NAME/index.html.")

# -- single options shared by several commands -------------------------------------------------
MODEL = typer.Option(None, "--model", "-m", help="Model bundle; default: the bundled demo model.")
FPR = typer.Option(0.05, "--fpr", min=1e-6, max=0.999999, help="False-positive rate on real faces for the verdict.")
FDR = typer.Option(None, "--fdr", min=1e-6, max=0.999999, help="Flag by Benjamini-Hochberg over the whole run instead: at most this share of the flagged faces are expected to be real.")
STABILITY = typer.Option(True, "--stability/--no-stability", help="Re-score faces near the threshold after a JPEG 90 round trip; a verdict that flips is inconclusive.")
STRATA = typer.Option(True, "--strata/--no-strata", help="Also calibrate per processing: the calibration photos re-saved (JPEG 95/75/50) and shrunk, scored again (minutes).")
TAIL = typer.Option(None, "--tail", help="p-value tail: two (flags atypically high or low scores) or upper; default: the model's.")
DEVICE = typer.Option("auto", "--device", help="auto, cpu or cuda[:N].")
ENGINE = typer.Option("auto", "--engine", help="Scoring engine: auto (ONNX Runtime on CPU, checked against torch; torch on CUDA), torch or onnx.")
BATCH_SIZE = typer.Option(None, "--batch-size", min=1, help="Faces scored per batch (default: 8 on CPU, 32 on CUDA).")
WORKERS = typer.Option(0, "--workers", min=0, help="Threads decoding and detecting ahead of scoring, one image each (0: one per CPU core).")
BACKBONE_WEIGHTS = typer.Option(None, "--backbone-weights", help="Backbone .safetensors for models fitted on a non-bundled backbone.")
RAY = typer.Option(None, "--ray", help=(
    "Find the faces on Ray Data: local (a cluster on this machine), auto (the cluster `ray start` joined) or its ADDRESS. "
    "scan: scores there too and needs --parquet OUT (a folder); fit: the fit itself runs here, on the same crops."))
RAY_ACTORS = typer.Option(0, "--ray-actors", min=0, help=(
    "With --ray: face-finding actors (0: one per CPU; scan: per CPU not given to a scoring actor, and where there are "
    "no scoring actors they score too)."))
FILES_FROM = typer.Option(None, "--files-from", help="Also take the files (or folders) listed in this file, one per line.")
GROUP_BY_HELP = ("auto (near-duplicates by what the faces show: frames of a clip, shots of a burst, re-saved "
                 "copies; never by name alone), file, or folder (one folder per video or person)")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary.")
HTML = typer.Option(None, "--html", help=HTML_HELP)
RESUME = typer.Option(False, "--resume", help="Continue an interrupted run (same arguments): finished work is not done again.")
PROVENANCE = typer.Option(True, "--provenance/--no-provenance", help=(
    "Read what each file says about itself (C2PA Content Credentials, IPTC/XMP labels, generator settings, camera EXIF) into "
    "the provenance columns: evidence beside the verdict, never part of it (metadata is easy to strip and to forge)."))


@dataclass(frozen=True)
class Declared:
    """One command-line option of a group: the field of the group's object it sets, its type, its declaration."""

    field: str
    annotation: Any
    option: Any


# The face-finding options of every command that finds faces (scan, fit, video, eval, calibrate).
FACE_FINDING: dict[str, Declared] = {
    "face_detector": Declared("detector", Optional[FaceDetectorName],
                              typer.Option(None, "--face-detector", help="Face detector; default: the one the model was fitted with (fit: scrfd).")),
    # `--detector` was the face detector's flag before 0.2; it still works, hidden.
    "old_detector": Declared("detector", Optional[FaceDetectorName], typer.Option(None, "--detector", hidden=True)),
    "aligned": Declared("aligned", Optional[AlignedConvention], typer.Option(
        None, "--aligned", help="Each image is one already-aligned face in this convention (muflow: muflow's own crops, e.g. "
        "--save-faces; arcface: 112-px ArcFace crops; ffhq: FFHQ/StyleGAN crops): scored without detection.")),
    "min_face": Declared("min_face", float, typer.Option(
        0.0, "--min-face", min=0.0, help="Also look for faces this small (px) in large images, by tiles (slow: ~30x per 12-Mpixel photo; 0 = off).")),
    "max_faces": Declared("max_faces", int, typer.Option(0, "--max-faces", min=0, help="Keep at most N faces per image (0 = all).")),
}

# Where a scan writes, and whether it goes on from an interrupted run.
SCAN_OUTPUTS: dict[str, Declared] = {
    "csv": Declared("csv", Optional[Path], typer.Option(None, "--csv", help="Write the table as CSV.")),
    "parquet": Declared("parquet", Optional[str], typer.Option(
        None, "--parquet", help="Write the table as Parquet (with --ray: a folder of Parquet parts, local or a URI).")),
    "jsonl": Declared("jsonl", Optional[Path], typer.Option(None, "--jsonl", help="Write the table as JSON lines.")),
    "html_report": Declared("html", Optional[Path], typer.Option(None, "--html", help=HTML_HELP + " Thumbnails, heat maps, marked-up images.")),
    "resume": Declared("resume", bool, typer.Option(
        False, "--resume", help="Continue an interrupted scan (same arguments): finished files are not scanned again.")),
}


def grouped(parameter: str, build: Callable[..., Any], declarations: dict[str, Declared]) -> Callable[[Callable], Callable]:
    """Give a command the options in ``declarations`` and, as its ``parameter`` argument, ``build(**fields)``.

    Several options may set one field (an old alias): the first one given wins."""

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=d.option, annotation=d.annotation)
                 for name, d in declarations.items()]
        kept = [p for name, p in signature.parameters.items() if name != parameter]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            fields: dict[str, Any] = {}
            for name, d in declarations.items():
                value = kwargs.pop(name)
                if d.field not in fields or fields[d.field] is None:
                    fields[d.field] = value
            return command(*args, **{**kwargs, parameter: build(**fields)})

        run.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
        return run

    return decorate


face_finding = grouped("faces", FaceFinding, FACE_FINDING)
scan_outputs = grouped("outputs", ScanOutputs, SCAN_OUTPUTS)
