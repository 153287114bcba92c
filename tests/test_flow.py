"""The flow: every flow returns (z, log_det), inverts exactly, and its log-det is the Jacobian's (normflows' way)."""

import pytest
import torch

from muflow_cli.nn.flow import ChannelShuffle, FastFlow


def assert_bijection(flow, x: torch.Tensor) -> None:
    """The shared check for any flow: forward then inverse gives x back, and the two log-dets cancel."""
    z, ld = flow(x)
    assert z.shape == x.shape
    x2, ild = flow.inverse(z)
    torch.testing.assert_close(x2, x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ld + ild, torch.zeros_like(ld + ild), rtol=0, atol=1e-10)


def assert_log_det_is_the_jacobian(flow, shape: tuple[int, ...]) -> None:
    x = torch.randn(1, *shape, dtype=torch.float64)
    _, ld = flow(x)
    J = torch.autograd.functional.jacobian(lambda v: flow(v.view(1, *shape))[0].flatten(), x.flatten())
    assert abs(torch.linalg.slogdet(J)[1].item() - ld.sum().item()) < 1e-8


@pytest.fixture
def random_flow():
    torch.manual_seed(0)
    flow = FastFlow(6, steps=4, conv3x3_only=False, clamp=2.0).double()
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return flow


def test_fast_flow_is_a_bijection(random_flow):
    assert_bijection(random_flow, torch.randn(3, 6, 5, 4, dtype=torch.float64))
    assert not torch.allclose(random_flow(torch.ones(1, 6, 2, 2, dtype=torch.float64))[0], torch.ones(1, 6, 2, 2, dtype=torch.float64))


def test_every_step_of_the_flow_is_a_bijection(random_flow):
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    for layer in random_flow.layers:
        assert_bijection(layer, x)
        x = layer(x)[0]


def test_flow_log_det_matches_autograd(random_flow):
    assert_log_det_is_the_jacobian(random_flow, (6, 3, 3))


def test_channel_shuffle_has_no_batch_size_baked_in():
    shuffle = ChannelShuffle(5).double()
    for batch in (1, 4):
        assert_bijection(shuffle, torch.randn(batch, 5, 2, 2, dtype=torch.float64))
        assert shuffle(torch.randn(batch, 5, 2, 2))[1].shape == ()


def test_flow_starts_as_identity():
    flow = FastFlow(8, steps=3)
    x = torch.randn(2, 8, 4, 4)
    z, ld = flow(x)
    torch.testing.assert_close(z.sort(dim=1).values, x.sort(dim=1).values)  # only channels permuted
    assert torch.all(ld == 0)


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
