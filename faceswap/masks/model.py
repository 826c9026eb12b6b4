"""SegNet: a small U-Net that cuts the visible face out of a 256 px aligned crop.

Five stride-2 stages take the crop from 256 to 8 px (channels 16..96), a decoder climbs back
with skip connections to 128 px, and the logits are upsampled bilinearly to the input size.
Nothing runs at full resolution: the mask edge does not need 256 px of detail (convert feathers
it over ~5% of the crop anyway), and skipping that level is what makes ~100 faces/s on two CPU
cores possible. Saved as safetensors + a JSON header; loading never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceswap.config import check, option
from faceswap.errors import BadInput

log = logging.getLogger(__name__)

FORMAT = "faceswap-segmodel"
VERSION = 1
WEIGHTS = "model.safetensors"
META = "model.json"


@dataclass
class SegSpec:
    """Architecture of a segmentation model."""

    size: int = option(256, "input side in pixels (aligned face crops are resized to it)")
    width: int = option(16, "channels of the first stage; later stages grow from it")

    def __post_init__(self) -> None:
        check(self.size in (64, 128, 256, 512), "size must be 64, 128, 256 or 512")
        check(4 <= self.width <= 64, "width must be between 4 and 64")

    def channels(self) -> list[int]:
        w = self.width
        return [w, w * 3 // 2, w * 2, w * 3, w * 6]


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SegNet(nn.Module):
    """(B, 3, S, S) RGB in [0, 1] -> (B, 1, S, S) logits of "visible face"."""

    def __init__(self, spec: SegSpec) -> None:
        super().__init__()
        self.spec = spec
        ch = spec.channels()
        self.down = nn.ModuleList()
        # one conv at 128 px, two at each coarser level: the 128 px level is 4x the pixels
        self.down.append(_block(3, ch[0], 2))
        for cin, c in zip(ch[:-1], ch[1:]):
            self.down.append(nn.Sequential(_block(cin, c, 2), _block(c, c, 1)))
        self.up = nn.ModuleList()
        cin = ch[-1]
        for skip in reversed(ch[1:-1]):  # 8 -> 16 -> 32 -> 64 px
            self.up.append(_block(cin + skip, skip, 1))
            cin = skip
        # 128 px: 1x1 convs only (a 3x3 here costs more than the whole rest of the net)
        self.fine = nn.Sequential(
            nn.Conv2d(cin + ch[0], ch[0], 1, bias=False), nn.BatchNorm2d(ch[0]), nn.ReLU(True)
        )
        self.head = nn.Conv2d(ch[0], 1, 1)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = (x - self.mean) * 4.0
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        skips.pop()
        for block in [*self.up, self.fine]:
            s = skips.pop()
            x = F.interpolate(x, size=s.shape[-2:], mode="nearest")
            x = block(torch.cat([x, s], 1))
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)


def fuse_batchnorm(net: SegNet) -> SegNet:
    """Fold every BatchNorm into its conv (inference only: ~25% faster on a CPU)."""
    for blk in list(net.modules()):
        if isinstance(blk, nn.Sequential) and len(blk) == 3 and isinstance(blk[1], nn.BatchNorm2d):
            conv, bn = blk[0], blk[1]
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                  conv.stride, conv.padding, bias=True)  # fmt: skip
                fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
                fused.bias.copy_(bn.bias - bn.running_mean * scale)
            blk[0], blk[1] = fused, nn.Identity()
    return net


@dataclass
class SegModel:
    """A loaded segmentation model with what apply/convert need to know about it."""

    net: SegNet
    spec: SegSpec
    meta: dict[str, Any]
    path: Path
    device: torch.device

    @property
    def centering(self) -> str:
        """Centering of the face crops it was trained on (face, head or legacy)."""
        return str(self.meta.get("centering", "face"))

    @property
    def fingerprint(self) -> str:
        return str(self.meta.get("fingerprint", ""))

    def __call__(self, crops_bgr: np.ndarray) -> np.ndarray:
        """convert's Segmenter: masks of crops at the crops' own size."""
        return self.predict(crops_bgr)

    @torch.inference_mode()
    def predict(self, crops_bgr: np.ndarray, out_size: int | None = None) -> np.ndarray:
        """(B, H, H, 3) BGR uint8 aligned crops -> (B, O, O) float32 masks in [0, 1], O =
        out_size or H. Crops of another size are resized to the model's input size."""
        crops = np.asarray(crops_bgr)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.shape[1] != crops.shape[2]:
            raise ValueError(f"crops must be (B, H, H, 3), not {crops.shape}")
        s = self.spec.size
        x = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, H) RGB
        if x.shape[-1] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        x = x.contiguous(memory_format=torch.channels_last)
        logits = self.net(x)
        o = out_size or crops.shape[1]
        if o != s:
            logits = F.interpolate(logits, size=(o, o), mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)[:, 0].float().cpu().numpy()


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_model(net: SegNet, folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write weights and header atomically (weights first: a header always has its weights)."""
    from safetensors.torch import save as st_save

    from faceswap.faceset import atomic_write_bytes, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {"format": FORMAT, "version": VERSION, "spec": asdict(net.spec), **meta,
            "fingerprint": state_fingerprint(state)}  # fmt: skip
    atomic_write_bytes(folder / WEIGHTS, st_save(state))
    atomic_write_text(folder / META, json.dumps(meta, indent=2))
    return meta


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META
    if not Path(folder).is_dir():
        raise BadInput(f"{folder}: mask model folder does not exist (train one with "
                       "faceswap mask train)")  # fmt: skip
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{folder}: not a mask model (no {META})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise BadInput(f"{path}: unreadable or not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BadInput(f"{path}: not a faceswap mask model")
    if meta.get("version") != VERSION:
        raise BadInput(f"{path}: mask model version {meta.get('version')!r} is not supported "
                       f"(this faceswap reads {VERSION})")  # fmt: skip
    return meta


def load_model(folder: str | Path, device: str = "cpu", fuse: bool = True) -> SegModel:
    """Load a trained model for inference (eval mode, BatchNorm folded, channels_last)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = read_meta(folder)
    try:
        spec = SegSpec(**meta.get("spec", {}))
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{folder / META}: bad spec ({exc})") from None
    net = SegNet(spec)
    try:
        state = load_file(str(folder / WEIGHTS))
        net.load_state_dict(state)
    except (OSError, SafetensorError, RuntimeError) as exc:
        raise BadInput(f"{folder / WEIGHTS}: missing, corrupt or of another architecture "
                       f"({str(exc).splitlines()[0][:120]})") from None  # fmt: skip
    net.eval()
    if fuse:
        fuse_batchnorm(net)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)  # fmt: skip
    net = net.to(dev).to(memory_format=torch.channels_last)
    return SegModel(net, spec, meta, folder, dev)
