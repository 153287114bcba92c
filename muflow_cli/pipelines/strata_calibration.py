"""Calibration scores per processing stratum (stats/strata.py): the calibration faces' source images
re-encoded and shrunk over a grid, found and aligned again exactly as a scanned image would be, scored,
and each copy kept in the stratum its own header and face size say.

``fit`` builds them from its held-out calibration files, ``calibrate`` from the user's reals. The grid
(PROCESSINGS) and why it is this one are in docs/method.md, "Processing strata": the originals; JPEG
re-saves at 95 / 75 / 50 (the three compression levels); the photo shrunk to 1/2 and 1/3 and saved at
JPEG 95 (faces one and two scale levels smaller); shrunk to 1/2 and saved at 75 (both at once). Copies
of one photo are not independent of each other, but each stratum holds at most one copy of a face per
processing, and a scanned face is one draw of (photo, processing): within a stratum the calibration
faces and a scanned real are exchangeable as far as the processing goes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from muflow_cli.faces.face import FileFaces
from muflow_cli.faces.options import FaceFinding
from muflow_cli.faces.stage import FaceStage
from muflow_cli.inputs.compression import Compression
from muflow_cli.inputs.images import encode_image
from muflow_cli.inputs.perturb import Perturbation, parse
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.nn.config import MIN_INSIDE
from muflow_cli.progress import track
from muflow_cli.stats.strata import Strata, face_stratum

PROCESSINGS = ("none", "jpeg:95", "jpeg:75", "jpeg:50", "scale:0.5+jpeg:95", "scale:0.33+jpeg:95", "scale:0.5+jpeg:75")
# Calibration sources re-processed at most: 300 photos x 7 copies keep the strata build to minutes on a CPU
# and fill each usable stratum (40 faces) many times over; more add little to a 5 % cutoff.
MAX_SOURCES = 300


@dataclass(frozen=True)
class Processing:
    """Perturbations applied in turn (``scale:0.5+jpeg:75``), and what the header of the result says."""

    steps: tuple[Perturbation, ...]

    @classmethod
    def parse(cls, spec: str) -> "Processing":
        return cls(tuple(parse(part) for part in spec.split("+")))

    @property
    def name(self) -> str:
        return "+".join(step.name for step in self.steps)

    def __call__(self, rgb: np.ndarray, key: str = "") -> np.ndarray:
        for step in self.steps:
            rgb = step(rgb, key)
        return rgb

    def compression(self, before: Compression | None) -> Compression | None:
        for step in self.steps:
            before = step.compression(before)
        return before


@dataclass
class StrataScores:
    """What the strata build gave: the strata, and how many copies it scored of how many sources."""

    strata: Strata
    sources: int
    faces: int  # scored copies over all processings


def sample_sources(sources: Sequence, limit: int = MAX_SOURCES) -> list:
    """At most ``limit`` sources, spread evenly over the list (sequences keep their spread in time)."""
    if len(sources) <= limit:
        return list(sources)
    return [sources[int(i)] for i in np.linspace(0, len(sources) - 1, limit).round()]


def crops_as_files(crops: np.ndarray) -> list[io.BytesIO]:
    """Aligned crops as in-memory PNG files, for a fit that has crops but no files (fit_crops from the API)."""
    return [io.BytesIO(encode_image(c, "png")) for c in crops]


def strata_scores(sources: Sequence, model: DeepfakeModel, finding: FaceFinding, min_face_px: float,
                  processings: Sequence[str] = PROCESSINGS, batch_size: int = 16, workers: int = 0,
                  progress: bool = False) -> StrataScores:
    """Score every face of every source (paths or in-memory files) under every processing, faces kept as a
    fit or calibrate keeps them (at least ``min_face_px``; a masked model: at least MIN_INSIDE inside)."""
    sources = sample_sources(sources)
    make = model.card.face_detector.factory(finding)
    codes: list[int] = []
    scores: list[np.ndarray] = []
    for spec in track(processings, "strata  ", enabled=progress):
        processing = Processing.parse(spec)
        with FaceStage(finding, make, model.crop_size, model.context, processing if spec != "none" else None,
                       workers=workers, native=model.native) as stage:
            found = [kept_faces(res, min_face_px, model.masked) for res in stage.map(_rewound(sources))]
        faces = [f for res, kept in found for f in kept]
        if not faces:
            continue
        out = model.score_faces(faces, batch_size=batch_size)["score"]
        codes += [face_stratum(res.compression, f.scale) for res, kept in found for f in kept]
        scores.append(out)
    flat = np.concatenate(scores) if scores else np.zeros(0)
    strata = Strata.from_pairs(np.asarray(codes, np.int64), flat)
    return StrataScores(strata, len(sources), int(np.isfinite(flat).sum()))


def _rewound(sources: Sequence) -> list:
    """Sources ready to read again: in-memory files back at their start (each processing reads them once)."""
    for s in sources:
        if isinstance(s, io.BytesIO):
            s.seek(0)
    return [s if isinstance(s, io.BytesIO) else Path(s) for s in sources]


def kept_faces(res: FileFaces, min_face_px: float, masked: bool) -> tuple[FileFaces, list]:
    """The faces of one file a fit or calibration keeps: at least ``min_face_px``, and for a masked model at
    least MIN_INSIDE of the crop inside the photo (none for a file that could not be read)."""
    if res.status != "ok":
        return res, []
    return res, [f for f in res.faces if f.size_px >= min_face_px and (not masked or f.inside >= MIN_INSIDE)]


def with_strata(model: DeepfakeModel, sources: Sequence, finding: FaceFinding, min_face_px: float, batch_size: int = 16,
                workers: int = 0, progress: bool = False) -> DeepfakeModel:
    """``model`` calibrated per processing stratum on ``sources`` (its pooled calibration kept as it is)."""
    built = strata_scores(sources, model, finding, min_face_px, batch_size=batch_size, workers=workers, progress=progress)
    info = replace(model.card.calibration, strata=built.strata.counts(), strata_sources=built.sources)
    return model.with_calibration(model.calibration.scores, info, strata=built.strata)
