"""Landmark masks, derived from the stored landmarks and matrix (nothing extra is stored)."""

from __future__ import annotations

import cv2
import numpy as np

MASK_KINDS = ("hull", "extended", "components")

# iBUG-68 parts whose convex hulls make up the `components` mask.
_COMPONENTS = [
    list(range(0, 9)) + list(range(17, 22)),  # right jaw + right brow
    list(range(8, 17)) + list(range(22, 27)),  # left jaw + left brow
    list(range(17, 20)) + list(range(27, 31)) + [8],  # right brow + nose bridge + chin
    list(range(24, 27)) + list(range(27, 31)) + [8],  # left brow + nose bridge + chin
    list(range(27, 36)),  # nose
]


FOREHEAD = 0.5  # the extended hull's lift of the brows, in brow-to-nose-tip distances


def _extended(pts: np.ndarray, forehead: float = FOREHEAD) -> np.ndarray:
    """Push the brows up by `forehead` brow-to-nose-tip distances, to cover the forehead."""
    pts = pts.copy()
    lift = (pts[30] - pts[17:27].mean(0)) * forehead
    pts[17:27] -= lift
    return pts


def landmark_mask(
    landmarks: np.ndarray, size: int, kind: str = "hull", forehead: float = FOREHEAD
) -> np.ndarray:
    """Float32 mask in [0, 1] of shape (size, size) from 68 landmarks in crop coordinates;
    `forehead`: how high the `extended` kind reaches (see _extended)."""
    if kind not in MASK_KINDS:
        raise ValueError(f"mask kind must be one of {', '.join(MASK_KINDS)}, not {kind!r}")
    pts = np.asarray(landmarks, dtype=np.float64)
    mask = np.zeros((size, size), dtype=np.float32)
    if kind == "hull":
        parts = [list(range(68))]
    elif kind == "extended":
        pts = _extended(pts, forehead)
        parts = [list(range(68))]
    else:
        parts = _COMPONENTS
    for idx in parts:
        hull = cv2.convexHull(np.round(pts[idx] * 16).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1.0, lineType=cv2.LINE_AA, shift=4)
    return mask


def region_mask(landmarks: np.ndarray, size: int, region: str) -> np.ndarray:
    """Mask of the eyes (with brows' lower edge) or mouth, for loss multipliers."""
    pts = np.asarray(landmarks, dtype=np.float64)
    groups = {"eyes": [list(range(36, 42)), list(range(42, 48))], "mouth": [list(range(48, 60))]}
    if region not in groups:
        raise ValueError(f"region must be eyes or mouth, not {region!r}")
    mask = np.zeros((size, size), dtype=np.float32)
    for idx in groups[region]:
        part = pts[idx]
        centre = part.mean(0)
        part = centre + (part - centre) * 1.6  # a margin around the eye/lip contour
        hull = cv2.convexHull(np.round(part * 16).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1.0, lineType=cv2.LINE_AA, shift=4)
    return mask
