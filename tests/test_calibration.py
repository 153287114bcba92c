"""The one place that chooses the tail and turns a p-value into a verdict."""

import numpy as np
import pytest

from muflow_cli.errors import ConfigError
from muflow_cli.stats.calibration import Calibration, verdict


def test_the_model_tail_holds_unless_another_is_asked_for():
    cal = Calibration(np.arange(1.0, 20.0), tail="upper")
    assert cal.resolve() == "upper" and cal.resolve("two") == "two"
    np.testing.assert_allclose(cal.p_values(np.array([25.0])), [1 / 20])
    np.testing.assert_allclose(cal.p_values(np.array([25.0]), "two"), [2 / 20])
    assert cal.min_p() == pytest.approx(1 / 20) and cal.min_p("two") == pytest.approx(2 / 20)
    with pytest.raises(ConfigError, match="tail"):
        cal.resolve("lower")


def test_scores_are_kept_sorted_and_float64():
    cal = Calibration(np.array([3, 1, 2], dtype=np.float32))
    assert cal.scores.dtype == np.float64 and list(cal.scores) == [1.0, 2.0, 3.0] and len(cal) == 3


def test_verdict_is_fake_at_or_below_the_fpr():
    assert verdict(0.05, 0.05) == "fake" and verdict(0.0501, 0.05) == "real"
    cal = Calibration(np.arange(1.0, 40.0))
    p = cal.p_values(np.array([0.0, 20.0, 100.0]))
    assert cal.verdicts(p, 0.05) == ["fake", "real", "fake"]


def test_describe_says_when_nothing_can_be_flagged():
    few = Calibration(np.arange(10.0))
    assert "nothing can be flagged" in few.describe(0.05)
    assert "nothing can be flagged" not in Calibration(np.arange(100.0)).describe(0.05)
    assert "two-sided" in few.describe(0.05) and "10 calibration faces" in few.describe(0.05)


def test_the_domain_check_is_silent_on_exchangeable_reals_and_fires_when_p_values_pile_up():
    rng = np.random.default_rng(0)
    cal = Calibration(rng.normal(size=199))
    same = cal.domain_check(cal.p_values(rng.normal(size=500)), 0.05)
    assert not same.mismatch and same.faces == 500
    shifted = cal.domain_check(cal.p_values(rng.normal(2.0, 1.0, size=50)), 0.05)
    assert shifted.mismatch and shifted.flagged > 10 and "muflow calibrate" in shifted.message()
    assert "-m my.muflow" in shifted.message("my.muflow") and "-m" not in shifted.message()
    tiny = cal.domain_check(np.array([0.01, 0.02]), 0.05)  # two flagged of two: not yet evidence
    assert not tiny.mismatch


def test_the_domain_check_sees_p_values_at_the_minimum_when_nothing_can_be_flagged():
    cal = Calibration(np.arange(10.0))  # smallest two-sided p = 2/11 > 0.05
    check = cal.domain_check(cal.p_values(np.full(30, 100.0)), 0.05)
    assert check.flagged == 0 and check.at_min == 30 and check.mismatch


def test_the_fit_chooses_upper_only_when_smooth_copies_clearly_score_high():
    from muflow_cli.stats.calibration import PROBE_MIN_FACES, UPPER_WHEN, check_fit_tail, choose_tail

    reals = np.random.default_rng(0).normal(size=50)
    assert choose_tail(reals, reals + 3.0)[0] == "upper"  # smooth copies all above: nothing hides low
    tail, auc = choose_tail(reals, reals - 3.0)
    assert tail == "two" and auc < 0.01  # smooth copies below the reals: keep the lower tail
    tail, auc = choose_tail(reals, reals + 0.05)
    assert tail == "two" and 0.5 < auc < UPPER_WHEN  # no clear side: keep both
    tail, auc = choose_tail(reals[: PROBE_MIN_FACES - 1], reals[: PROBE_MIN_FACES - 1] + 3.0)
    assert tail == "two" and np.isnan(auc)  # too few to tell
    check_fit_tail("auto")
    with pytest.raises(ConfigError, match="auto, two, upper"):
        check_fit_tail("lower")
