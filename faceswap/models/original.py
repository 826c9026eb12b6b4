"""The deepfakes/faceswap `original` model (64 px) and a `lightweight` variant for CPUs."""

from __future__ import annotations

from faceswap.models.autoencoder import Spec
from faceswap.models.config import ModelConfig


def original_spec(cfg: ModelConfig) -> Spec:
    """Classic 64 px model; with E=128, D=64, B=1024 it is the well-known ~82 M parameters.

    encoder: 128, 256, 512, 1024 (5x5 s2) -> 4x4x1024 -> Dense(1024) -> Dense(4x4x1024)
             -> upscale 512 -> latent 8x8x512
    decoder: upscale 256, 128, 64 -> 64x64 -> conv 5x5 to 3 (+ mask)
    """
    e, d = cfg.encoder_dims, cfg.decoder_dims
    return Spec(
        resolution=cfg.resolution,
        enc=(e, 2 * e, 4 * e, 8 * e),
        proj=None,
        bottleneck=cfg.bottleneck,
        dense_grid=4,
        dense_ch=8 * e,
        latent_ch=8 * d,
        dec=(4 * d, 2 * d, d),
        res_blocks=False,
    )


def lightweight_spec(cfg: ModelConfig) -> Spec:
    """Three down stages (64 -> 8x8) and a narrow dense return; ~15 M parameters with the preset.

    With E=64, D=32, B=512:
    encoder: 64, 128, 256 (5x5 s2) -> 8x8x256 -> Dense(512) -> Dense(4x4x128)
             -> upscale 256 -> latent 8x8x256
    decoder: upscale 128, 64, 32 -> 64x64 -> conv 5x5 to 3 (+ mask)
    The dense return goes to a 4x4 grid with 2E channels (2048 values) rather than 8x8: the
    8x8 grid would double the second dense layer and the following upscale for little gain.

    At 128 px one more stage at each end, at half the width: a 5x5 stride-2 conv to E/2 first,
    an upscale to D/2 last. The dense layers and every stage between are the 64 px model's, so
    the extra octave of detail costs ~1.3x the FLOPs, where `sae-128-lite` costs 5x.
    At 256 px a second octave the same way: a conv to E/4 first and a last upscale that stays
    at D/2 (D/4 would leave 8 channels to draw every pixel of the face).
    """
    e, d = cfg.encoder_dims, cfg.decoder_dims
    enc, dec = (e, 2 * e, 4 * e), (4 * d, 2 * d, d)
    if cfg.resolution >= 128:
        enc, dec = (e // 2, *enc), (*dec, d // 2)
    if cfg.resolution == 256:
        enc, dec = (e // 4, *enc), (*dec, d // 2)
    return Spec(
        resolution=cfg.resolution,
        enc=enc,
        proj=None,
        bottleneck=cfg.bottleneck,
        dense_grid=4,
        dense_ch=2 * e,
        latent_ch=8 * d,
        dec=dec,
        res_blocks=False,
    )
