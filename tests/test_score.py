"""The density and the conformal p-value maths."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from muflow_cli.nn.nll import layer_nll
from muflow_cli.nn.target import GaussianTarget
from muflow_cli.stats.conformal import cutoffs, min_attainable_p, p_values


def test_layer_nll_is_the_exact_density_when_the_flow_is_the_identity():
    """With z = x, the split density equals N(mean; mu, Sigma) x N(residual; 0, I) in orthonormal coordinates."""
    rng = np.random.default_rng(0)
    c, h, w = 3, 2, 2
    target = GaussianTarget.fit(rng.normal(size=(200, c)))
    x = torch.from_numpy(rng.normal(size=(4, c, h, w))).float()
    got = layer_nll(x, torch.zeros(4), target) * (c * h * w)
    # Reference: an orthonormal basis whose first vector is the constant 1/sqrt(HW).
    hw = h * w
    basis = np.linalg.qr(np.c_[np.ones(hw), rng.normal(size=(hw, hw - 1))])[0]
    basis[:, 0] = np.abs(basis[:, 0])
    cov = (target.chol @ target.chol.T).double().numpy()
    mu = target.mu.double().numpy()
    for i in range(4):
        coords = x[i].double().numpy().reshape(c, hw) @ basis  # (c, hw)
        ref = -stats.multivariate_normal(math.sqrt(hw) * mu, hw * cov).logpdf(coords[:, 0])
        ref -= stats.norm.logpdf(coords[:, 1:]).sum()
        assert abs(got[i].item() - ref) < 1e-3 * abs(ref) + 1e-3


def test_conformal_p_values():
    cal = np.arange(1.0, 20.0)  # 19 scores: 1..19
    p = p_values(np.array([0.0, 10.0, 19.0, 25.0]), cal, "upper")
    np.testing.assert_allclose(p, [1.0, 11 / 20, 2 / 20, 1 / 20])
    p2 = p_values(np.array([0.0, 10.0, 25.0]), cal, "two")
    np.testing.assert_allclose(p2, [2 / 20, 1.0, 2 / 20])
    assert min_attainable_p(19, "two") == pytest.approx(0.1)


@pytest.mark.parametrize("tail", ["two", "upper"])
def test_false_positive_rate_is_controlled_on_exchangeable_reals(tail):
    rng = np.random.default_rng(0)
    alpha, fp, trials = 0.1, 0, 400
    for _ in range(trials):
        cal = rng.normal(size=99)
        fp += int(p_values(rng.normal(size=1), cal, tail)[0] <= alpha)
    assert fp / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


@pytest.mark.parametrize("tail", ["two", "upper"])
def test_cutoffs_flag_exactly_what_the_p_value_flags(tail):
    cal = np.random.default_rng(3).normal(size=199)
    low, high = cutoffs(cal, 0.05, tail)
    s = np.linspace(-4, 4, 2001)
    by_p = p_values(s, cal, tail) <= 0.05
    by_cut = (s > high) | ((s < low) if low is not None else False)
    assert np.array_equal(by_p, by_cut)
