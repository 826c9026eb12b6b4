"""The blend mask of a swapped face: learned, landmark hull, or both; eroded and feathered.

All work happens in crop space at a working size of at least 256 px, so the mask edge is smooth
however small the model's resolution. `erode` and `feather` are fractions of the crop side: the
crop is a fixed multiple of the face (see the centerings in docs/faceset.md), so the edge
scales with the face in the frame. For example 0.04 of a crop that covers 300 frame pixels is a
12 px soft edge.

The edge is shaped with a signed distance field (inside positive, in pixels), which makes
erosion continuous (0.3 px is 0.3 px, not zero or one pixel) and gives the feather the same
width all around the face. The crop border counts as a mask edge, so the mask always fades out
before the square of the crop ends: no seam where the crop stops.

The feather is centred on the edge, except where a segmentation model cuts something out of
the face (a hand, a microphone): there the ramp lies wholly on the face's side, so the
occluder keeps its own pixels up to its outline instead of losing a half-feather band of them
to the swapped face.
"""

from __future__ import annotations

import functools
from typing import Protocol

import cv2
import numpy as np

from faceswap.extract.masks import FOREHEAD, landmark_mask

MASK_MODES = ("learned", "hull", "product", "seg", "seg+hull", "seg+learned")
MIN_WORK_SIZE = 256


class Segmenter(Protocol):
    """A face segmentation model as convert sees it (faceswap.masks.SegModel is one): the
    centering of the crops it was trained on, and (B, W, W, 3) BGR uint8 -> (B, W, W) float32
    masks in [0, 1]."""

    centering: str

    def __call__(self, crops: np.ndarray) -> np.ndarray: ...


def work_size(resolution: int) -> int:
    """Side of the crop-space mask for a model of this resolution."""
    return max(resolution, MIN_WORK_SIZE)


def raw_mask(
    mode: str,
    learned: np.ndarray | None,
    landmarks: np.ndarray,
    resolution: int,
    hull: str = "extended",
    seg: np.ndarray | None = None,
    forehead: float = FOREHEAD,
) -> np.ndarray:
    """(W, W) float32 mask in [0, 1] at `work_size(resolution)`.

    learned: the decoder's (R, R) mask or None; landmarks: (68, 2) in model-crop pixels (R);
    seg: the segmentation model's mask of the same crop (any size) for the seg modes.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask must be one of {', '.join(MASK_MODES)}, not {mode!r}")
    size = work_size(resolution)
    if mode.startswith("seg"):
        if seg is None:
            raise ValueError(f"mask {mode} needs the segmentation mask")
        s = seg.astype(np.float32)
        if s.shape[0] != size:
            s = cv2.resize(s, (size, size), interpolation=cv2.INTER_LINEAR)
        rest = mode.partition("+")[2]
        return (
            s
            if not rest
            else s * raw_mask(rest, learned, landmarks, resolution, hull, forehead=forehead)
        )
    out: np.ndarray | None = None
    if mode in ("learned", "product") and learned is not None:
        out = learned.astype(np.float32)
        if out.shape[0] != size:
            out = cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)
    if mode in ("hull", "product") or out is None:
        # (p + 0.5) * s - 0.5: the same points in the larger working crop
        lm = (np.asarray(landmarks, dtype=np.float64) + 0.5) * (size / resolution) - 0.5
        h = landmark_mask(lm, size, hull, forehead)
        out = h if out is None else out * h
    return out


def blend_mask(
    mode: str,
    learned: np.ndarray | None,
    landmarks: np.ndarray,
    resolution: int,
    erode: float,
    feather: float,
    hull: str = "extended",
    seg: np.ndarray | None = None,
    forehead: float = FOREHEAD,
) -> np.ndarray:
    """(W, W) float32 alpha of a swapped face: `raw_mask` shaped by `shape_mask`, and in the
    seg modes kept off what the segmentation cuts out of the face (`keep_out`)."""
    raw = raw_mask(mode, learned, landmarks, resolution, hull, seg, forehead)
    alpha = shape_mask(raw, erode, feather)
    if not mode.startswith("seg"):
        return alpha
    # the face the segmentation cuts into: the rest of the mode's mask, or the hull for `seg`
    rest = mode.partition("+")[2] or "hull"
    face = raw_mask(rest, learned, landmarks, resolution, hull, forehead=forehead)
    return alpha * keep_out(raw >= 0.5, face >= 0.5, feather)


def keep_out(mask: np.ndarray, face: np.ndarray, feather: float) -> np.ndarray:
    """(W, W) float32 factor: 0 on the part of `face` that `mask` cuts out, rising to 1 over
    `feather` * W px outside it (smoothstep), 1 elsewhere. mask, face: (W, W) bool.

    Cut-outs thinner than the feather are ignored: along the face's outline the two masks
    merely disagree by a few pixels, and that edge keeps its centred feather."""
    size = face.shape[0]
    width = max(1.0, feather * size)
    cut = (face & ~mask).astype(np.uint8)
    k = max(1, int(round(width))) | 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    core = cv2.morphologyEx(cut, cv2.MORPH_OPEN, disk)
    if not core.any():
        return np.ones((size, size), np.float32)
    # the opening also rounds the corners where an occluder crosses the outline: take back
    # the cut-out pixels next to what survived it
    cut &= cv2.dilate(core, disk)
    # distance of each pixel centre from the nearest cut-out pixel's edge
    d = cv2.distanceTransform(1 - cut, cv2.DIST_L2, cv2.DIST_MASK_5) - 0.5
    t = np.clip(d / width, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def signed_distance(binary: np.ndarray) -> np.ndarray:
    """(H, W) float32: distance to the mask edge in pixels, positive inside, negative outside.
    (The mask-5 distance transform is within ~2% of the true Euclidean one, at a quarter of
    the cost of the exact one.)"""
    inside = binary.astype(np.uint8)
    d_in = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_5)
    d_out = cv2.distanceTransform(1 - inside, cv2.DIST_L2, cv2.DIST_MASK_5)
    # half a pixel each side puts the zero level on the edge between pixels
    return np.where(inside > 0, d_in - 0.5, 0.5 - d_out).astype(np.float32)


@functools.lru_cache(maxsize=8)
def border_distance(size: int) -> np.ndarray:
    """(size, size) float32: distance of each pixel centre to the outer edge of the crop
    (cached, read-only)."""
    d = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32) + 0.5
    out = np.minimum(d[:, None], d[None, :])
    out.setflags(write=False)
    return out


def shape_mask(mask: np.ndarray, erode: float, feather: float) -> np.ndarray:
    """Threshold a soft (W, W) mask at 0.5, move its edge in by `erode` * W px (out if
    negative) and give it a smooth ramp `feather` * W px wide, centred on the moved edge.
    Towards the crop's border the mask fades to 0 over the same width, ending at the border."""
    size = mask.shape[0]
    sd = signed_distance(mask >= 0.5) - erode * size
    width = max(1.0, feather * size)  # no feather still anti-aliases over one pixel
    t = np.minimum(sd / width + 0.5, border_distance(size) / width)
    t = np.clip(t, 0.0, 1.0)
    if feather * size < 1.0:
        return t.astype(np.float32)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)  # smoothstep: no kink at either end
