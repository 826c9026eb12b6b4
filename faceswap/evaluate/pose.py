"""Pose and expression error between each input face and its swap.

Both come from landmarks that one aligner found on both faces (see analyze.py), so aligner bias
largely cancels. Angles are measured in the aligned crop: the alignment has already removed
most of the roll, so a roll error means the swap tilted the face inside the crop.
"""

from __future__ import annotations

import numpy as np

from faceswap.evaluate.metrics import summarize

MOUTH = slice(48, 68)
RIGHT_EYE = slice(36, 42)  # the subject's right eye: on the image's left
LEFT_EYE = slice(42, 48)


def pose_error(pose_in: np.ndarray, pose_swap: np.ndarray) -> np.ndarray:
    """(N, 3) absolute yaw, pitch, roll differences in degrees (wrapped into [0, 180])."""
    d = np.abs(np.asarray(pose_in, np.float64) - np.asarray(pose_swap, np.float64))
    return np.minimum(d, 360.0 - d)


def normalize_landmarks(lms: np.ndarray) -> np.ndarray:
    """(N, 68, 2) -> the same points in eye coordinates: the eye centres at (-0.5, 0) and
    (0.5, 0), so units are inter-ocular distances and position, size and roll are gone."""
    lms = np.asarray(lms, np.float64)
    right = lms[:, RIGHT_EYE].mean(1)  # (N, 2)
    left = lms[:, LEFT_EYE].mean(1)
    mid = (right + left) / 2
    axis = left - right  # (N, 2), length = inter-ocular distance
    iod = np.maximum(np.linalg.norm(axis, axis=1), 1e-9)
    c, s = axis[:, 0] / iod, axis[:, 1] / iod
    rel = lms - mid[:, None]  # (N, 68, 2)
    # rotate by -angle and scale by 1/iod: x' = (c x + s y), y' = (-s x + c y)
    x = (c[:, None] * rel[..., 0] + s[:, None] * rel[..., 1]) / iod[:, None]
    y = (-s[:, None] * rel[..., 0] + c[:, None] * rel[..., 1]) / iod[:, None]
    return np.stack([x, y], -1)


def _shape(pts: np.ndarray) -> np.ndarray:
    """(N, K, 2) -> each part centred on its own mean (its shape, not its place)."""
    return pts - pts.mean(1, keepdims=True)


def expression_error(lm_in: np.ndarray, lm_swap: np.ndarray) -> dict[str, np.ndarray]:
    """Per face, the mean distance between the input's and the swap's mouth points and eye
    points after `normalize_landmarks`, each part centred on itself: how differently the mouth
    and eyes are opened and shaped, in inter-ocular distances (a wide-open vs closed mouth is
    about 0.1). Identity differences in mouth and eye shape add a floor to these values."""
    a, b = normalize_landmarks(lm_in), normalize_landmarks(lm_swap)
    mouth = np.linalg.norm(_shape(a[:, MOUTH]) - _shape(b[:, MOUTH]), axis=-1).mean(1)
    eyes = np.concatenate([
        np.linalg.norm(_shape(a[:, part]) - _shape(b[:, part]), axis=-1)
        for part in (RIGHT_EYE, LEFT_EYE)
    ], axis=1).mean(1)  # fmt: skip
    return {"mouth": mouth, "eyes": eyes}


def pose_summary(pose_in: np.ndarray, pose_swap: np.ndarray) -> dict[str, object]:
    err = pose_error(pose_in, pose_swap)
    return {"faces": int(len(err)), "yaw": summarize(err[:, 0]), "pitch": summarize(err[:, 1]),
            "roll": summarize(err[:, 2])}  # fmt: skip


def expression_summary(lm_in: np.ndarray, lm_swap: np.ndarray) -> dict[str, object]:
    e = expression_error(lm_in, lm_swap)
    return {"faces": int(len(e["mouth"])), "mouth": summarize(e["mouth"]),
            "eyes": summarize(e["eyes"])}  # fmt: skip
