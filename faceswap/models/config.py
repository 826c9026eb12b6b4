"""ModelConfig: which autoencoder to build and how wide it is.

Lives in the models package (not faceswap/config.py) so that the architecture rules that
validate it sit next to the code that builds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from faceswap.config import check, option

# Architecture name -> the only resolutions it accepts. The classic models are defined at one
# size (their dense layers are sized for that grid); `lightweight` has 128 and 256 px forms (one
# more narrow stage at each end per octave, same dense layers); `sae` and `liae` scale with the
# resolution.
ARCH_NAMES = ("original", "lightweight", "dfl-h128", "sae", "liae")
FIXED_RESOLUTION = {"original": (64,), "lightweight": (64, 128, 256), "dfl-h128": (128,)}
SAE_MIN_RES, SAE_MAX_RES, SAE_RES_STEP = 64, 512, 16
PADDINGS = ("zero", "reflect")


def _either(sizes: tuple[int, ...]) -> str:
    """(64,) -> "64"; (64, 128, 256) -> "64, 128 or 256"."""
    words = [str(s) for s in sizes]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


@dataclass
class ModelConfig:
    """Architecture and widths of the shared-encoder, dual-decoder autoencoder."""

    arch: str = option("lightweight", "architecture: original, lightweight, dfl-h128, sae or liae")
    resolution: int = option(
        64,
        "face side in pixels (original 64, lightweight 64, 128 or 256, dfl-h128 128; sae, liae: "
        "64..512 step 16)",
    )
    encoder_dims: int = option(64, "width E of the first encoder conv (E, 2E, 4E, 8E)")
    decoder_dims: int = option(32, "decoder width D: upscales 4D,2D,D (sae: 8D,4D,2D + res)")
    bottleneck: int = option(512, "size of the dense bottleneck, the shared identity-free code")
    learn_mask: bool = option(True, "decoders also output a 1-channel face mask")
    padding: str = option("zero", "conv padding: zero or reflect")
    icnr: bool = option(True, "ICNR init of pixel-shuffle convs (no checkerboard at start)")

    def __post_init__(self) -> None:
        check(
            self.arch in ARCH_NAMES,
            f"arch must be one of {', '.join(ARCH_NAMES)}, not {self.arch!r}",
        )
        if self.arch in FIXED_RESOLUTION:
            sizes = FIXED_RESOLUTION[self.arch]
            check(
                self.resolution in sizes,
                f"arch {self.arch} works at resolution {_either(sizes)} only, "
                f"not {self.resolution} (use arch sae for other sizes)",
            )
        else:
            check(
                SAE_MIN_RES <= self.resolution <= SAE_MAX_RES
                and self.resolution % SAE_RES_STEP == 0,
                f"{self.arch} resolution must be a multiple of {SAE_RES_STEP} between {SAE_MIN_RES} "
                f"and {SAE_MAX_RES}, not {self.resolution}",
            )
        check(8 <= self.encoder_dims <= 1024, "encoder_dims must be between 8 and 1024")
        check(8 <= self.decoder_dims <= 1024, "decoder_dims must be between 8 and 1024")
        check(16 <= self.bottleneck <= 16384, "bottleneck must be between 16 and 16384")
        check(
            self.padding in PADDINGS,
            f"padding must be one of {', '.join(PADDINGS)}, not {self.padding!r}",
        )
