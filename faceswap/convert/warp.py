"""Crop a face out of a frame for the model and put the swapped face back: pure geometry.

A face's alignment is the 2x3 matrix `M` from frame pixels to the pixels of its aligned crop
(`faceswap.extract.alignment`). The model was trained on crops of the training face set's size
`S` resized to its resolution `R`, so convert does the same: warp at `S`, resize to `R`. The
matrix of that resized crop is `resize_matrix(S, R) @ M`; its inverse puts any (R, R) image
(the swapped face, its mask) back where the face is in the frame. Only the frame region the
crop covers is warped, not the whole frame: a few thousand pixels instead of a million.

Pixel coordinates follow OpenCV: x right, y down, integer values at pixel centres.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceswap.extract.alignment import compose, crop_matrix, invert


def resize_matrix(from_size: int, to_size: int) -> np.ndarray:
    """2x3 map from pixels of a (from_size)^2 image to the same points after cv2.resize to
    (to_size)^2: pixel centres stay pixel centres, p' = (p + 0.5) * s - 0.5."""
    s = to_size / from_size
    return np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5]])


def face_matrices(
    landmarks: np.ndarray, crop_size: int, resolution: int, centering: str
) -> tuple[np.ndarray, np.ndarray]:
    """(M_crop, M_model): frame -> aligned crop of side crop_size, and frame -> that crop
    resized to the model resolution."""
    m = crop_matrix(landmarks, crop_size, centering)
    if crop_size == resolution:
        return m, m
    return m, compose(resize_matrix(crop_size, resolution), m)


def crop_face(frame: np.ndarray, m_crop: np.ndarray, crop_size: int, resolution: int) -> np.ndarray:
    """The (R, R, 3) model input cut from `frame` as training saw it: warped at the face
    set's size with extract's flags, then resized like FaceDataset does."""
    # past the frame's edge: extract's neutral grey (a mirror image reads as more face)
    crop = cv2.warpAffine(frame, m_crop, (crop_size, crop_size), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))  # fmt: skip
    if crop_size == resolution:
        return crop
    interp = cv2.INTER_AREA if resolution < crop_size else cv2.INTER_CUBIC
    return cv2.resize(crop, (resolution, resolution), interpolation=interp)


def paste_box(
    m: np.ndarray,
    size: int,
    frame_w: int,
    frame_h: int,
    pad: int = 2,
    rect: tuple[int, int, int, int] | None = None,
) -> tuple[int, int, int, int] | None:
    """Frame region (x0, y0, x1, y1), end exclusive, covered by a (size)^2 crop with matrix
    `m` (or by the part `rect` = (x, y, w, h) of it, as cv2.boundingRect gives), widened by
    `pad` px and clipped to the frame; None if it lies outside the frame."""
    x, y, w, h = rect if rect is not None else (0, 0, size, size)
    corners = np.array([[x - 0.5, y - 0.5], [x + w - 0.5, y - 0.5], [x + w - 0.5, y + h - 0.5],
                        [x - 0.5, y + h - 0.5]])  # fmt: skip
    inv = invert(m)
    pts = corners @ inv[:, :2].T + inv[:, 2]  # (4, 2) in frame pixels
    x0 = max(0, int(np.floor(pts[:, 0].min())) - pad)
    y0 = max(0, int(np.floor(pts[:, 1].min())) - pad)
    x1 = min(frame_w, int(np.ceil(pts[:, 0].max())) + pad + 1)
    y1 = min(frame_h, int(np.ceil(pts[:, 1].max())) + pad + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def unwarp(
    img: np.ndarray,
    m: np.ndarray,
    box: tuple[int, int, int, int],
    flags: int = cv2.INTER_LINEAR,
    border: int = cv2.BORDER_REPLICATE,
) -> np.ndarray:
    """Put a crop `img` (matrix `m`: frame -> crop) back into the frame region `box`: the
    (y1 - y0, x1 - x0[, C]) image of what the crop shows at those frame pixels."""
    x0, y0, x1, y1 = box
    # frame -> crop, with the box's origin moved to (0, 0): crop pixel for box pixel q is
    # m @ (q + origin), and warpAffine with WARP_INVERSE_MAP samples img exactly there
    shifted = m.copy()
    shifted[:, 2] = m[:, :2] @ np.array([x0, y0], dtype=np.float64) + m[:, 2]
    return cv2.warpAffine(img, shifted, (x1 - x0, y1 - y0), flags=flags | cv2.WARP_INVERSE_MAP,
                          borderMode=border)  # fmt: skip
