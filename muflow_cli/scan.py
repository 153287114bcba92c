"""Scan images: every face in every file, scored in batches, one table row per face.

Files with no face, or that cannot be read, get one row with a status and a message; a
scan never stops for a bad file.

Two stages overlap: while the faces of one chunk of files are scored, the next chunk is
decoded, detected and aligned by a pool of ``workers`` threads (onnxruntime, OpenCV and
numpy release the GIL). Each worker runs single-threaded: on a CPU, one image per core is
more work per second than one image split over all cores (docs/performance.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .detector import Detector
from .faces import FaceStage, FileFaces
from .images import iter_image_files
from .journal import ScanJournal, file_identity, run_settings
from .progress import track
from .score import TAILS
from .tables import SMALL_FACE_PX, layer_columns, to_frame


@dataclass
class ScanConfig:
    fpr: float = 0.05
    tail: str | None = None  # None: the model's default (two-sided unless its card says otherwise)
    batch_size: int = 32
    detector: str | None = None  # None: the detector the model was fitted with
    det_threshold: float | None = None
    max_faces: int = 0
    chunk_files: int = 16  # files per unit of work: scored together, journaled together
    visuals: bool = False  # keep thumbnails, heat maps and marked-up images for an HTML report
    workers: int = 0  # detection threads, one image each; 0: one per CPU core (faces.default_workers)

    def check(self) -> None:
        if not 0 < self.fpr < 1:
            raise ValueError("fpr must lie strictly between 0 and 1")
        if self.chunk_files < 1 or self.batch_size < 1 or self.workers < 0:
            raise ValueError("chunk_files and batch_size must be at least 1, workers at least 0")
        if self.tail is not None and self.tail not in TAILS:
            raise ValueError(f"tail must be one of {', '.join(TAILS)}")


def _file_row(res: FileFaces) -> dict:
    w, h = res.image_size or (None, None)
    return {"file": str(res.path), "face": None, "status": res.status, "message": res.message, "image_width": w, "image_height": h}


def _face_rows(res: FileFaces) -> list[dict]:
    rows = []
    for i, f in enumerate(res.faces or []):
        row = _file_row(res)
        x1, y1, x2, y2 = (float(v) for v in f.box)
        small = f.size_px < SMALL_FACE_PX
        row.update(
            face=i,
            message=f"small face ({f.size_px:.0f} px): less reliable" if small else "",
            x1=x1, y1=y1, x2=x2, y2=y2,
            det_score=f.det_score,
            landmarks=";".join(f"{x:.1f} {y:.1f}" for x, y in f.landmarks),
            face_px=f.size_px,
            upscale=f.scale,
        )
        rows.append(row)
    return rows


def shown_path(path: Path) -> str:
    """The path as text for tables: undecodable bytes of non-UTF-8 names become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def scan_settings(detector: Detector, config: ScanConfig, paths: list[Path]) -> dict:
    """What makes two scans the same scan (for --resume); the number of workers does not change a row."""
    shown = [shown_path(Path(p).absolute()) for p in paths]
    settings = run_settings("scan", detector.card.get("tensors", {}).get("sha256"), config, shown)
    settings.pop("workers", None)
    return settings


def iter_scan(
    paths: Iterable[Path],
    detector: Detector,
    config: ScanConfig = ScanConfig(),
    progress: bool = True,
    journal: ScanJournal | None = None,
    transform=None,
) -> Iterator[dict]:
    """Rows in file order. Files go in chunks of ``config.chunk_files``; each chunk's faces are
    scored together, in batches of ``config.batch_size``, and the chunk is recorded in ``journal``
    (when given) before its rows are yielded; chunks the journal already holds are not redone.
    """
    config.check()
    tail = config.tail or detector.default_tail
    names = layer_columns(detector.layer_names)
    files = list(iter_image_files(paths))
    chunks = [files[i : i + config.chunk_files] for i in range(0, len(files), config.chunk_files)]
    shown = [[shown_path(p) for p in chunk] for chunk in chunks]
    ids: dict[int, list] = {}

    def ids_of(index: int) -> list:
        """Path, size and mtime of chunk ``index``'s files, read once (what the journal compares)."""
        if index not in ids:
            ids[index] = [file_identity(p, s) for p, s in zip(chunks[index], shown[index])]
        return ids[index]

    stage = FaceStage(
        lambda: detector.face_detector(config.detector, config.det_threshold, threads=1),
        detector.crop_size, detector.context, config.max_faces, transform, config.visuals, config.workers,
    )
    engine = detector.engine
    engine.set_spinning(False)  # scoring shares the cores with the detection workers
    ahead: dict[int, list[Future]] = {}
    bar = track(range(len(files)), "scanning", enabled=progress)
    try:
        for index, chunk in enumerate(chunks):
            rows = journal.lookup(index, ids_of(index)) if journal is not None else None
            if rows is None:
                futures = ahead.pop(index, None) or stage.submit(chunk)
                nxt = index + 1  # decoded and detected while this chunk is scored, unless the journal holds it
                if nxt < len(chunks) and (journal is None or journal.peek(nxt, ids_of(nxt)) is None):
                    ahead[nxt] = stage.submit(chunks[nxt])
                rows = _score_chunk([f.result() for f in futures], shown[index], detector, config, tail, names)
                if journal is not None:
                    journal.record(index, ids_of(index), rows)
            for _ in chunk:
                next(bar, None)
            yield from rows
        for _ in bar:  # close the progress bar
            pass
    finally:
        stage.close()
        engine.set_spinning(True)


def _score_chunk(results: list[FileFaces], shown: list[str], detector, config, tail, names) -> list[dict]:
    rows: list[dict] = []
    crops: list[np.ndarray] = []
    face_rows: list[dict] = []
    files_faces = []
    for res, name in zip(results, shown):
        res.path = name
        files_faces.append(res)
        if res.status == "ok":
            new = _face_rows(res)
            face_rows += new
            crops += [f.crop for f in res.faces]
            rows += new
        else:
            rows.append(_file_row(res))
    maps: list[np.ndarray] = []
    if crops:
        out = detector.score(np.stack(crops), batch_size=config.batch_size, with_maps=config.visuals)
        pvals = detector.p_values(out["score"], tail)
        for k, row in enumerate(face_rows):
            row["score"] = float(out["score"][k])
            row["p_value"] = float(pvals[k])
            row["verdict"] = "fake" if pvals[k] <= config.fpr else "real"
            row.update(zip(names, (float(v) for v in out["layers"][k])))
        maps = out.get("maps", [])
    if config.visuals:
        from .report import attach_visuals

        attach_visuals(rows, files_faces, crops, maps, [layer["channels"] for layer in detector.card["layers"]])
    return rows


def scan(
    paths: Iterable[Path],
    detector: Detector,
    config: ScanConfig = ScanConfig(),
    progress: bool = True,
    journal: ScanJournal | None = None,
    transform=None,
) -> pd.DataFrame:
    """The whole scan as a table (see tables.SCHEMA for the columns).

    With ``config.visuals`` the frame's ``attrs["visuals"]`` holds, per row, the report's images.
    """
    rows = list(iter_scan(paths, detector, config, progress, journal, transform))
    df = to_frame(rows, detector.layer_names)
    if config.visuals:
        df.attrs["visuals"] = [{k: v for k, v in r.items() if k.startswith("_")} for r in rows]
    return df


def summarize(df: pd.DataFrame) -> dict[str, int]:
    """Counts for the summary: files, faces, flagged, no-face files, errors."""
    return {
        "files": int(df["file"].nunique()),
        "faces": int((df["status"] == "ok").sum()),
        "flagged": int((df["verdict"] == "fake").sum()),
        "no_face": int((df["status"] == "no_face").sum()),
        "errors": int((~df["status"].isin(["ok", "no_face"])).sum()),
    }
