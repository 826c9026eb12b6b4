"""An exported swap model (`faceswap export`, .onnx) run by onnxruntime, with SwapModel's face.

The ONNX file holds one direction's swap path (encoder + one decoder) and, in its metadata,
everything convert needs to cut faces the way the model was trained (crop size, centering,
resolution) and what the provenance label records (source run, checkpoint, step). The graph:

    face  (N, 3, R, R) float32 RGB in [0, 1]
    rgb   (N, 3, R, R) float32 in [0, 1]      mask  (N, 1, R, R) float32 in [0, 1] (if learned)

The metadata keys are defined here (the library) and written by faceswap.export, which sits
above convert in the layout and imports them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceswap.config import CENTERINGS
from faceswap.data.facepool import single_path
from faceswap.errors import BadInput

log = logging.getLogger(__name__)

FORMAT = "faceswap-swap"
FORMAT_VERSION = 1
PREFIX = "faceswap."
INPUT, OUTPUT_RGB, OUTPUT_MASK = "face", "rgb", "mask"
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# the metadata every export carries (values are strings; JSON for the structured ones)
REQUIRED = ("format", "format_version", "purpose", "direction", "resolution", "face_size",
            "centering", "learns_mask", "run", "checkpoint", "step", "precision")  # fmt: skip


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise BadInput("running an .onnx model needs onnxruntime: pip install onnxruntime "
                       "(or pip install -e \".[onnx]\" in a checkout)") from None  # fmt: skip
    return onnxruntime


def pick_provider(name: str) -> str:
    """auto|cpu|cuda (or a torch-style cuda:N) -> onnxruntime provider name; BadInput when
    this onnxruntime build lacks it."""
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    key = "cuda" if name.startswith("cuda") else name
    if key == "auto":
        key = "cuda" if PROVIDERS["cuda"] in available else "cpu"
    if key not in PROVIDERS:
        raise BadInput(f"--provider {name!r}: must be auto, cpu or cuda")
    if PROVIDERS[key] not in available:
        raise BadInput(f"--provider {name}: this onnxruntime has no {PROVIDERS[key]} (it has "
                       f"{', '.join(available)}); install onnxruntime-gpu for cuda")  # fmt: skip
    return PROVIDERS[key]


def read_metadata(path: Path) -> dict[str, str]:
    """The faceswap.* metadata of an exported model (prefix stripped); BadInput when the file
    is not an ONNX model or was not made by `faceswap export`."""
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"{path}: not a readable ONNX model ({first})") from None
    return _faceswap_props(path, sess.get_modelmeta().custom_metadata_map)


def _faceswap_props(path: Path, props: dict[str, str]) -> dict[str, str]:
    meta = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
    if meta.get("format") != FORMAT:
        raise BadInput(f"{path}: an ONNX model without faceswap's metadata (export one with "
                       "`faceswap export`)")  # fmt: skip
    if int(meta.get("format_version", "0")) > FORMAT_VERSION:
        raise BadInput(f"{path}: exported by a newer faceswap (format version "
                       f"{meta['format_version']}); update faceswap")  # fmt: skip
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise BadInput(f"{path}: metadata lacks {', '.join(PREFIX + k for k in missing)}")
    if meta["centering"] not in CENTERINGS:
        raise BadInput(f"{path}: unknown face centering {meta['centering']!r} in its metadata")
    return meta


@dataclass
class OnnxSwapModel:
    """SwapModel's interface (resolution, crop_size, centering, swap, lineage) over an
    onnxruntime session."""

    session: Any  # onnxruntime.InferenceSession
    path: Path
    meta: dict[str, str]
    provider: str
    run_dir: Path  # the .onnx file: what convert names as "the model" in its summary
    checkpoint: str
    step: int
    direction: str
    crop_size: int
    centering: str
    device: torch.device
    resolution: int
    learns_mask: bool
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def source_faceset(self) -> str | None:
        """As SwapModel.source_faceset: None for a pooled side."""
        return single_path(self.state.get("facesets", {}).get(self.direction[0]))

    def lineage(self) -> dict[str, Any]:
        """As SwapModel.lineage() for the run the model was exported from, plus the export."""
        from faceswap.media import sha256_file

        return {
            "folder": self.meta["run"],
            "checkpoint": self.checkpoint,
            "step": self.step,
            "direction": self.direction,
            "model": json.loads(self.meta.get("model", "{}")),
            "facesets": self.state.get("facesets", {}),
            "lineage": json.loads(self.meta.get("lineage", "{}")),
            "trained_with": self.meta.get("trained_with"),
            "onnx": {"path": str(self.path), "sha256": sha256_file(self.path),
                     "precision": self.meta["precision"], "provider": self.provider,
                     "exported_with": self.meta.get("tool"),
                     "exported": self.meta.get("created")},
        }  # fmt: skip

    def swap(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """crops (N, R, R, 3) BGR uint8 -> swapped faces (N, R, R, 3) BGR float32 in [0, 255]
        and masks (N, R, R) float32 in [0, 1] (None if the decoders learn no mask)."""
        x = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
        x *= 1.0 / 255.0  # (N, 3, R, R) RGB in [0, 1]
        outs = self.session.run(None, {INPUT: x})
        faces = outs[0].transpose(0, 2, 3, 1)[..., ::-1] * np.float32(255.0)  # (N, R, R, 3) BGR
        mask = outs[1][:, 0] if self.learns_mask else None  # (N, R, R)
        return np.ascontiguousarray(faces, dtype=np.float32), mask


def load_onnx_model(
    path: str | os.PathLike, direction: str, provider: str = "auto", threads: int = 0
) -> OnnxSwapModel:
    """Open an exported model for `direction` on onnxruntime's `provider` (auto, cpu, cuda).

    threads: intra-op threads on a CPU (0 = half the cores: decode, tracking and compositing
    need the others, as for the torch model in convert).
    """
    ort = import_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such ONNX file")
    meta = read_metadata(path)
    if meta["direction"] != direction:
        raise BadInput(f"{path}: exported for {meta['direction']}, not {direction}; pass "
                       f"--direction {meta['direction']} or export the model again with "
                       f"--direction {direction}")  # fmt: skip
    prov = pick_provider(provider)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if prov == PROVIDERS["cpu"]:
        opts.intra_op_num_threads = threads or max(1, (os.cpu_count() or 1) // 2)
        opts.inter_op_num_threads = 1
    providers = [prov] if prov == PROVIDERS["cpu"] else [prov, PROVIDERS["cpu"]]
    session = ort.InferenceSession(str(path), opts, providers=providers)
    state = {"facesets": json.loads(meta.get("facesets", "{}"))}
    dev = torch.device("cuda" if prov == PROVIDERS["cuda"] else "cpu")
    log.info("ONNX model %s (%s, %s px, exported from %s step %s) on %s", path,
             meta["precision"], meta["resolution"], meta["run"], meta["step"], prov)  # fmt: skip
    return OnnxSwapModel(
        session=session, path=path, meta=meta, provider=prov, run_dir=path,
        checkpoint=meta["checkpoint"], step=int(meta["step"]), direction=direction,
        crop_size=int(meta["face_size"]), centering=meta["centering"], device=dev,
        resolution=int(meta["resolution"]), learns_mask=meta["learns_mask"] == "true",
        state=state,
    )  # fmt: skip
