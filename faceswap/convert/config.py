"""ConvertConfig: every setting of `faceswap convert` (YAML: configs/convert/default.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from faceswap.config import ExtractConfig, check, option
from faceswap.convert.blend import BLEND_MODES
from faceswap.convert.color import COLOR_MODES
from faceswap.convert.masks import MASK_MODES
from faceswap.extract.masks import MASK_KINDS
from faceswap.media import X264_PRESETS

DIRECTIONS = ("a2b", "b2a")
SELECTS = ("all", "identity")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class ConvertConfig:
    """Settings of `faceswap convert`. Section `extract`: how faces are found (as in extract)."""

    direction: str = option("a2b", "a2b: put B's face where A is (default); b2a: the reverse")
    batch_size: int = option(8, "faces per model call")
    device: str = option("auto", "torch device of the model: auto, cpu or cuda")
    precision: str = option("auto", "auto (fp16/bf16 on CUDA, fp32 on CPU), fp32, bf16 or fp16")
    smooth: float = option(0.25, "landmark smoothing: half-window in seconds (0 = off)")
    mask: str = option("product", "learned, hull, product; seg, seg+hull, seg+learned "
                       "(the mask_model's segmentation)")  # fmt: skip
    mask_model: str = option("", "mask model folder (faceswap mask train) for the seg masks")
    hull: str = option("extended", "landmark mask: hull, extended (with forehead) or components")
    forehead: float = option(0.4, "extended hull: its reach above the brows, in brow-to-nose-tip "
                             "distances (lower keeps B's hairline out; with forehead_auto, "
                             "the fallback)")  # fmt: skip
    forehead_auto: bool = option(True, "choose the forehead reach per clip: the least visible "
                                 "edge over a few frames (off: `forehead` as given)")  # fmt: skip
    erode: float = option(0.02, "move the mask edge in (+) or out (-), fraction of crop side")
    feather: float = option(0.05, "width of the soft mask edge, fraction of the crop side")
    color: str = option("rct", "colour match to the original face: avg, rct, hist or none")
    edge_color: float = option(0.0, "band inside the mask edge, fraction of the crop side, "
                               "where the face's colour fades into the original's (0 = off)")  # fmt: skip
    blend: str = option("feather", "feather (alpha blend) or seamless (Poisson)")
    sharpen: float = option(0.0, "unsharp-mask amount on the swapped face (0 = off)")
    select: str = option("all", "swap all faces, or only those of the model's identity")
    identity_threshold: float = option(0.6, "select identity: max embedding distance")
    embed_every: int = option(8, "select identity: re-check a tracked face every n frames")
    crf: int = option(18, "H.264 quality: 0 lossless .. 51 worst; 18 is visually lossless")
    preset: str = option(
        "superfast", "x264 preset: slower ones make smaller files at the same quality, cost more"
    )
    watermark: bool = option(False, "burn a visible 'synthetic' label into every frame")
    queue: int = option(24, "frames in flight between stages (bounds memory)")
    workers: int = option(0, "compositing threads (0 = one per CPU core)")
    threads: int = option(0, "torch threads for the model on a CPU (0 = half the cores)")
    extract: ExtractConfig = field(
        default_factory=ExtractConfig,
        metadata={"help": "face finding: detector, aligner, tracking (size/centering: model's)"},
    )

    def __post_init__(self) -> None:
        check(self.direction in DIRECTIONS, f"direction must be a2b or b2a, not {self.direction!r}")
        check(1 <= self.batch_size <= 1024, "batch_size must be between 1 and 1024")
        check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
               f"device must be auto, cpu or cuda, not {self.device!r}")  # fmt: skip
        check(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        check(0.0 <= self.smooth <= 2.0, "smooth must be between 0 (off) and 2 seconds")
        check(self.mask in MASK_MODES, f"mask must be one of {', '.join(MASK_MODES)}")
        check(bool(self.mask_model) or not self.mask.startswith("seg"),
              f"mask {self.mask} needs mask_model (--mask-model), from faceswap mask train")  # fmt: skip
        check(self.hull in MASK_KINDS, f"hull must be one of {', '.join(MASK_KINDS)}")
        check(0.0 <= self.forehead <= 1.0, "forehead must be between 0 and 1")
        check(-0.2 <= self.erode <= 0.2, "erode must be between -0.2 and 0.2")
        check(0.0 <= self.feather <= 0.3, "feather must be between 0 and 0.3")
        check(self.color in COLOR_MODES, f"color must be one of {', '.join(COLOR_MODES)}")
        check(0.0 <= self.edge_color <= 0.3, "edge_color must be between 0 and 0.3")
        check(self.blend in BLEND_MODES, f"blend must be one of {', '.join(BLEND_MODES)}")
        check(0.0 <= self.sharpen <= 5.0, "sharpen must be between 0 and 5")
        check(self.select in SELECTS, f"select must be all or identity, not {self.select!r}")
        check(0.0 < self.identity_threshold < 2.0, "identity_threshold must be in (0, 2)")
        check(self.embed_every >= 1, "embed_every must be >= 1")
        check(0 <= self.crf <= 51, "crf must be between 0 and 51")
        check(self.preset in X264_PRESETS, f"preset must be one of {', '.join(X264_PRESETS)}")
        check(4 <= self.queue <= 1024, "queue must be between 4 and 1024")
        check(self.workers >= 0, "workers must be >= 0")
        check(self.threads >= 0, "threads must be >= 0")
