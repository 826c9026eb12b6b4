"""The accuracy check of an export: onnxruntime's swaps against PyTorch's on real faces.

The faces are the model's input crops: from a face set (by default the run's training face set
of the identity that goes in, the one a swap sees), else the astronaut portrait that
scikit-image ships, found and aligned by extract's detector and landmarks, with a few
variations (mirrored, darker, brighter, turned) so that a batch is more than one face.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceswap.convert.model import SwapModel
from faceswap.convert.onnx_model import OnnxSwapModel
from faceswap.convert.warp import crop_face, face_matrices
from faceswap.errors import BadInput

log = logging.getLogger(__name__)

# Largest |onnxruntime - PyTorch| allowed on outputs in [0, 1]. fp32 differs only in the order
# of float sums (under 1e-4 on the test model, 6e-8 on a random lightweight one); fp16 rounds
# every activation to 11 bits (2^-11 ~ 5e-4 relative per op), so it gets a looser bound.
TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2}


@dataclass
class CheckResult:
    faces: int
    source: str  # where the faces came from
    max_abs_rgb: float  # on outputs in [0, 1]
    max_abs_mask: float | None
    mean_abs_rgb: float
    tolerance: float
    passed: bool


def faceset_crops(path: str | Path, count: int, resolution: int) -> np.ndarray:
    """Up to `count` faces spread over a face set, resized to the model's resolution:
    (N, R, R, 3) BGR uint8."""
    from faceswap import faceset as fsmod

    fs = fsmod.load(path)
    if not fs.faces:
        raise BadInput(f"{path}: face set has no faces to check the export on")
    pick = np.linspace(0, len(fs.faces) - 1, min(count, len(fs.faces))).round().astype(int)
    out = []
    for i in sorted(set(pick.tolist())):
        img = fs.load_image(fs.faces[i])
        interp = cv2.INTER_AREA if resolution < fs.size else cv2.INTER_CUBIC
        out.append(cv2.resize(img, (resolution, resolution), interpolation=interp))
    return np.stack(out)


def astronaut_crops(crop_size: int, resolution: int, centering: str) -> np.ndarray:
    """The astronaut's face aligned as the model expects, and 5 variations: (6, R, R, 3)."""
    from faceswap.config import ExtractConfig
    from faceswap.extract.finder import FaceFinder
    from faceswap.extract.pipeline import resolve_backends
    from faceswap.synthetic import astronaut

    cfg = ExtractConfig(detector="dlib-hog", aligner="dlib", embed=False, workers=1)
    finder = FaceFinder(cfg, resolve_backends(cfg))
    rgb = np.ascontiguousarray(astronaut())
    dets = finder.detect(rgb)
    if not dets:
        raise RuntimeError("no face found in skimage's astronaut portrait")
    lms = finder.aligner.landmarks(rgb, [dets[0].box])[0]
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    m_crop, _ = face_matrices(lms, crop_size, resolution, centering)
    base = crop_face(bgr, m_crop, crop_size, resolution)
    turn = cv2.getRotationMatrix2D((resolution / 2, resolution / 2), 12, 1.0)
    variants = [base, base[:, ::-1], (base * 0.6).astype(np.uint8),
                np.clip(base * 1.3, 0, 255).astype(np.uint8),
                cv2.warpAffine(base, turn, (resolution, resolution), borderMode=cv2.BORDER_REFLECT),
                cv2.GaussianBlur(base, (5, 5), 1.5)]  # fmt: skip
    return np.ascontiguousarray(np.stack(variants))


def compare(torch_model: SwapModel, onnx_model: OnnxSwapModel, crops: np.ndarray,
            source: str, precision: str) -> CheckResult:  # fmt: skip
    """Swap the same crops with both; errors in output units [0, 1]."""
    ref_rgb, ref_mask = torch_model.swap(crops)
    got_rgb, got_mask = onnx_model.swap(crops)
    d_rgb = np.abs(got_rgb.astype(np.float64) - ref_rgb) / 255.0
    d_mask = None
    if ref_mask is not None and got_mask is not None:
        d_mask = float(np.abs(got_mask.astype(np.float64) - ref_mask).max())
    tol = TOLERANCE[precision]
    worst = max(float(d_rgb.max()), d_mask or 0.0)
    res = CheckResult(len(crops), source, float(d_rgb.max()), d_mask, float(d_rgb.mean()), tol,
                      worst <= tol)  # fmt: skip
    log.info("export check on %d faces (%s): max |onnx - torch| rgb %.2e, mask %s (tolerance "
             "%.0e)", res.faces, source, res.max_abs_rgb,
             "-" if d_mask is None else f"{d_mask:.2e}", tol)  # fmt: skip
    return res
