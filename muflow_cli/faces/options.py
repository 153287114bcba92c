"""How faces are found in a file: one options object shared by every pipeline, command and the Ray path.

A new face-finding option is a field here, its declaration in cli/options.py, and the code in faces/
that uses it: every config (scan, fit, video, calibrate, eval) holds a ``FaceFinding`` and passes it on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from muflow_cli.choices import ALIGNED_CONVENTIONS, FACE_DETECTORS
from muflow_cli.errors import ConfigError

if TYPE_CHECKING:
    from muflow_cli.faces.detect import FaceDetector


@dataclass(frozen=True)
class FaceFinding:
    """Which detector, at which threshold, down to which size, how many faces, or none (pre-aligned crops)."""

    detector: str | None = None  # FACE_DETECTORS; None: the one the model was fitted with (fit: SCRFD)
    threshold: float | None = None  # detection score threshold; None: the model's (fit: 0.5)
    aligned: str | None = None  # each image is one aligned face in this convention (ALIGNED_CONVENTIONS): no detection
    min_face: float = 0.0  # smallest face (px) to look for in large images, by tiles; 0: off (detect.FaceDetector)
    max_faces: int = 0  # keep the N faces with the highest detection scores per image; 0: all

    def check(self) -> None:
        if self.detector is not None and self.detector not in FACE_DETECTORS:
            raise ConfigError(f"face detector must be one of {', '.join(FACE_DETECTORS)}")
        if self.aligned is not None and self.aligned not in ALIGNED_CONVENTIONS:
            raise ConfigError(f"aligned must be one of {', '.join(ALIGNED_CONVENTIONS)}")
        if self.min_face < 0:
            raise ConfigError("min_face must be at least 0")
        if self.max_faces < 0:
            raise ConfigError("max_faces must be at least 0")
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise ConfigError("the face detection threshold must lie in (0, 1)")

    def detector_factory(self, kind: str, threshold: float, threads: int = 1) -> Callable[[], FaceDetector] | None:
        """What builds this finding's detector (``kind``/``threshold``: the model's, used where this leaves them
        unset); None for pre-aligned crops, which need none. A factory, so each worker thread builds its own."""
        if self.aligned is not None:
            return None
        kind, threshold = self.detector or kind, self.threshold or threshold

        def make() -> FaceDetector:
            from muflow_cli.faces.detect import FaceDetector

            return FaceDetector(kind, threshold, threads=threads, min_face=self.min_face)

        return make
