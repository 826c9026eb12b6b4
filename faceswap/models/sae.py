"""The SAE family (DeepFaceLab SAEHD-like 'df' layout) at any resolution from 64 to 512."""

from __future__ import annotations

from faceswap.models.autoencoder import Spec
from faceswap.models.config import ModelConfig

# Most features the dense layers see (original's 4x4x1024). SAEHD flattens the whole R/16 grid
# of 8E channels, so its first dense layer grows with R^2: at 256 px with E=64 that is
# 16*16*512 = 131072 inputs (67 M weights at B=512), and 268 M at 512 px. A 1x1 conv first
# projects the 8E channels down to c = FLAT_FEATURES / grid^2 (at least MIN_PROJ); the dense
# return mirrors it with a (grid, grid, c) reshape. Both dense layers then cost
# FLAT_FEATURES * B weights at every resolution, and the spatial layout (which the decoder
# needs) is kept, the channel count giving way instead.
FLAT_FEATURES = 16384
MIN_PROJ = 16


def flat_channels(grid: int, enc_out: int) -> int:
    """Channels per grid cell that go into the dense layers (a multiple of 8, >= MIN_PROJ)."""
    c = (FLAT_FEATURES // (grid * grid)) // 8 * 8
    return min(enc_out, max(MIN_PROJ, c))


def sae_spec(cfg: ModelConfig) -> Spec:
    """SAE at resolution R with E, D, B; grid g = R/16:

    encoder: E, 2E, 4E, 8E (5x5 s2) -> (g, g, 8E) -> [1x1 conv to c] -> Dense(B)
             -> Dense(g*g*c) -> upscale 8D -> latent (R/8, R/8, 8D)
    decoder: (upscale + residual block) at 8D, 4D, 2D -> R x R -> conv 5x5 to 3 (+ mask)
    """
    e, d = cfg.encoder_dims, cfg.decoder_dims
    grid = cfg.resolution // 16
    c = flat_channels(grid, 8 * e)
    return Spec(
        resolution=cfg.resolution,
        enc=(e, 2 * e, 4 * e, 8 * e),
        proj=c if c != 8 * e else None,
        bottleneck=cfg.bottleneck,
        dense_grid=grid,
        dense_ch=c,
        latent_ch=8 * d,
        dec=(8 * d, 4 * d, 2 * d),
        res_blocks=True,
    )
