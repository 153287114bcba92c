"""Which faces are held out to calibrate a fit: whole groups when there are many, the later part of each
sequence when there are few.

Calibration scores must be those of reals the flows have never seen but that are otherwise like the
faces the model will be asked about. With many groups (photos, clips), holding out whole groups gives
exactly that: new photos of the same kind. With a few long sequences (footage of a few people), whole
groups would take whole people out of training — the flows are then fitted on two people and calibrated
on two others, and later frames of the fitted people score unlike either. There, every sequence is
fitted on its earlier part and calibrated on its later part ("more of the same footage"), with a gap of
a few frames between so that the neighbours of a calibration face are not in the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Below this many groups, whole-group holdout keeps too few sources on either side: at a fraction of
# 0.2, 19 groups give calibration 3-4 sources, each a quarter of its scores; tails are held out instead.
MANY_GROUPS = 20
TAIL_MIN = 10  # a group needs this many faces for its later part to be held out (shorter: whole, or fitted)
GAP_SHARE, GAP_MIN = 0.03, 2  # files (frames) left out between a sequence's fitted and held-out parts
SPLITS = ("groups", "tails")


@dataclass(frozen=True)
class CalibrationSplit:
    """The split: faces held out to calibrate, faces left out (the gaps), and how it was made."""

    calibration: np.ndarray  # (N,) bool
    gap: np.ndarray  # (N,) bool: in neither part
    kind: str  # "groups": whole groups held out; "tails": the later part of each sequence
    groups: int  # groups among the faces
    calibration_groups: int  # groups with at least one calibration face

    @property
    def fit(self) -> np.ndarray:
        return ~(self.calibration | self.gap)


def whole_groups(group_ids: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of calibration faces: whole groups go to calibration until it holds ``fraction``.

    Groups are taken in random order; a group that would overshoot the target by half is passed over
    (if every group is that large, the smallest one is held out)."""
    groups, sizes = np.unique(group_ids, return_counts=True)
    order = rng.permutation(len(groups))
    target = max(1, int(round(fraction * len(group_ids))))
    cal = np.zeros(len(group_ids), bool)
    held = 0
    for g in order:
        if held >= target:
            break
        if held + sizes[g] > 1.5 * target:
            continue
        cal |= group_ids == groups[g]
        held += sizes[g]
    if held == 0:
        cal |= group_ids == groups[int(np.argmin(sizes))]
    return cal


def sequence_tails(group_ids: np.ndarray, order: np.ndarray, fraction: float, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, gap) masks: the last ``fraction`` of the faces of each group of at least TAIL_MIN faces,
    in ``order`` (capture order: faces of one file share a value and are never cut apart), with a gap of
    max(GAP_MIN, GAP_SHARE of the group's files) files before it. Shorter groups, and groups whose faces all
    share one place in time (one file, or files with one timestamp: nothing to cut), are held out whole, by
    :func:`whole_groups` among themselves, when there are two or more."""
    n = len(group_ids)
    cal, gap = np.zeros(n, bool), np.zeros(n, bool)
    groups, sizes = np.unique(group_ids, return_counts=True)
    short = list(groups[sizes < TAIL_MIN])
    for g in groups[sizes >= TAIL_MIN]:
        members = group_ids == g
        times, per_time = np.unique(order[members], return_counts=True)  # the group's files, in time
        if len(times) < 2:
            short.append(g)
            continue
        target = max(1, int(round(fraction * members.sum())))
        first_held = len(times) - 1 - int(np.searchsorted(np.cumsum(per_time[::-1]), target))  # fewest files >= target
        first_held = max(1, first_held)  # something stays to fit
        gaps = max(GAP_MIN, math.ceil(GAP_SHARE * len(times)))
        cal |= members & (order >= times[first_held])
        gap |= members & (order < times[first_held]) & (order >= times[max(0, first_held - gaps)])
    if len(short) >= 2:
        members = np.isin(group_ids, short)
        cal[members] = whole_groups(group_ids[members], fraction, rng)
    return cal, gap


def calibration_split(group_ids: np.ndarray, order: np.ndarray | None, fraction: float,
                      rng: np.random.Generator) -> CalibrationSplit:
    """Whole groups with MANY_GROUPS groups or more (or when no group is TAIL_MIN long); the later part of
    each sequence below that."""
    group_ids = np.asarray(group_ids)
    order = np.arange(len(group_ids)) if order is None else np.asarray(order)
    ids, sizes = np.unique(group_ids, return_counts=True)
    count = len(ids)
    if count >= MANY_GROUPS or sizes.max(initial=0) < TAIL_MIN:  # many sources, or no sequence long enough to cut
        cal, gap, kind = whole_groups(group_ids, fraction, rng), np.zeros(len(group_ids), bool), "groups"
    else:
        (cal, gap), kind = sequence_tails(group_ids, order, fraction, rng), "tails"
    return CalibrationSplit(cal, gap, kind, count, len(np.unique(group_ids[cal])))
