"""Calibration: the sorted scores of held-out real faces, and everything that follows from them.

Every command asks this object — never its own copy of the rule — which tail applies, what a
score's p-value is, the smallest p-value it can give, the score cutoffs for an fpr, and the
verdict. The maths is in score.py (conformal p-values, proven there); this is the one place
that *chooses*: the tail (the caller's, else the model's) and "fake when p <= fpr".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError
from .score import TAILS, cutoffs, min_attainable_p, p_values

FAKE, REAL = "fake", "real"


def verdict(p_value: float, fpr: float) -> str:
    """The verdict rule: ``fake`` when the p-value is at most the false-positive rate asked for."""
    return FAKE if p_value <= fpr else REAL


def check_tail(tail: str | None) -> None:
    if tail is not None and tail not in TAILS:
        raise ConfigError(f"tail must be one of {', '.join(TAILS)}, not {tail!r}")


def check_fpr(fpr: float) -> None:
    if not 0 < fpr < 1:
        raise ConfigError("fpr must lie strictly between 0 and 1")


@dataclass(frozen=True)
class Calibration:
    """Held-out real scores (kept sorted) and the model's default tail."""

    scores: np.ndarray = field(repr=False)
    tail: str = "two"

    def __post_init__(self) -> None:
        check_tail(self.tail)
        object.__setattr__(self, "scores", np.sort(np.asarray(self.scores, dtype=np.float64)))

    def __len__(self) -> int:
        return len(self.scores)

    def resolve(self, tail: str | None = None) -> str:
        """The tail in force: the one asked for, else the model's."""
        check_tail(tail)
        return tail or self.tail

    def p_values(self, scores: np.ndarray, tail: str | None = None) -> np.ndarray:
        return p_values(scores, self.scores, self.resolve(tail))

    def min_p(self, tail: str | None = None) -> float:
        """Smallest p-value these scores can give: at an fpr below it nothing is ever flagged."""
        return min_attainable_p(len(self.scores), self.resolve(tail))

    def cutoffs(self, fpr: float, tail: str | None = None) -> tuple[float | None, float | None]:
        """Score thresholds equivalent to ``p <= fpr``: (low, high); None means never on that side."""
        return cutoffs(self.scores, fpr, self.resolve(tail))

    def verdicts(self, p_values_: np.ndarray, fpr: float) -> list[str]:
        return [verdict(float(p), fpr) for p in p_values_]

    def describe(self, fpr: float, tail: str | None = None) -> str:
        """One line for summaries and reports: the rule in force, and when it cannot flag anything."""
        used = self.resolve(tail)
        text = f"verdict: fake when p <= {fpr:g} ({used}-sided conformal p-value, {len(self)} calibration faces)"
        if self.min_p(used) > fpr:
            text += f" — this model's smallest p-value is {self.min_p(used):.3f}, so nothing can be flagged"
        return text
