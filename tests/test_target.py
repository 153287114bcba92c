"""The Gaussian target of the average faces: a real density, usable when the covariance is near-singular."""

import numpy as np
import torch
from scipy import stats

from muflow_cli.nn.target import GaussianTarget


def test_gaussian_log_density_matches_scipy():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6))
    x = rng.multivariate_normal(np.arange(6.0), A @ A.T + np.eye(6), size=500)
    target = GaussianTarget.fit(x)
    cov = (target.chol @ target.chol.T).double().numpy()
    q = rng.normal(size=(7, 6)) + 2
    ref = stats.multivariate_normal(target.mu.double().numpy(), cov).logpdf(q)
    np.testing.assert_allclose(target.log_prob(torch.from_numpy(q).float()).numpy(), ref, rtol=1e-4, atol=1e-4)
    assert 0 <= float(target.shrinkage) <= 1


def test_shrinkage_keeps_a_near_singular_covariance_usable():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 3))
    x = base @ rng.normal(size=(3, 64))  # 40 samples in 64 dims, rank 3
    target = GaussianTarget.fit(x)
    lp = target.log_prob(torch.from_numpy(x[:5]).float())
    assert torch.isfinite(lp).all()


def test_the_inverse_factor_is_derived_on_load_not_saved():
    target = GaussianTarget.fit(np.random.default_rng(1).normal(size=(50, 4)))
    state = target.state_dict()
    assert "chol_inv" not in state
    again = GaussianTarget(4)
    again.load_state_dict(state)
    torch.testing.assert_close(again.chol_inv, target.chol_inv)
