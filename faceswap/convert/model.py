"""The trained model, loaded for inference only: weights, the crop it expects, batched swaps.

A run folder (or one of its checkpoint folders) gives the architecture (the run's config.yaml),
the weights (safetensors) and the face crops it was trained on (size and centering of the
training face sets, recorded in the checkpoint): convert must cut faces exactly that way.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceswap.config import CENTERINGS, to_dict
from faceswap.convert.onnx_model import OnnxSwapModel, load_onnx_model
from faceswap.data.facepool import single_path
from faceswap.errors import BadInput
from faceswap.models import Autoencoder, build_model
from faceswap.train.checkpoint import load_checkpoint, resolve_checkpoint
from faceswap.train.trainer import CONFIG_FILE, pick_device, read_run_config

log = logging.getLogger(__name__)


def sides(direction: str) -> tuple[str, str]:
    """("a", "b") for a2b: the face in the clip, the face put in."""
    return (direction[0], direction[2])


@dataclass
class SwapModel:
    """An Autoencoder in eval mode with what convert needs to know about it."""

    model: Autoencoder
    run_dir: Path
    checkpoint: Path
    step: int
    direction: str
    crop_size: int  # side of the training face sets' crops
    centering: str  # their centering
    device: torch.device
    amp_dtype: torch.dtype | None
    state: dict[str, Any]  # the checkpoint's metadata (lineage, face sets, config)

    @property
    def resolution(self) -> int:
        return self.model.spec.resolution

    @property
    def learns_mask(self) -> bool:
        return self.model.learns_mask

    @property
    def source_faceset(self) -> str | None:
        """Path of the training face set of the identity in the clip (A for a2b); None when
        none is recorded or the side was a pool of several identities (a base model)."""
        return single_path(self.state.get("facesets", {}).get(sides(self.direction)[0]))

    def lineage(self) -> dict[str, Any]:
        """What the provenance label records about the model."""
        return {
            "folder": str(self.run_dir),
            "checkpoint": str(self.checkpoint),
            "step": self.step,
            "direction": self.direction,
            "model": to_dict(self.model.config),
            "facesets": self.state.get("facesets", {}),
            "lineage": self.state.get("lineage", {}),
            "trained_with": self.state.get("tool"),
        }

    @torch.inference_mode()
    def swap(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """crops (N, R, R, 3) BGR uint8 -> swapped faces (N, R, R, 3) BGR float32 in [0, 255]
        and masks (N, R, R) float32 in [0, 1] (None if the decoders learn no mask)."""
        x = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, R, R) RGB in [0, 1]
        x = x.contiguous(memory_format=torch.channels_last)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype)
                    if self.amp_dtype is not None else contextlib.nullcontext())  # fmt: skip
        with autocast:
            rgb, mask = self.model.decode(self.model.encode(x), sides(self.direction)[1])
        faces = rgb.float().mul_(255.0).permute(0, 2, 3, 1).flip(-1)  # (N, R, R, 3) BGR
        out_mask = mask.float()[:, 0] if mask is not None else None  # (N, R, R)
        return (faces.cpu().numpy(),
                out_mask.cpu().numpy() if out_mask is not None else None)  # fmt: skip


def parts_for_output(arch: str, side: str) -> tuple[str, ...]:
    """The parts a model needs to draw `side`'s face: the encoder and that side's decoder (liae:
    the shared intermediate and the one decoder, and for A also A's intermediate)."""
    if arch == "liae":
        return ("encoder", "inter_ab", "decoder") + (("inter_a",) if side == "a" else ())
    return ("encoder", f"decoder_{side}")


def run_folder_of(path: Path, checkpoint: Path) -> Path:
    """The run folder: `path` itself, or the folder holding checkpoints/<checkpoint>."""
    if (path / CONFIG_FILE).is_file():
        return path
    return checkpoint.parent.parent


def load_swap_model(
    path: str | Path, direction: str, device: str = "auto", precision: str = "auto"
) -> SwapModel | OnnxSwapModel:
    """Load a run's best (else latest) checkpoint, or a given checkpoint folder, or a model
    exported with `faceswap export` (.onnx: onnxruntime, `device` picks its provider; the
    precision was chosen at export).

    BadInput: not a run, no checkpoint, weights that do not fit the run's architecture, or
    weights without the encoder or the decoder this direction needs.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if precision not in ("auto", "fp32"):
            log.warning("%s: precision %s ignored (an ONNX model keeps its export precision)",
                        path, precision)  # fmt: skip
        return load_onnx_model(path, direction, device)
    ckpt = resolve_checkpoint(path)
    run_dir = run_folder_of(path, ckpt)
    cfg = read_run_config(run_dir)
    data = load_checkpoint(ckpt)
    weights = data["model"]
    del data["optimizer"], data["rng"]  # inference only: let them go now
    state = data["state"]
    src, dst = sides(direction)
    for part in parts_for_output(cfg.model.arch, dst):
        if not any(k.startswith(part + ".") for k in weights):
            raise BadInput(f"{ckpt}: the checkpoint has no {part} weights, so the model cannot "
                           f"do {direction} (put {dst.upper()}'s face in)")  # fmt: skip
    model = build_model(cfg.model)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise BadInput(f"{ckpt}: checkpoint does not fit the run's model ({first})") from None
    facesets = state.get("facesets", {})
    fs = facesets.get(src) or facesets.get(dst) or {}
    crop_size = int(fs.get("size") or cfg.model.resolution)
    centering = fs.get("centering") or "face"
    if centering not in CENTERINGS:
        raise BadInput(f"{ckpt}: unknown face centering {centering!r} in the checkpoint")
    if not fs:
        log.warning("%s records no training face sets: assuming %d px %s crops", ckpt,
                    crop_size, centering)  # fmt: skip
    dev = pick_device(device)
    amp = None
    if dev.type == "cuda" and precision in ("auto", "bf16", "fp16"):
        amp = torch.float16 if precision == "fp16" else torch.bfloat16
        if precision == "auto" and not torch.cuda.is_bf16_supported():
            amp = torch.float16
    elif dev.type == "cpu" and precision == "bf16":
        amp = torch.bfloat16
    model = model.to(dev).to(memory_format=torch.channels_last).eval()
    model.requires_grad_(False)
    log.info("model %s %d px from %s (step %d) on %s", cfg.model.arch, cfg.model.resolution,
             ckpt, int(state.get("step", 0)), dev)  # fmt: skip
    return SwapModel(model, run_dir, ckpt, int(state.get("step", 0)), direction, crop_size,
                     centering, dev, amp, state)  # fmt: skip
