"""Size and cost of a model: parameter counts and FLOPs per training sample."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from faceswap.models.autoencoder import Autoencoder
from faceswap.models.build import build_model
from faceswap.models.liae import LiaeAutoencoder


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(model: nn.Module, resolution: int | None = None) -> dict[str, int]:
    """FLOPs for ONE training sample through the encoder and its own decoder (side "a").

    Measured with FlopCounterMode (a multiply-add counts 2) on a batch of 2, divided by 2:
    "forward" is encode + decode, "forward_backward" adds loss.backward() (no gradient w.r.t.
    the input image, as in training). An Autoencoder is rebuilt on the meta device so nothing
    is computed or allocated; any other module runs for real where its parameters live.
    """
    batch = 2
    if isinstance(model, (Autoencoder, LiaeAutoencoder)):
        res = resolution or model.config.resolution
        with torch.device("meta"):
            net: nn.Module = build_model(model.config)
        device = torch.device("meta")
    else:
        if resolution is None:
            raise ValueError("resolution is needed for a model that is not an Autoencoder")
        res, net = resolution, model
        device = next(model.parameters()).device
    x = torch.rand(batch, 3, res, res, device=device)
    with FlopCounterMode(display=False) as counter:
        rgb, mask = net(x, "a")
        forward = counter.get_total_flops()
        loss = rgb.float().mean()
        if mask is not None:
            loss = loss + mask.float().mean()
        loss.backward()
        total = counter.get_total_flops()
    net.zero_grad(set_to_none=True)
    return {"forward": forward // batch, "forward_backward": total // batch}
