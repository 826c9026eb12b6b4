"""DeepFaceLab's H128 model (128 px, 'half face')."""

from __future__ import annotations

from faceswap.models.autoencoder import Spec
from faceswap.models.config import ModelConfig


def h128_spec(cfg: ModelConfig) -> Spec:
    """DFL H128; with E=128, D=128, B=512:

    encoder: 128, 256, 512, 1024 (5x5 s2) -> 8x8x1024 -> Dense(512) -> Dense(8x8x512)
             -> upscale 512 -> latent 16x16x512
    decoder: upscale 512, 256, 128 -> 128x128 -> conv 5x5 to 3 (+ mask)
    """
    e, d = cfg.encoder_dims, cfg.decoder_dims
    return Spec(
        resolution=cfg.resolution,
        enc=(e, 2 * e, 4 * e, 8 * e),
        proj=None,
        bottleneck=cfg.bottleneck,
        dense_grid=cfg.resolution // 16,
        dense_ch=4 * d,
        latent_ch=4 * d,
        dec=(4 * d, 2 * d, d),
        res_blocks=False,
    )
