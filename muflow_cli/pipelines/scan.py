"""Scan images: every face in every file, scored in batches, one table row per face.

Files with no face, or that cannot be read, get one row with a status and a message; a
scan never stops for a bad file.

Two stages overlap: while the faces of one chunk of files are scored, the next chunk is
decoded, detected and aligned by a pool of ``workers`` threads (onnxruntime, OpenCV and
numpy release the GIL). Each worker runs single-threaded: on a CPU, one image per core is
more work per second than one image split over all cores (docs/performance.md).

Consumers (the HTML report) see each chunk through an ``observer`` callback; the scan does
not know what they do with it.

Each file's provenance (what it says about itself: C2PA, IPTC/XMP labels, generator settings,
camera EXIF; inputs/provenance.py) is read by the same worker from the same bytes as its pixels,
and goes into the file-level columns ``provenance`` and ``provenance_detail`` of each of its rows.
It is evidence beside the verdict: it never changes a score, a p-value or a verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from muflow_cli.errors import ConfigError
from muflow_cli.faces.face import Face, FileFaces
from muflow_cli.faces.options import FaceFinding
from muflow_cli.faces.stage import FaceStage
from muflow_cli.inputs.files import shown_path
from muflow_cli.inputs.images import iter_image_files
from muflow_cli.inputs.provenance import TIME_CAP_S
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.model.device import default_batch_size
from muflow_cli.pipelines.identity import run_settings
from muflow_cli.pipelines.journal import ScanJournal, file_identity
from muflow_cli.pipelines.schema import SMALL_FACE_PX, face_columns, layer_columns, provenance_columns, to_frame, unscored_message
from muflow_cli.pipelines.verdicts import apply_fdr, jpeg_round_trip, judge
from muflow_cli.progress import track
from muflow_cli.stats.calibration import check_fdr, check_fpr, check_tail


@dataclass
class ScanConfig:
    fpr: float = 0.05
    tail: str | None = None  # None: the model's (calibration.resolve)
    batch_size: int | None = None  # None: by device (device.default_batch_size)
    faces: FaceFinding = field(default_factory=FaceFinding)  # which detector, down to which size, or pre-aligned crops
    chunk_files: int = 16  # files per unit of work: scored together, journaled together
    visuals: bool = False  # keep decoded images and residual maps for the observer (HTML report)
    workers: int = 0  # detection threads, one image each; 0: one per CPU core (faces.default_workers)
    provenance: bool = True  # read what each file says about itself (the provenance columns); False: left empty
    stability: bool = True  # re-score faces near the threshold after a JPEG 90 round trip; a flip: inconclusive
    fdr: float | None = None  # the run's verdicts by Benjamini-Hochberg at this false discovery rate (stats/conformal.py)

    @property
    def provenance_cap(self) -> float | None:
        """The per-file time cap of the provenance reading; None when it is off."""
        return TIME_CAP_S if self.provenance else None

    def check(self) -> None:
        check_fpr(self.fpr)
        check_tail(self.tail)
        check_fdr(self.fdr)
        if self.chunk_files < 1 or (self.batch_size is not None and self.batch_size < 1) or self.workers < 0:
            raise ConfigError("chunk_files and batch_size must be at least 1, workers at least 0")
        self.faces.check()


@dataclass
class ScanChunk:
    """One chunk of files as the scan finished it, for an observer."""

    index: int
    rows: list[dict]
    files: list[FileFaces] | None = None  # None when the chunk came from the resume journal
    crops: list[np.ndarray] = field(default_factory=list)  # aligned crops, in face-row order
    maps: list[np.ndarray] = field(default_factory=list)  # per layer (faces, H, W) residual maps (with visuals)
    extras: Any = None  # what the observer kept for this chunk on an earlier run (from the journal)


# Called once per chunk; returns JSON-serialisable data kept in the journal with the chunk (or None).
ChunkObserver = Callable[[ScanChunk], Any]


def _file_row(res: FileFaces, shown: str) -> dict:
    w, h = res.image_size or (None, None)
    return {"file": shown, "face": None, "status": res.status, "message": res.message, "image_width": w, "image_height": h,
            **provenance_columns(res)}


def _face_rows(res: FileFaces, shown: str) -> list[dict]:
    rows = []
    for i, f in enumerate(res.faces or []):
        row = _file_row(res, shown)
        small = f.size_px < SMALL_FACE_PX
        row.update(
            face=i,
            message=f"small face ({f.size_px:.0f} px): less reliable" if small else "",
            **face_columns(f),
            landmarks=";".join(f"{x:.1f} {y:.1f}" for x, y in f.landmarks),
            upscale=f.scale,
            inside=f.inside,
        )
        rows.append(row)
    return rows


def scan_settings(model: DeepfakeModel, config: ScanConfig, paths: list[Path]) -> dict:
    """What makes two scans the same scan (for --resume; pipelines/identity.py)."""
    return run_settings("scan", model.tensors_sha256, config, [shown_path(Path(p).absolute()) for p in paths])


def iter_scan(
    paths: Iterable[Path],
    model: DeepfakeModel,
    config: ScanConfig = ScanConfig(),
    progress: bool = True,
    journal: ScanJournal | None = None,
    transform=None,
    observer: ChunkObserver | None = None,
) -> Iterator[dict]:
    """Rows in file order. Files go in chunks of ``config.chunk_files``; each chunk's faces are
    scored together, in batches of ``config.batch_size``, and the chunk is recorded in ``journal``
    (when given) before its rows are yielded; chunks the journal already holds are not redone.
    ``observer`` sees every chunk (computed or from the journal) before its rows are yielded.
    """
    config.check()
    files = list(iter_image_files(paths))
    chunks = [files[i : i + config.chunk_files] for i in range(0, len(files), config.chunk_files)]
    shown = [[shown_path(p) for p in chunk] for chunk in chunks]
    ids: dict[int, list] = {}

    def ids_of(index: int) -> list:
        """Path, size and mtime of chunk ``index``'s files, read once (what the journal compares)."""
        if index not in ids:
            ids[index] = [file_identity(p, s) for p, s in zip(chunks[index], shown[index])]
        return ids[index]

    def done(index: int):
        return journal.lookup(index, ids_of(index)) if journal is not None else None

    stage = FaceStage(config.faces, model.card.face_detector.factory(config.faces), model.crop_size, model.context,
                      transform, config.visuals, config.workers, config.provenance_cap, model.native)
    engine = None  # built once the first chunk is being detected: the workers start while the graph loads
    ahead: dict[int, list[Future]] = {}
    bar = track(range(len(files)), "scanning", enabled=progress)
    try:
        for index, chunk in enumerate(chunks):
            kept = done(index)
            if kept is None:
                futures = ahead.pop(index, None) or stage.submit(chunk)
                nxt = index + 1  # decoded and detected while this chunk is scored, unless the journal holds it
                if nxt < len(chunks) and done(nxt) is None:
                    ahead[nxt] = stage.submit(chunks[nxt])
                if engine is None:
                    engine = model.engine
                    engine.set_spinning(False)  # scoring shares the cores with the detection workers
                result = score_chunk(index, [f.result() for f in futures], shown[index], model, config)
                extras = observer(result) if observer is not None else None
                if journal is not None:
                    journal.record(index, ids_of(index), result.rows, extras)
            else:
                result = ScanChunk(index, kept[0], extras=kept[1])
                if observer is not None:
                    observer(result)
            for _ in chunk:
                next(bar, None)
            yield from result.rows
        for _ in bar:  # close the progress bar
            pass
    finally:
        stage.close()
        if engine is not None:
            engine.set_spinning(True)


def score_chunk(index: int, results: list[FileFaces], shown: list[str], model: DeepfakeModel, config: ScanConfig) -> ScanChunk:
    """Rows of one chunk of files: a row per face (scored together) and a row per file without one."""
    rows: list[dict] = []
    face_rows: list[dict] = []
    crops: list[np.ndarray] = []
    faces: list[Face] = []
    comps = []  # each face's file's compression: its calibration stratum
    for res, name in zip(results, shown):
        if res.status == "ok":
            new = _face_rows(res, name)
            face_rows += new
            faces += res.faces
            comps += [res.compression] * len(res.faces)
            rows += new
        else:
            rows.append(_file_row(res, name))
    crops = [f.crop for f in faces]
    chunk = ScanChunk(index, rows, results, crops)
    if crops:
        batch = config.batch_size or default_batch_size(model.device_type)
        out = model.score_faces(faces, batch_size=batch, with_maps=config.visuals)

        def rescore(at: np.ndarray) -> np.ndarray:
            return model.score_faces([faces[i] for i in at], batch_size=batch, transform=jpeg_round_trip)["score"]

        judged = judge(model.calibration, out["score"], comps, [f.scale for f in faces],
                       [f.size_px for f in faces], config.fpr, config.tail, model.card.training.min_face_px,
                       rescore if config.stability else None)
        names = layer_columns(model.layer_names)
        for k, row in enumerate(face_rows):
            row["score"] = float(out["score"][k])
            row["p_value"] = float(judged.p_value[k])
            row["stratum"] = judged.stratum[k] or None
            row["verdict"] = judged.verdict[k]
            row.update(zip(names, (float(v) for v in out["layers"][k])))
            if np.isnan(out["score"][k]):
                row["message"] = unscored_message(faces[k])
            elif judged.reason[k]:
                row["message"] = "; ".join(m for m in (row["message"], judged.reason[k]) if m)
        chunk.maps = out.get("maps", [])
    return chunk


def scan(
    paths: Iterable[Path],
    model: DeepfakeModel,
    config: ScanConfig = ScanConfig(),
    progress: bool = True,
    journal: ScanJournal | None = None,
    transform=None,
    observer: ChunkObserver | None = None,
) -> pd.DataFrame:
    """The whole scan as a table (see pipelines/schema.py SCHEMA for the columns)."""
    rows = list(iter_scan(paths, model, config, progress, journal, transform, observer))
    table = to_frame(rows, model.layer_names)
    return apply_fdr(table, config.fdr) if config.fdr is not None else table
