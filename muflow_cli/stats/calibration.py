"""Calibration: the sorted scores of held-out real faces, and everything that follows from them.

Every command asks this object — never its own copy of the rule — which tail applies, what a
score's p-value is, the smallest p-value it can give, the score cutoffs for an fpr, and the
verdict. The maths is in conformal.py (conformal p-values, proven there); this is the one place
that *chooses*: the tail (the caller's, else the model's) and "fake when p <= fpr".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from muflow_cli.choices import FIT_TAILS
from muflow_cli.errors import ConfigError
from muflow_cli.stats.conformal import TAILS, cutoffs, min_attainable_p, p_values, rate_upper_bound
from muflow_cli.stats.strata import POOLED, Strata

FAKE, REAL, INCONCLUSIVE = "fake", "real", "inconclusive"
VERDICTS = (FAKE, REAL, INCONCLUSIVE)
UNCOVERED = -2  # the stratum of a face no calibration stratum covers (no p-value: the verdict is inconclusive)
# A domain warning is given when honest reals would produce so many small p-values at most once in
# this many scans (beta-binomial tail, Calibration.domain_check): rare enough that a user can trust it.
DOMAIN_ALPHA = 0.001


SMALL_CALIBRATION, FEW_SOURCES = 100, 5  # below these, say so: the threshold rests on few faces / few sources


def calibration_cautions(faces: int, groups: int, min_p: float) -> list[str]:
    """What a person relying on a calibration should know: too few faces to say 'fake' at 5 %, few
    enough that the rate rests on a handful, or faces of too few sources (``groups`` 0: not known)."""
    out = []
    if min_p > 0.05:
        out.append(f"only {faces} calibration faces: the smallest p-value is {min_p:.3f}, "
                   "so verdicts at an fpr below it cannot say 'fake'")
    elif faces < SMALL_CALIBRATION:
        out.append(f"only {faces} calibration faces: p-values move in steps of "
                   f"{1 / (faces + 1):.3f}, and the rate at a small fpr rests on a few faces")
    if 0 < groups < FEW_SOURCES:
        out.append(f"calibration holds faces of {groups} group{'s' if groups > 1 else ''} (photos, clips or bursts): "
                   "p-values are valid for more faces like these; other cameras or people may look unusual")
    return out


def verdict(p_value: float, fpr: float) -> str | None:
    """The verdict rule: ``fake`` when the p-value is at most the false-positive rate asked for; None (no
    verdict) for a face that was not scored (NaN: too little of it inside the photo)."""
    if p_value != p_value:
        return None
    return FAKE if p_value <= fpr else REAL


def check_tail(tail: str | None) -> None:
    if tail is not None and tail not in TAILS:
        raise ConfigError(f"tail must be one of {', '.join(TAILS)}, not {tail!r}")


# The fit's tail probe (choose_tail): below this many calibration faces the probe's AUC is too noisy
# to trust, and the two-sided test stays; above UPPER_WHEN the smooth copies clearly score high.
PROBE_MIN_FACES, UPPER_WHEN = 20, 0.75


def check_fit_tail(tail: str) -> None:
    """A fit's tail: one of TAILS, or ``auto`` (choose_tail decides on the fit's own data)."""
    if tail not in FIT_TAILS:
        raise ConfigError(f"tail must be one of {', '.join(FIT_TAILS)}, not {tail!r}")


def choose_tail(calibration: np.ndarray, smooth: np.ndarray) -> tuple[str, float]:
    """The tail a new model should use, and the probe's AUC (P[smooth copy scores above a held-out real]).

    An upper-tail test gives up only one thing: fakes that score *lower* than reals — smooth,
    low-detail ones (docs/method.md, "Which tail by default"). Whether a model does that is a
    property of its fit set, so the fit asks it: it scores 4x bicubic round trips of its own held-out
    reals (``smooth``) against the reals themselves (``calibration``). When the copies clearly score
    high (AUC >= UPPER_WHEN), nothing smooth hides below the reals and the lower tail would only
    flag typical faces: ``upper``. Otherwise, or with too few faces to tell, ``two``."""
    if len(calibration) < PROBE_MIN_FACES or len(smooth) == 0:
        return "two", float("nan")
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(calibration)), np.ones(len(smooth))]
    auc = float(roc_auc_score(labels, np.r_[calibration, smooth]))
    return ("upper" if auc >= UPPER_WHEN else "two"), auc


def check_fpr(fpr: float) -> None:
    if not 0 < fpr < 1:
        raise ConfigError("fpr must lie strictly between 0 and 1")


def check_fdr(fdr: float | None) -> None:
    if fdr is not None and not 0 < fdr < 1:
        raise ConfigError("fdr must lie strictly between 0 and 1")


@dataclass(frozen=True)
class Calibration:
    """Held-out real scores (kept sorted), the model's default tail and, when the model has them, the
    scores per processing stratum (stats/strata.py; None: one pooled stratum, as models before them)."""

    scores: np.ndarray = field(repr=False)
    tail: str = "two"
    strata: Strata | None = field(default=None, repr=False)

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

    def matched_p_values(self, scores: np.ndarray, strata: np.ndarray | None, tail: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(p-values, the stratum that calibrated each face): each face against the calibration faces of its
        processing stratum (``strata``: stats/strata.face_stratum per face), or the nearest covering one.
        Without strata on either side, the pooled calibration (stratum POOLED). A face that no stratum
        covers gets NaN and UNCOVERED."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.strata is None or strata is None:
            return self.p_values(scores, tail), np.full(len(scores), POOLED, np.int64)
        used = np.array([UNCOVERED if (u := self.strata.lookup(int(c))) is None else u for c in strata], np.int64)
        p = np.full(len(scores), np.nan)
        for u in np.unique(used):
            if u != UNCOVERED:
                p[used == u] = self.p_values_in(scores[used == u], int(u), tail)
        return p, used

    def p_values_in(self, scores: np.ndarray, stratum: int, tail: str | None = None) -> np.ndarray:
        """p-values of ``scores`` against one stratum's calibration scores (POOLED: the pooled ones)."""
        cal = self.scores if stratum == POOLED else self.strata.scores[stratum]
        return p_values(scores, cal, self.resolve(tail))

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
        where = (f"{len(self)} calibration faces, matched to each face's processing in {len(self.strata.usable())} strata"
                 if self.strata is not None else f"{len(self)} calibration faces")
        text = f"verdict: fake when p <= {fpr:g} ({used}-sided conformal p-value, {where})"
        if self.min_p(used) > fpr:
            text += f" — this model's smallest p-value is {self.min_p(used):.3f}, so nothing can be flagged"
        return text

    def smallest_stratum(self) -> int:
        """The calibration faces behind the least supported p-value: the smallest usable stratum, else all."""
        usable = self.strata.usable() if self.strata is not None else []
        return min((len(self.strata.scores[c]) for c in usable), default=len(self))

    def rate_note(self, fpr: float, faces: int, tail: str | None = None, fdr: float | None = None) -> str:
        """What the stated rate means for this many faces: how many false flags a folder of reals would get,
        and a 95 % upper bound on the rate this calibration actually reaches (it is random for small n)."""
        used = self.resolve(tail)
        n = self.smallest_stratum()
        bound = rate_upper_bound(n, fpr, used)
        text = (f"if all {faces} faces were real, about {fpr * faces:.1f} would be flagged at fpr {fpr:g} "
                f"(at most {bound * faces:.1f} at this calibration's 95 % bound on its rate, {bound:.1%}, from {n} calibration faces)")
        if fdr is not None:
            text += f"; --fdr {fdr:g}: at most a share {fdr:g} of the flagged faces are expected to be real"
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
