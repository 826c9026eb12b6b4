"""`faceswap export`: a run's swap path (encoder + one decoder) as an ONNX model.

    face (N, 3, R, R) float32 RGB in [0, 1] -> rgb (N, 3, R, R), mask (N, 1, R, R) in [0, 1]

The batch axis is dynamic. fp16 keeps float32 inputs and outputs and casts inside the graph,
so callers never change. The metadata (faceswap.* keys, faceswap.convert.onnx_model) carries
what convert and live need (face size, centering, resolution, direction) and the provenance:
the source run, checkpoint, step, model preset and the purpose, "synthetic".

The file is written under a temp name, checked against PyTorch on real faces with
onnxruntime (check.py), and only then renamed to the output: a failed check leaves nothing.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import secrets
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from faceswap import __version__
from faceswap.config import to_dict
from faceswap.convert import provenance
from faceswap.convert.model import SwapModel, load_swap_model, sides
from faceswap.convert.onnx_model import (
    FORMAT,
    FORMAT_VERSION,
    INPUT,
    OUTPUT_MASK,
    OUTPUT_RGB,
    PREFIX,
    load_onnx_model,
)
from faceswap.errors import BadInput
from faceswap.export import check as checkmod
from faceswap.models.presets import PRESET_VALUES

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
OPSET = 17


class SwapGraph(nn.Module):
    """encode -> decode(side), float32 in and out whatever the weights' precision."""

    def __init__(self, swap: SwapModel, half: bool) -> None:
        super().__init__()
        model = copy.deepcopy(swap.model).float().to(memory_format=torch.contiguous_format)
        if half:
            model = model.half()
        self.model = model  # every architecture: encode, then decode as the output side
        self.side = sides(swap.direction)[1]
        self.dtype = torch.float16 if half else torch.float32

    def forward(self, face: Tensor) -> tuple[Tensor, ...]:
        rgb, mask = self.model.decode(self.model.encode(face.to(self.dtype)), self.side)
        # (N, 3, R, R), (N, 1, R, R)
        return (rgb.float(),) if mask is None else (rgb.float(), mask.float())


@dataclass
class ExportSummary:
    output: str
    run: str
    checkpoint: str
    step: int
    direction: str
    precision: str
    preset: str
    resolution: int
    face_size: int
    centering: str
    learns_mask: bool
    opset: int
    megabytes: float
    seconds: float
    check: dict[str, Any] | None


def preset_name(model_cfg: dict[str, Any]) -> str:
    """The preset whose values the model's config has, else "<arch> (custom)"."""
    for name, values in PRESET_VALUES.items():
        if all(model_cfg.get(k) == v for k, v in values.items()):
            return name
    return f"{model_cfg.get('arch')} (custom)"


def metadata(swap: SwapModel, precision: str, created: str) -> dict[str, str]:
    lin = swap.lineage()
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "purpose": "synthetic",
        "statement": (
            "Swaps faces: every output made with this model is synthetic and must be "
            "labelled as such (see faceswap's docs/ethics.md)."
        ),  # fmt: skip
        "tool": f"faceswap {__version__}",
        "created": created,
        "run": str(swap.run_dir),
        "checkpoint": str(swap.checkpoint),
        "step": str(swap.step),
        "direction": swap.direction,
        "preset": preset_name(lin["model"]),
        "model": json.dumps(lin["model"]),
        "resolution": str(swap.resolution),
        "face_size": str(swap.crop_size),
        "centering": swap.centering,
        "learns_mask": "true" if swap.learns_mask else "false",
        "precision": precision,
        "facesets": json.dumps(lin["facesets"]),
        "lineage": json.dumps(lin["lineage"]),
        "trained_with": str(lin["trained_with"] or ""),
        "input": f"{INPUT}: (N, 3, {swap.resolution}, {swap.resolution}) float32 RGB in [0, 1]",
        "outputs": f"{OUTPUT_RGB}: (N, 3, R, R) float32 RGB in [0, 1]"
        + (
            f"; {OUTPUT_MASK}: (N, 1, R, R) float32 face mask in [0, 1]" if swap.learns_mask else ""
        ),  # fmt: skip
    }
    return {PREFIX + k: v for k, v in meta.items()}


def _check_output(out: Path, overwrite: bool) -> None:
    if out.suffix.lower() != ".onnx":
        raise BadInput(f"{out}: the output must end in .onnx")
    if out.is_dir():
        raise BadInput(f"{out}: is a folder; give a file name ending in .onnx")
    if out.exists() and not overwrite:
        raise BadInput(f"{out}: exists; pass --overwrite to replace it")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{out}: cannot write there ({parent} is not a writable folder)")


def export_onnx(
    run: str | os.PathLike,
    output: str | os.PathLike,
    *,
    direction: str = "a2b",
    precision: str = "fp32",
    opset: int = OPSET,
    overwrite: bool = False,
    check: bool = True,
    check_faces: str | os.PathLike | None = None,
    check_count: int = 16,
) -> ExportSummary:
    """Export `run`'s swap path for `direction` to `output` (.onnx) and check it.

    BadInput: a bad run, option or output path. RuntimeError: onnxruntime's output differs
    from PyTorch's beyond the tolerance (nothing is written then).
    """
    import onnx

    t0 = time.perf_counter()
    out = Path(output)
    if precision not in PRECISIONS:
        raise BadInput(f"--precision {precision!r}: must be fp32 or fp16")
    if direction not in ("a2b", "b2a"):
        raise BadInput(f"--direction {direction!r}: must be a2b or b2a")
    if Path(run).suffix.lower() == ".onnx":
        raise BadInput(f"{run}: is already an ONNX model; export takes a run folder")
    _check_output(out, overwrite)
    if not 13 <= opset <= 20:
        raise BadInput(f"--opset {opset}: must be between 13 and 20")
    swap = load_swap_model(run, direction, "cpu", "fp32")
    assert isinstance(swap, SwapModel)
    crops = None
    source = ""
    if check:  # faces first: a bad --check-faces fails before the slow part
        crops, source = _check_crops(swap, check_faces, check_count)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.partial"
    try:
        graph = SwapGraph(swap, precision == "fp16").eval()
        res = swap.resolution
        example = torch.rand(2, 3, res, res)
        names = [OUTPUT_RGB, OUTPUT_MASK] if swap.learns_mask else [OUTPUT_RGB]
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # the TorchScript exporter: the dynamo one needs onnxscript, and this graph has no
            # control flow that tracing would miss
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph, (example,), str(tmp), input_names=[INPUT], output_names=names,
                dynamic_axes={n: {0: "batch"} for n in [INPUT, *names]},
                opset_version=opset, dynamo=False,
            )  # fmt: skip
        proto = onnx.load(str(tmp))
        created = provenance.now_utc()
        onnx.helper.set_model_props(proto, metadata(swap, precision, created))
        proto.producer_name = "faceswap"
        proto.producer_version = __version__
        proto.doc_string = (f"faceswap {swap.direction} swap model, exported from "
                            f"{swap.run_dir} step {swap.step}: its outputs are synthetic")  # fmt: skip
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        del proto
        result = None
        if check:
            assert crops is not None
            exported = load_onnx_model(tmp, direction, "cpu")
            result = checkmod.compare(swap, exported, crops, source, precision)
            if not result.passed:
                raise RuntimeError(
                    f"the export differs from PyTorch by {result.max_abs_rgb:.2e} (rgb) / "
                    f"{result.max_abs_mask} (mask) on {result.faces} faces, beyond the "
                    f"tolerance {result.tolerance:.0e}; nothing was written"
                )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportSummary(
        output=str(out), run=str(swap.run_dir), checkpoint=str(swap.checkpoint),
        step=swap.step, direction=direction, precision=precision,
        preset=preset_name(to_dict(swap.model.config)), resolution=swap.resolution,
        face_size=swap.crop_size, centering=swap.centering, learns_mask=swap.learns_mask,
        opset=opset, megabytes=round(out.stat().st_size / 1e6, 2),
        seconds=round(time.perf_counter() - t0, 2),
        check=asdict(result) if result is not None else None,
    )  # fmt: skip


def _check_crops(swap: SwapModel, faces: str | os.PathLike | None, count: int):
    """The check's faces: --check-faces, else the run's face set of the swapped-out identity
    (when it is still on disk), else the astronaut portrait."""
    if count < 1:
        raise BadInput("--check-count must be at least 1")
    if faces is not None:
        return checkmod.faceset_crops(faces, count, swap.resolution), str(faces)
    from faceswap.data.facepool import paths_of
    from faceswap.faceset import is_faceset

    # a pooled side has no single face set; any of its members' faces serve the numbers check
    pooled = paths_of(swap.state.get("facesets", {}).get(sides(swap.direction)[0]))
    fs = swap.source_faceset or (pooled[0] if pooled else None)
    if fs and is_faceset(fs):
        try:
            return checkmod.faceset_crops(fs, count, swap.resolution), fs
        except BadInput as exc:
            log.warning("cannot check on the training face set (%s): using the astronaut", exc)
    crops = checkmod.astronaut_crops(swap.crop_size, swap.resolution, swap.centering)
    return crops, "skimage astronaut (6 variations)"
