"""Alignment math: landmarks -> similarity transform -> aligned crop, and back.

All functions are pure. A face's alignment is one 2x3 matrix `M` that maps source-frame pixel
coordinates to aligned-crop pixel coordinates (crop of side `size`, given `centering`);
`cv2.warpAffine(frame, M, (size, size))` makes the crop and `invert(M)` puts it back.
"""

from __future__ import annotations

import numpy as np

# Mean positions of iBUG-68 points 17..67 (brows, nose, eyes, mouth) in a unit square, from
# dlib's get_face_chip_details (Boost Software License). The jaw line (0..16) is left out of
# the fit on purpose: it moves with pose and mouth opening and would bias the transform.
_MEAN_X = [
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
]  # fmt: skip
_MEAN_Y = [
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
]  # fmt: skip
MEAN_FACE = np.stack([_MEAN_X, _MEAN_Y], axis=1)  # (51, 2)
FIT_POINTS = slice(17, 68)

# How the unit-square template sits in the crop, per centering: crop = size * (scale * (t -
# centre) + 0.5). `legacy` is the classic deepfakes crop (template spans the middle 62.5%);
# `face` zooms out and moves up to take in the forehead and chin; `head` takes in the whole
# head with hair and ears, for models trained on full heads.
CENTERING = {
    "legacy": (0.625, (0.5, 0.5)),
    "face": (0.56, (0.49, 0.42)),
    "head": (0.42, (0.49, 0.36)),
}


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, shift) taking src to dst.

    src, dst: (N, 2). Returns the 2x3 matrix. Umeyama (1991), with the reflection guard.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = src.shape[0]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    cov = dc.T @ sc / n
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(cov) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    var_s = (sc**2).sum() / n
    scale = (d * sign).sum() / var_s if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def crop_matrix(landmarks: np.ndarray, size: int, centering: str = "face") -> np.ndarray:
    """2x3 matrix mapping source-frame pixels to the aligned crop of side `size`."""
    scale, (cx, cy) = CENTERING[centering]
    to_unit = umeyama(np.asarray(landmarks)[FIT_POINTS], MEAN_FACE)
    # unit template -> crop pixels: p = size * (scale * (t - c) + 0.5)
    a = np.array([[size * scale, 0.0, size * (0.5 - scale * cx)],
                  [0.0, size * scale, size * (0.5 - scale * cy)]])  # fmt: skip
    return compose(a, to_unit)


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine that applies b first, then a."""
    a3 = np.vstack([a, [0.0, 0.0, 1.0]])
    b3 = np.vstack([b, [0.0, 0.0, 1.0]])
    return (a3 @ b3)[:2]


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    m3 = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(m3)[:2]


def transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to (N, 2) points."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]


def rescale_matrix(m: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """The same alignment for a crop of another size (e.g. a 256 px face set fed to a 64 px model)."""
    return np.asarray(m, dtype=np.float64) * (to_size / from_size)


def matrix_scale(m: np.ndarray) -> float:
    """Uniform scale of a similarity matrix (crop pixels per source pixel)."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(m)[:, :2]))))


def template_landmarks(size: int, centering: str = "face") -> np.ndarray:
    """Where the 51 fitted template points land in the crop: (51, 2)."""
    scale, (cx, cy) = CENTERING[centering]
    return size * (scale * (MEAN_FACE - [cx, cy]) + 0.5)


def alignment_residual(landmarks: np.ndarray, m: np.ndarray, size: int, centering: str) -> float:
    """Mean distance of the aligned landmarks to the template, as a fraction of the crop side.

    A well-aligned frontal face scores ~0.01-0.03; a misdetected or badly landmarked face is far
    from the mean face shape and scores high, which makes this the "misaligned" outlier signal.
    """
    aligned = transform_points(m, np.asarray(landmarks)[FIT_POINTS])
    err = np.linalg.norm(aligned - template_landmarks(size, centering), axis=1).mean()
    return float(err / size)
