"""The numerical pieces: Gaussian target, flow bijection, density, conformal p-values."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from muflow_cli.flow import FastFlow
from muflow_cli.score import layer_nll, min_attainable_p, p_values
from muflow_cli.target import GaussianTarget


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


@pytest.fixture
def random_flow():
    torch.manual_seed(0)
    flow = FastFlow(6, steps=4, conv3x3_only=False, clamp=2.0).double()
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return flow


def test_flow_round_trip(random_flow):
    x = torch.randn(3, 6, 5, 4, dtype=torch.float64)
    z, ld = random_flow(x)
    x2, ild = random_flow.inverse(z)
    torch.testing.assert_close(x2, x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ld, -ild, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(z, x)


def test_flow_log_det_matches_autograd(random_flow):
    x = torch.randn(1, 6, 3, 3, dtype=torch.float64)
    _, ld = random_flow(x)
    J = torch.autograd.functional.jacobian(lambda v: random_flow(v.view(1, 6, 3, 3))[0].flatten(), x.flatten())
    assert abs(torch.linalg.slogdet(J)[1].item() - ld.item()) < 1e-8


@pytest.mark.parametrize("channels", [6, 7])
def test_fused_flow_forward_is_the_layer_by_layer_forward(channels):
    """forward (fused, what training and scoring run) = the normflows layers in turn, in float32,
    in both memory layouts: maps bit for bit, log-dets up to summation order; gradients too."""
    torch.manual_seed(1)
    flow = FastFlow(channels, steps=4)
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(3, channels, 6, 5)
    z_ref, ld_ref = flow.forward_layers(x)
    for layout in (torch.contiguous_format, torch.channels_last):
        flow.to(memory_format=layout)
        z, ld = flow(x.contiguous(memory_format=layout))
        torch.testing.assert_close(z, z_ref, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ld, ld_ref, rtol=1e-6, atol=1e-4)
    flow.to(memory_format=torch.contiguous_format)
    assert torch.equal(flow(x)[0], z_ref)
    g_fused = torch.autograd.grad(flow(x)[1].sum() + flow(x)[0].square().sum(), list(flow.parameters()))
    g_ref = torch.autograd.grad(flow.forward_layers(x)[1].sum() + flow.forward_layers(x)[0].square().sum(), list(flow.parameters()))
    for a, b in zip(g_fused, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_feature_cache_reads_in_the_layout_asked_for():
    from muflow_cli.cache import FeatureCache

    feats = [torch.randn(5, 4, 8, 8)]
    with FeatureCache([(4, 8, 8)], 5, "memory") as cache:
        cache.put(0, feats)
        got = cache.get(np.array([3, 1]), torch.device("cpu"), torch.channels_last)[0]
        assert got.dtype == torch.float32 and got.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(got, feats[0][[1, 3]].half().float())


def test_flow_starts_as_identity():
    flow = FastFlow(8, steps=3)
    x = torch.randn(2, 8, 4, 4)
    z, ld = flow(x)
    torch.testing.assert_close(z.sort(dim=1).values, x.sort(dim=1).values)  # only channels permuted
    assert torch.all(ld == 0)


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


def test_feature_cache_in_memory_and_on_disk_hold_the_same(tmp_path):
    from muflow_cli.cache import FeatureCache

    feats = [torch.randn(10, 4, 8, 8), torch.randn(10, 6, 4, 4)]
    for where in ("memory", "disk"):
        with FeatureCache([(4, 8, 8), (6, 4, 4)], 10, where, tmp_path) as cache:
            assert cache.where == where and cache.nbytes == 10 * 2 * (4 * 64 + 6 * 16)
            cache.put(0, [f[:7] for f in feats])
            cache.put(7, [f[7:] for f in feats])
            got = cache.get(np.array([9, 2, 5]), torch.device("cpu"))
            for g, f in zip(got, feats):
                assert g.dtype == torch.float32
                torch.testing.assert_close(g, f[[2, 5, 9]].half().float())  # read in index order
        assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        FeatureCache([(1, 1, 1)], 1, "cloud")
