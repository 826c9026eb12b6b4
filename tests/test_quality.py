"""Per-face measurements: head pose recovers known angles; blur and jitter order faces right."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceswap.extract import quality
from faceswap.synthetic import astronaut


def _project(yaw: float, pitch: float, roll: float, size=(1280, 720), depth=2500.0) -> np.ndarray:
    """68 landmarks whose pose points are the generic head seen at a known pose."""
    # the inverse of head_pose's convention: yaw/roll signs flipped back to camera axes
    rx = cv2.Rodrigues(np.array([np.radians(pitch), 0.0, 0.0]))[0]
    ry = cv2.Rodrigues(np.array([0.0, np.radians(-yaw), 0.0]))[0]
    rz = cv2.Rodrigues(np.array([0.0, 0.0, np.radians(-roll)]))[0]
    rot = rz @ ry @ rx
    w, h = size
    f = float(max(w, h))
    cam = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    pts, _ = cv2.projectPoints(quality._POSE_MODEL, cv2.Rodrigues(rot)[0],
                               np.array([30.0, -20.0, depth]), cam, None)  # fmt: skip
    lms = np.zeros((68, 2))
    lms[quality._POSE_POINTS] = pts.reshape(-1, 2)
    return lms


@pytest.mark.parametrize("yaw", [-60, -30, 0, 25, 55])
@pytest.mark.parametrize("pitch", [-25, 0, 20])
@pytest.mark.parametrize("roll", [-30, 0, 15])
def test_head_pose_recovers_known_angles_without_mirror_flips(yaw, pitch, roll):
    got = quality.head_pose(_project(yaw, pitch, roll), (1280, 720))
    np.testing.assert_allclose(got, (yaw, pitch, roll), atol=1.0)


def test_blur_score_is_lower_for_a_blurred_face():
    face = cv2.resize(astronaut()[60:200, 150:290, ::-1], (256, 256))
    sharp = quality.blur_score(face)
    soft = quality.blur_score(cv2.GaussianBlur(face, (0, 0), 3))
    assert soft < 0.3 * sharp
    # comparable across crop sizes: the score is taken at a fixed 128 px
    assert abs(quality.blur_score(cv2.resize(face, (512, 512))) - sharp) < 0.5 * sharp


def test_landmark_jitter_is_zero_for_identical_points_and_scale_free():
    pts = _project(0, 0, 0)
    pts[36:48] = np.random.default_rng(0).uniform(300, 400, (12, 2))
    assert quality.landmark_jitter(pts, pts) == 0
    moved = pts + 2.0
    assert quality.landmark_jitter(pts * 3, moved * 3) == pytest.approx(
        quality.landmark_jitter(pts, moved)
    )
