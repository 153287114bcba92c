"""Face tracks: link the faces of sampled frames into one track per person on screen,
and merge a track's per-frame p-values into one.

Linking: each new frame's faces are assigned to live tracks by maximum total box overlap
(IoU), solved exactly with scipy's ``linear_sum_assignment``; a pair is kept only if its IoU
reaches ``min_iou``. A track survives ``max_gap`` samples without a face (a missed
detection, a turned head); after that it ends, and a face there starts a new track.

Merging p-values: the frames of one face are strongly dependent, so neither a product
(Fisher) nor a minimum of p-values is valid. Twice the median, p_track = min(1, 2·median(p_i)),
is a valid p-value under *any* dependence between the p_i (Rüschendorf 1982; Vovk & Wang 2020,
order-statistic merging), so a real video is not flagged more often for being long; and
the median ignores a few odd frames (a blurred or misaligned crop) on either side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from muflow_cli.faces.boxes import iou_matrix


@dataclass
class Track:
    id: int
    box: np.ndarray
    last_sample: int
    members: list[int] = field(default_factory=list)  # indices into the caller's list of faces


class Tracker:
    """Online IoU tracker over sampled frames."""

    def __init__(self, min_iou: float = 0.2, max_gap: int = 2) -> None:
        self.min_iou = min_iou
        self.max_gap = max_gap
        self.live: list[Track] = []
        self.ended: list[Track] = []
        self._next_id = 0

    def update(self, sample: int, boxes: np.ndarray, face_ids: list[int]) -> list[int]:
        """Assign this sample's faces to tracks; returns the track id of each face."""
        for t in [t for t in self.live if sample - t.last_sample > self.max_gap + 1]:
            self.live.remove(t)
            self.ended.append(t)
        ids = [-1] * len(face_ids)
        if len(face_ids) and self.live:
            iou = iou_matrix(np.stack([t.box for t in self.live]), boxes)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.min_iou:
                    t = self.live[r]
                    t.box, t.last_sample = np.asarray(boxes[c], float), sample
                    t.members.append(face_ids[c])
                    ids[c] = t.id
        for c, fid in enumerate(face_ids):
            if ids[c] < 0:
                t = Track(self._next_id, np.asarray(boxes[c], float), sample, [fid])
                self._next_id += 1
                self.live.append(t)
                ids[c] = t.id
        return ids

    def tracks(self) -> list[Track]:
        return sorted(self.ended + self.live, key=lambda t: t.id)


def merge_p_values(p: np.ndarray) -> float:
    """A track's p-value from its frames' p-values: min(1, 2 · median), valid under any dependence. Frames
    not scored (NaN: too little of the face inside the frame) are left out; none scored: NaN."""
    p = np.asarray(p, float)
    p = p[~np.isnan(p)]
    return float(min(1.0, 2.0 * np.median(p))) if len(p) else float("nan")
