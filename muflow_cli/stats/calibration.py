"""Calibration: the sorted scores of held-out real faces, and everything that follows from them.

Every command asks this object — never its own copy of the rule — which tail applies, what a
score's p-value is, the smallest p-value it can give, the score cutoffs for an fpr, and the
verdict. The maths is in conformal.py (conformal p-values, proven there); this is the one place
that *chooses*: the tail (the caller's, else the model's) and "fake when p <= fpr".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from muflow_cli.errors import ConfigError
from muflow_cli.stats.conformal import TAILS, cutoffs, min_attainable_p, p_values

FAKE, REAL = "fake", "real"
# A domain warning is given when honest reals would produce so many small p-values at most once in
# this many scans (beta-binomial tail, Calibration.domain_check): rare enough that a user can trust it.
DOMAIN_ALPHA = 0.001


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

    def domain_check(self, p_values_: np.ndarray, fpr: float, tail: str | None = None) -> "DomainCheck":
        """Are these faces' p-values what real faces like the calibration faces give? (see :class:`DomainCheck`)."""
        used = self.resolve(tail)
        p = np.asarray(p_values_, dtype=np.float64)
        p = p[np.isfinite(p)]
        n, sides = len(self.scores), (2 if used == "two" else 1)
        min_p = self.min_p(used)
        # Calibration spacings in the flagged region: at most k calibration scores lie beyond a flagged score per side.
        k = int(np.floor((fpr / sides) * (n + 1) - 1 + 1e-9))
        flagged, at_min = int((p <= fpr).sum()), int((p <= min_p + 1e-12).sum())
        return DomainCheck(len(p), flagged, fpr, at_min, min_p, _exchangeable_tail(flagged, len(p), sides * (k + 1), n),
                           _exchangeable_tail(at_min, len(p), sides, n))


def _exchangeable_tail(count: int, faces: int, spacings: int, n: int) -> float:
    """P(at least ``count`` of ``faces`` new reals land in a region of ``spacings`` of the n + 1 calibration spacings).

    Given the calibration scores, the chance that a new real lands there is Beta(spacings, n + 1 - spacings)
    (order statistics of exchangeable scores), so the count is beta-binomial, not binomial: one unlucky
    calibration set moves every face together. This is the exact tail under exchangeability."""
    if faces == 0 or count == 0 or spacings <= 0:
        return 1.0
    from scipy.stats import betabinom

    return float(betabinom(faces, spacings, n + 1 - spacings).sf(count - 1))


@dataclass(frozen=True)
class DomainCheck:
    """The share of faces flagged (and at the smallest p-value) against what real faces would give.

    On reals exchangeable with the calibration faces, P(p <= fpr) <= fpr and P(p = min p) <= min p;
    given the calibration set, the count of such faces is beta-binomial. A one-sided test of each count
    (faces taken as exchangeable with each other too) below DOMAIN_ALPHA says the faces do not look
    like the calibration reals: either the photos come from another source
    (camera, compression, resolution) or many of them are fake. The check cannot tell which: it is a
    warning, never a changed verdict.
    """

    faces: int
    flagged: int
    fpr: float
    at_min: int
    min_p: float
    flagged_p: float  # tail probability of the flagged count
    at_min_p: float  # tail probability of the count at the smallest attainable p-value

    @property
    def mismatch(self) -> bool:
        return min(self.flagged_p, self.at_min_p) < DOMAIN_ALPHA

    def message(self, model: str | None = None) -> str:
        """What to tell the user when :attr:`mismatch` holds (``model``: the bundle's path; None: the bundled one)."""
        share = self.flagged / self.faces if self.faces else 0.0
        return (
            f"{self.flagged} of {self.faces} faces ({share:.0%}) are flagged at fpr {self.fpr:g}, and {self.at_min} sit at "
            f"the smallest p-value this model can give ({self.min_p:.3f}): real faces like the model's calibration faces "
            f"would do this less than once in {round(1 / DOMAIN_ALPHA):,} scans (test p = "
            f"{min(self.flagged_p, self.at_min_p):.1e}). Either these photos do not match the model's reals (other "
            "camera, compression or resolution), or many of them are fake. Calibrate on faces you know are real: "
            f"`muflow calibrate REALS{f' -m {model}' if model else ''} -o NEW.muflow`, or fit on them: `muflow fit REALS`."
        )
