"""Building blocks shared by every architecture: strided convs, pixel-shuffle upscalers, ICNR."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LEAKY = 0.1  # deepfakes / DFL slope for down- and upscale blocks
RES_LEAKY = 0.2  # DFL residual blocks


def conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: str = "zero") -> nn.Conv2d:
    """'Same' conv; `padding="reflect"` reflects at the borders instead of padding zeros."""
    pad = kernel // 2
    mode = "reflect" if padding == "reflect" and pad > 0 else "zeros"
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, padding_mode=mode)


def icnr_(conv_layer: nn.Conv2d, scale: int = 2) -> None:
    """ICNR init (Aitken et al. 2017) of a conv that feeds PixelShuffle(scale).

    PixelShuffle sends channel c * scale**2 + s to sub-pixel s of output channel c. Initialising
    one sub-kernel per output channel and repeating it over the scale**2 sub-pixels makes the
    conv + shuffle start out as conv + nearest-neighbour upsampling: no checkerboard at step 0.
    """
    weight = conv_layer.weight  # (C * r^2, Cin, k, k)
    r2 = scale * scale
    out_ch = weight.shape[0]
    if out_ch % r2:
        raise ValueError(f"conv has {out_ch} output channels, not a multiple of {r2}")
    sub = torch.empty((out_ch // r2, *weight.shape[1:]), dtype=weight.dtype, device=weight.device)
    # Same distribution as nn.Conv2d's default init: the fan-in is unchanged by the repeat.
    nn.init.kaiming_uniform_(sub, a=math.sqrt(5))
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(r2, dim=0))
        if conv_layer.bias is not None:
            fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
            bound = 1 / math.sqrt(fan_in)
            sub_b = torch.empty(out_ch // r2, dtype=weight.dtype, device=weight.device)
            nn.init.uniform_(sub_b, -bound, bound)
            conv_layer.bias.copy_(sub_b.repeat_interleave(r2))


class DownBlock(nn.Sequential):
    """Conv 5x5 stride 2 + LeakyReLU(0.1): (B, Cin, H, W) -> (B, Cout, H/2, W/2)."""

    def __init__(self, cin: int, cout: int, padding: str = "zero") -> None:
        super().__init__(conv(cin, cout, 5, 2, padding), nn.LeakyReLU(LEAKY))


class UpscaleBlock(nn.Sequential):
    """Conv 3x3 to 4*Cout + LeakyReLU(0.1) + PixelShuffle(2): (B, Cin, H, W) -> (B, Cout, 2H, 2W).

    The activation comes before the shuffle (the deepfakes order); it is elementwise, so the
    order does not change the result, and it runs on the smaller-grid tensor.
    """

    def __init__(self, cin: int, cout: int, padding: str = "zero", icnr: bool = True) -> None:
        c = conv(cin, cout * 4, 3, 1, padding)
        if icnr:
            icnr_(c, 2)
        super().__init__(c, nn.LeakyReLU(LEAKY), nn.PixelShuffle(2))


class ResidualBlock(nn.Module):
    """DFL residual block: x + conv3x3(lrelu(conv3x3(x))), then LeakyReLU(0.2); shape kept."""

    def __init__(self, ch: int, padding: str = "zero") -> None:
        super().__init__()
        self.conv1 = conv(ch, ch, 3, 1, padding)
        self.conv2 = conv(ch, ch, 3, 1, padding)
        self.act = nn.LeakyReLU(RES_LEAKY)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        return self.act(x + y)
