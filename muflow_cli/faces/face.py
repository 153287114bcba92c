"""What face finding gives: a face (box, score, landmarks, aligned crop) and what one file gave."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from muflow_cli.inputs.compression import Compression
from muflow_cli.inputs.provenance import Provenance


@dataclass
class NativeCrops:
    """One face at native resolution (faces/native.py): its crops (P, S, S, 3), the pixels of each that are scored
    (P, S, S), and ``scale``: what the standard crop would have resampled it by (crop px per image px; > 1 enlarges).
    ``window``: the side of the face's window (the standard crop's framing) in native pixels; ``offsets`` (P, 2):
    where each crop's top-left corner lies in the window (x, y; negative when the crop is larger than the window)."""

    crops: np.ndarray
    valid: np.ndarray
    scale: float
    window: float
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.crops)


@dataclass
class Face:
    """One detected face in original-image pixels, plus its aligned crop."""

    box: np.ndarray  # x1, y1, x2, y2
    det_score: float
    landmarks: np.ndarray  # (5, 2)
    crop: np.ndarray | None = None  # (S, S, 3) uint8 RGB
    scale: float = 1.0  # crop pixels per original pixel (>1: the face was upsampled)
    valid: np.ndarray | None = None  # (S, S) bool: crop pixels that come from the image (faces/align.py)
    native: NativeCrops | None = None  # the face at native resolution, for a native model (faces/native.py)

    @property
    def mask(self) -> np.ndarray:
        """``valid``, or a full mask when it is not known (a crop wholly inside its image)."""
        return self.valid if self.valid is not None else np.ones(self.crop.shape[:2], bool)

    @property
    def inside(self) -> float:
        """Share of the aligned crop that comes from the image (1.0 when it lies wholly inside)."""
        return float(self.valid.mean()) if self.valid is not None else 1.0

    @property
    def size_px(self) -> float:
        """Face size in the original image: geometric mean of the box's width and height."""
        w, h = self.box[2] - self.box[0], self.box[3] - self.box[1]
        return float(np.sqrt(max(w, 0) * max(h, 0)))


@dataclass
class FileFaces:
    """What one file gave: a status for the table, a message, and its faces."""

    path: Path | str
    status: str  # ok | no_face | unreadable | too_large | error
    message: str = ""
    faces: list[Face] | None = None
    image_size: tuple[int, int] | None = None  # (width, height)
    image: np.ndarray | None = None  # the decoded RGB pixels, when asked for
    provenance: Provenance | None = None  # what the file says about itself (None: not read)
    compression: Compression | None = None  # what its header says of its compression (None: not read)


def valid_masks(faces: list[Face]) -> np.ndarray | None:
    """(B, S, S) bool: the crop pixels of each face that come from its image, for ``DeepfakeModel.score``;
    None when every crop lies wholly inside its image (nothing to mask)."""
    if all(f.valid is None or f.valid.all() for f in faces):
        return None
    return np.stack([f.mask for f in faces])
