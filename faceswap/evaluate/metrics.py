"""Reconstruction quality: PSNR and SSIM per image, masked to the face.

Images are float tensors (B, 3, H, W) in [0, 1]; a mask (B, 1, H, W) in [0, 1] weights every
pixel (the landmark hull: background the model never had to learn does not count).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from faceswap.train.losses import mse, ssim_index

# Identical images have an infinite PSNR; JSON has no infinity, so the MSE is floored at 1e-10
# (100 dB). Real reconstructions stay far below (8-bit rounding alone caps them near 58 dB).
PSNR_MAX = 100.0
_MSE_FLOOR = 10.0 ** (-PSNR_MAX / 10.0)


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> np.ndarray:
    """(B,) PSNR in dB of each image, over the mask-weighted pixels (peak value 1.0)."""
    out = np.empty(pred.shape[0], np.float64)
    for i in range(pred.shape[0]):
        w = None if mask is None else mask[i : i + 1]
        err = float(mse(pred[i : i + 1], target[i : i + 1], w))
        out[i] = 10.0 * math.log10(1.0 / max(err, _MSE_FLOOR))
    return out


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> np.ndarray:
    """(B,) SSIM (11 px Gaussian window, sigma 1.5) of each image, the SSIM map averaged with the
    mask at each window's centre as weight."""
    out = np.empty(pred.shape[0], np.float64)
    for i in range(pred.shape[0]):
        w = None if mask is None else mask[i : i + 1]
        out[i] = float(ssim_index(pred[i : i + 1], target[i : i + 1], weight=w))
    return out


def summarize(values: np.ndarray) -> dict[str, float | int | None]:
    """mean, median, p5, p95 and count of finite values (None when there are none)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "median": None, "p5": None, "p95": None, "n": 0}
    p5, p50, p95 = np.percentile(v, [5, 50, 95])
    return {"mean": round(float(v.mean()), 5), "median": round(float(p50), 5),
            "p5": round(float(p5), 5), "p95": round(float(p95), 5), "n": int(v.size)}  # fmt: skip
