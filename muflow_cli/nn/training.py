"""One training step of the flows, and the setting it runs in: shared by the fit's loop and its timing probe.

Both must run the very same step, or the probe would time something other than what the fit then does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from muflow_cli.nn.flow_model import MuFlowModel

GRAD_CLIP = 10.0  # max gradient norm of the flows: one bad batch early on cannot throw the weights far


def flows_optimizer(model: MuFlowModel, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam over the flows only: the Gaussian targets are fitted on the averages and stay fixed."""
    return torch.optim.Adam(model.flows.parameters(), lr=lr, weight_decay=weight_decay)


@contextmanager
def training_layout(model: MuFlowModel, device: torch.device, bf16: bool) -> Iterator[torch.memory_format]:
    """Put ``model`` in its training layout and precision for the block; yields the layout its inputs need.

    On CPU the maps and conv weights are channels_last (oneDNN's native layout: no reorder around each
    convolution, benchmarks/fit_step.py); ``bf16``: the flows run under bfloat16 autocast. Afterwards the
    model is back to the default layout in float32, so what is saved and scored does not depend on either.
    """
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model.to(memory_format=layout)
    model.bf16_flows = bf16
    try:
        yield layout
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.bf16_flows = False


def train_step(model: MuFlowModel, feats: list[torch.Tensor], opt: torch.optim.Optimizer,
               masks: list[torch.Tensor] | None = None) -> torch.Tensor:
    """One Adam step on a batch of features: loss = mean score (NLL, nats/dim), gradients clipped. The loss, detached.

    ``masks``: a masked fit's positions (nn/masking.py), so the flows learn the score they will give."""
    loss = model(feats, masks=masks)["score"].mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.flows.parameters(), GRAD_CLIP)
    opt.step()
    return loss.detach()
