"""LiveConfig: every setting of `faceswap live`."""

from __future__ import annotations

from dataclasses import dataclass, field

from faceswap.config import ExtractConfig, check, option
from faceswap.convert.blend import BLEND_MODES
from faceswap.convert.color import COLOR_MODES
from faceswap.convert.config import DIRECTIONS, ConvertConfig
from faceswap.convert.masks import MASK_MODES
from faceswap.media import X264_PRESETS


def _live_extract() -> ExtractConfig:
    # one face by default (the person in front of the camera); a full search every 15 frames
    # (half a second at 30 fps) picks up a face that entered
    return ExtractConfig(max_faces=1, redetect_every=15, embed=False, workers=1)


@dataclass
class LiveConfig:
    """Settings of `faceswap live`. Section `extract`: how faces are found and tracked."""

    direction: str = option("a2b", "a2b: put B's face where A is (default); b2a: the reverse")
    device: str = option("auto", "model device (torch) or onnxruntime provider: auto, cpu, cuda")
    threads: int = option(0, "model threads on a CPU (0 = half the cores)")
    smooth: bool = option(True, "One-Euro smoothing of the landmarks (causal: no look-ahead)")
    min_cutoff: float = option(1.0, "One-Euro cutoff at rest, Hz: lower = steadier, more lag")
    beta: float = option(0.05, "One-Euro speed coefficient: higher = less lag when moving")
    mask: str = option("product", "learned (decoder's mask), hull (landmarks) or product")
    color: str = option("rct", "colour match to the original face: avg, rct, hist or none")
    blend: str = option("feather", "feather (alpha blend) or seamless (Poisson, slower)")
    erode: float = option(0.02, "move the mask edge in (+) or out (-), fraction of crop side")
    feather: float = option(0.05, "width of the soft mask edge, fraction of the crop side")
    watermark: bool = option(True, "burn a visible 'synthetic' label into every frame")
    queue: int = option(1, "frames waiting for the swap; when full the oldest is dropped")
    stall_timeout: float = option(3.0, "seconds without a frame before the source counts as lost")
    crf: int = option(20, "file output: H.264 quality (0 lossless .. 51 worst)")
    preset: str = option("ultrafast", "file output: x264 preset (ultrafast leaves CPU to swap)")
    extract: ExtractConfig = field(
        default_factory=_live_extract,
        metadata={"help": "face finding and tracking (detector, aligner, max_faces, redetect)"},
    )

    def __post_init__(self) -> None:
        check(self.direction in DIRECTIONS, f"direction must be a2b or b2a, not {self.direction!r}")
        check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
              f"device must be auto, cpu or cuda, not {self.device!r}")  # fmt: skip
        check(self.threads >= 0, "threads must be >= 0")
        check(0.0 < self.min_cutoff <= 30.0, "min_cutoff must be in (0, 30] Hz")
        check(0.0 <= self.beta <= 10.0, "beta must be between 0 and 10")
        check(self.mask in MASK_MODES, f"mask must be one of {', '.join(MASK_MODES)}")
        check(self.color in COLOR_MODES, f"color must be one of {', '.join(COLOR_MODES)}")
        check(self.blend in BLEND_MODES, f"blend must be one of {', '.join(BLEND_MODES)}")
        check(-0.2 <= self.erode <= 0.2, "erode must be between -0.2 and 0.2")
        check(0.0 <= self.feather <= 0.3, "feather must be between 0 and 0.3")
        check(1 <= self.queue <= 64, "queue must be between 1 and 64")
        check(0.1 <= self.stall_timeout <= 600, "stall_timeout must be between 0.1 and 600 s")
        check(0 <= self.crf <= 51, "crf must be between 0 and 51")
        check(self.preset in X264_PRESETS, f"preset must be one of {', '.join(X264_PRESETS)}")

    def composite_config(self) -> ConvertConfig:
        """The compositing settings in the form convert's `composite` takes."""
        return ConvertConfig(direction=self.direction, mask=self.mask, color=self.color,
                             blend=self.blend, erode=self.erode, feather=self.feather)  # fmt: skip
