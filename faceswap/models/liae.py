"""LIAE (DeepFaceLab's default family): one encoder, two dense intermediates, one decoder.

    x (B, 3, R, R) -> FeatureEncoder -> flat features f
    inter_ab(f): the code both identities share;  inter_a(f): the code only A's faces use
    A's faces:  decoder(cat[inter_a(f), inter_ab(f)])     (trained to rebuild A)
    B's faces:  decoder(cat[inter_ab(f), inter_ab(f)])    (trained to rebuild B)
    swap a2b:   decoder(cat[inter_ab(f_a), inter_ab(f_a)]) = A's face through B's path

With one decoder for both identities, A's lighting, pose and expression reach the swap through
the shared code and the shared decoder, where the df layout's two decoders only share the
encoder: LIAE keeps the target's look better, the df layout B's identity more strongly
(DeepFaceLab's own guidance). Same interface as Autoencoder: encode, decode(z, side), parts.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import Tensor, nn

from faceswap.models.autoencoder import Decoder, FeatureEncoder, Inter, Spec
from faceswap.models.config import ModelConfig
from faceswap.models.original import lightweight_spec
from faceswap.models.sae import sae_spec

LIAE_PARTS = ("encoder", "inter_ab", "inter_a", "decoder")


def liae_spec(cfg: ModelConfig) -> Spec:
    """At 64 px the lightweight widths (three down-blocks, no residual blocks: 2-3 GFLOP a
    sample, for CPUs); above, the SAE widths (the SAE layout at 64 px costs 5x more)."""
    return lightweight_spec(cfg) if cfg.resolution == 64 else sae_spec(cfg)


class LiaeAutoencoder(nn.Module):
    def __init__(self, config: ModelConfig, spec: Spec) -> None:
        super().__init__()
        self.config = copy.deepcopy(config)
        self.spec = spec
        self.encoder = FeatureEncoder(spec, config.padding)
        self.inter_ab = Inter(spec, config.padding, config.icnr)
        self.inter_a = Inter(spec, config.padding, config.icnr)
        # the decoder reads both codes stacked on the channels
        self.decoder = Decoder(replace(spec, latent_ch=2 * spec.latent_ch), config.learn_mask,
                               config.padding, config.icnr)  # fmt: skip

    def encode(self, x: Tensor) -> Tensor:
        """(B, 3, R, R) RGB in [0, 1] -> flat features (B, F)."""
        return self.encoder(x)

    def decode(self, z: Tensor, side: str) -> tuple[Tensor, Tensor | None]:
        """Flat features -> (rgb (B, 3, R, R), mask (B, 1, R, R) or None) as `side` looks."""
        if side not in ("a", "b"):
            raise ValueError(f"side must be 'a' or 'b', not {side!r}")
        shared = self.inter_ab(z)  # (B, latent_ch, 2g, 2g)
        own = self.inter_a(z) if side == "a" else shared
        return self.decoder(torch.cat([own, shared], dim=1))

    def forward(self, x: Tensor, side: str) -> tuple[Tensor, Tensor | None]:
        return self.decode(self.encode(x), side)

    def parts(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "inter_ab": self.inter_ab, "inter_a": self.inter_a,
                "decoder": self.decoder}  # fmt: skip

    @property
    def learns_mask(self) -> bool:
        return self.config.learn_mask
