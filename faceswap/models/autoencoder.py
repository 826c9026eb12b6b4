"""The shared-encoder, dual-decoder autoencoder, built from an architecture `Spec`.

Every architecture is the same pipeline with different widths:

    x (B, 3, R, R)
      -> DownBlock x len(enc)               (B, enc[-1], R/2^n, R/2^n)
      -> [1x1 conv to proj channels]        only where the grid is large (sae)
      -> flatten (H, W, C order)            (B, grid^2 * C)
      -> Linear(bottleneck)                 (B, bottleneck)       the identity-free code
      -> Linear(g^2 * dense_ch) -> reshape  (B, dense_ch, g, g)
      -> UpscaleBlock(latent_ch)            (B, latent_ch, 2g, 2g) = the latent `encode` returns
    decoder a / b (same structure, own weights):
      -> UpscaleBlock(dec[i]) [+ ResidualBlock] per stage -> (B, dec[-1], R, R)
      -> conv 5x5 to 3 + sigmoid  (rgb)  and  conv 5x5 to 1 + sigmoid  (mask, if learned)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from faceswap.models.config import ModelConfig
from faceswap.models.layers import DownBlock, ResidualBlock, UpscaleBlock, conv

SIDES = ("a", "b")


@dataclass(frozen=True)
class Spec:
    """Resolved layer widths of one architecture at one resolution."""

    resolution: int
    enc: tuple[int, ...]  # DownBlock widths (conv 5x5 stride 2 each)
    proj: int | None  # 1x1 conv to this many channels before flatten (None: none)
    bottleneck: int  # Linear size between the two dense layers
    dense_grid: int  # side of the grid the second dense layer is reshaped to
    dense_ch: int  # channels of that grid
    latent_ch: int  # channels after the encoder's upscale (grid 2 * dense_grid)
    dec: tuple[int, ...]  # decoder UpscaleBlock widths
    res_blocks: bool  # a ResidualBlock after every decoder upscale (sae)

    def __post_init__(self) -> None:
        grid = self.resolution >> len(self.enc)
        if grid << len(self.enc) != self.resolution:
            raise ValueError(f"resolution {self.resolution} does not halve {len(self.enc)} times")
        if 2 * self.dense_grid * 2 ** len(self.dec) != self.resolution:
            raise ValueError("decoder upscales do not lead back to the input resolution")

    @property
    def enc_grid(self) -> int:
        return self.resolution >> len(self.enc)

    @property
    def latent_grid(self) -> int:
        return 2 * self.dense_grid


class FeatureEncoder(nn.Module):
    """The convolutional half of the encoder: (B, 3, R, R) in [0, 1] -> flat features
    (B, enc_grid^2 * C), flattened in (H, W, C) order."""

    def __init__(self, spec: Spec, padding: str = "zero") -> None:
        super().__init__()
        self.spec = spec
        widths = (3, *spec.enc)
        self.down = nn.Sequential(
            *(DownBlock(cin, cout, padding) for cin, cout in zip(widths[:-1], widths[1:]))
        )
        self.proj: nn.Module = nn.Identity()
        if spec.proj is not None:
            self.proj = nn.Conv2d(spec.enc[-1], spec.proj, 1)

    def features(self, x: Tensor) -> Tensor:
        # Inputs in [0, 1] are centred to [-1, 1] so the zero padding sits mid-range.
        h = self.proj(self.down(x * 2.0 - 1.0))  # (B, C, g, g)
        # Flatten in (H, W, C) order: a free view for channels_last tensors (and Keras' order).
        return h.permute(0, 2, 3, 1).flatten(1)  # (B, g * g * C)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def flat_features(spec: Spec) -> int:
    """Length of the FeatureEncoder's output."""
    return spec.enc_grid**2 * (spec.proj if spec.proj is not None else spec.enc[-1])


class Inter(nn.Module):
    """The dense bottleneck and its return: flat features -> latent (B, latent_ch, 2g, 2g)."""

    def __init__(self, spec: Spec, padding: str = "zero", icnr: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.dense_in = nn.Linear(flat_features(spec), spec.bottleneck)
        self.dense_out = nn.Linear(spec.bottleneck, spec.dense_grid**2 * spec.dense_ch)
        self.upscale = UpscaleBlock(spec.dense_ch, spec.latent_ch, padding, icnr)

    def forward(self, flat: Tensor) -> Tensor:
        return dense_code(self, flat)


def dense_code(m: Inter | Encoder, flat: Tensor) -> Tensor:
    """flat (B, F) -> Dense(bottleneck) -> Dense(g*g*dense_ch) -> reshape -> upscale:
    (B, latent_ch, 2g, 2g), through the layers `m` holds."""
    h = m.dense_in(flat)  # (B, bottleneck)
    g, c = m.spec.dense_grid, m.spec.dense_ch
    h = m.dense_out(h).reshape(-1, g, g, c).permute(0, 3, 1, 2)  # (B, dense_ch, g, g)
    return m.upscale(h)  # (B, latent_ch, 2g, 2g)


class Encoder(FeatureEncoder):
    """(B, 3, R, R) in [0, 1] -> latent (B, latent_ch, 2g, 2g): the convolutional features and
    one dense bottleneck (Inter's layers, held here so the weights keep their names)."""

    def __init__(self, spec: Spec, padding: str = "zero", icnr: bool = True) -> None:
        super().__init__(spec, padding)
        inter = Inter(spec, padding, icnr)
        self.dense_in, self.dense_out, self.upscale = inter.dense_in, inter.dense_out, inter.upscale

    def forward(self, x: Tensor) -> Tensor:
        return dense_code(self, self.features(x))


class Decoder(nn.Module):
    """latent (B, latent_ch, 2g, 2g) -> rgb (B, 3, R, R), mask (B, 1, R, R) or None."""

    def __init__(
        self, spec: Spec, learn_mask: bool = True, padding: str = "zero", icnr: bool = True
    ) -> None:
        super().__init__()
        widths = (spec.latent_ch, *spec.dec)
        blocks: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            blocks.append(UpscaleBlock(cin, cout, padding, icnr))
            if spec.res_blocks:
                blocks.append(ResidualBlock(cout, padding))
        self.blocks = nn.Sequential(*blocks)
        self.rgb = conv(spec.dec[-1], 3, 5, 1, padding)
        self.mask = conv(spec.dec[-1], 1, 5, 1, padding) if learn_mask else None

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.blocks(z)  # (B, dec[-1], R, R)
        rgb = torch.sigmoid(self.rgb(h))  # (B, 3, R, R)
        mask = torch.sigmoid(self.mask(h)) if self.mask is not None else None  # (B, 1, R, R)
        return rgb, mask


class Autoencoder(nn.Module):
    """One shared encoder, one decoder per identity: swap = decode(encode(face of A), "b")."""

    def __init__(self, config: ModelConfig, spec: Spec) -> None:
        super().__init__()
        self.config = copy.deepcopy(config)
        self.spec = spec
        self.encoder = Encoder(spec, config.padding, config.icnr)
        self.decoder_a = Decoder(spec, config.learn_mask, config.padding, config.icnr)
        self.decoder_b = Decoder(spec, config.learn_mask, config.padding, config.icnr)

    def encode(self, x: Tensor) -> Tensor:
        """(B, 3, R, R) RGB in [0, 1] -> latent (B, latent_ch, 2g, 2g): R/8 but for
        `lightweight-128`, whose latent is 64 px's 8x8."""
        return self.encoder(x)

    def decode(self, z: Tensor, side: str) -> tuple[Tensor, Tensor | None]:
        """Latent -> (rgb (B, 3, R, R) in [0, 1], mask (B, 1, R, R) in [0, 1] or None)."""
        if side == "a":
            return self.decoder_a(z)
        if side == "b":
            return self.decoder_b(z)
        raise ValueError(f"side must be 'a' or 'b', not {side!r}")

    def forward(self, x: Tensor, side: str) -> tuple[Tensor, Tensor | None]:
        return self.decode(self.encode(x), side)

    def parts(self) -> dict[str, nn.Module]:
        """The named parts that weight import and freezing address."""
        return {"encoder": self.encoder, "decoder_a": self.decoder_a, "decoder_b": self.decoder_b}

    @property
    def learns_mask(self) -> bool:
        return self.config.learn_mask
