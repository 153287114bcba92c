"""Scan images: every face in every file, scored in batches, one table row per face.

Files with no face, or that cannot be read, get one row with a status and a message; a
scan never stops for a bad file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .detector import Detector
from .faces import FaceDetector, FileFaces, faces_in_file
from .images import iter_image_files
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

    def check(self) -> None:
        if not 0 < self.fpr < 1:
            raise ValueError("fpr must lie strictly between 0 and 1")
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


def iter_scan(
    paths: Iterable[Path], detector: Detector, config: ScanConfig = ScanConfig(), progress: bool = True
) -> Iterator[dict]:
    """Rows in file order; faces of several files are scored together in batches."""
    config.check()
    card_det = detector.card.get("detector", {})
    faces = FaceDetector(config.detector or card_det.get("kind", "scrfd"), config.det_threshold or card_det.get("threshold", 0.5))
    tail = config.tail or detector.default_tail
    names = layer_columns(detector.layer_names)
    files = list(iter_image_files(paths))
    pending: list[tuple[list[dict], list[np.ndarray]]] = []
    n_crops = 0

    def flush() -> Iterator[dict]:
        crops = [c for _, cs in pending for c in cs]
        if crops:
            out = detector.score(np.stack(crops), batch_size=config.batch_size)
            pvals = detector.p_values(out["score"], tail)
            k = 0
            for rows, cs in pending:
                for row in rows if cs else []:
                    row["score"] = float(out["score"][k])
                    row["p_value"] = float(pvals[k])
                    row["verdict"] = "fake" if pvals[k] <= config.fpr else "real"
                    row.update(zip(names, (float(v) for v in out["layers"][k])))
                    k += 1
        for rows, _ in pending:
            yield from rows
        pending.clear()

    for path in track(files, "scanning", enabled=progress):
        res = faces_in_file(path, faces, detector.crop_size, detector.context, config.max_faces)
        if res.status == "ok":
            pending.append((_face_rows(res), [f.crop for f in res.faces]))
            n_crops += len(res.faces)
        else:
            pending.append(([_file_row(res)], []))
        if n_crops >= config.batch_size:
            yield from flush()
            n_crops = 0
    yield from flush()


def scan(paths: Iterable[Path], detector: Detector, config: ScanConfig = ScanConfig(), progress: bool = True) -> pd.DataFrame:
    """The whole scan as a table (see tables.SCHEMA for the columns)."""
    return to_frame(list(iter_scan(paths, detector, config, progress)), detector.layer_names)


def summarize(df: pd.DataFrame) -> dict[str, int]:
    """Counts for the summary: files, faces, flagged, no-face files, errors."""
    return {
        "files": int(df["file"].nunique()),
        "faces": int((df["status"] == "ok").sum()),
        "flagged": int((df["verdict"] == "fake").sum()),
        "no_face": int((df["status"] == "no_face").sum()),
        "errors": int((~df["status"].isin(["ok", "no_face"])).sum()),
    }
