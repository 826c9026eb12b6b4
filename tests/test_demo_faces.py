"""Tests for the demo's faces: identity B is another person to dlib, expressions move the
landmarks where asked, expression clips are deterministic and cheap, and render_clip takes one
face image per frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceswap.config import from_dict
from faceswap.demo import faces
from faceswap.demo.faces import (
    Colouring,
    ExpressionClip,
    FaceShape,
    astronaut_landmarks,
    expression,
    expression_frames,
    expression_landmarks,
    expression_schedule,
    find_landmarks,
    identity_b,
    identity_b_landmarks,
    identity_distance,
)
from faceswap.errors import BadInput
from faceswap.synthetic import ASTRONAUT_FACE_CENTER, astronaut, render_clip, transform_points

from helpers import read_frames

# identity_distance() of the default identity B is 0.676 (dlib's same-person threshold is 0.6);
# the test leaves a little room for other dlib builds.
B_MIN_DISTANCE = 0.65


@pytest.fixture(scope="module")
def portrait() -> tuple[np.ndarray, np.ndarray]:
    return np.array(astronaut()), astronaut_landmarks()


def test_identity_b_is_another_person_with_the_same_geometry(portrait) -> None:
    a, lm = portrait
    b = identity_b()
    assert b.shape == a.shape and b.dtype == np.uint8
    assert identity_b() is b and not b.flags.writeable  # cached, shared read-only
    assert identity_distance() > B_MIN_DISTANCE
    # The portrait against itself is 0: the measure itself is not what makes B far.
    assert identity_distance(a) < 1e-6

    # The face-shape warp put B's features where it meant to (dlib finds them there), and the
    # face stays where ASTRONAUT_FACE_CENTER says, so both identities share render settings.
    found = find_landmarks(np.array(b))
    target = identity_b_landmarks()
    assert np.linalg.norm(found - target, axis=1).mean() < 2.0
    assert np.linalg.norm(target - lm, axis=1).mean() > 2.0
    assert np.linalg.norm(found.mean(0) - lm.mean(0)) < 3.0


def test_identity_b_hair_is_darker_and_background_untouched(portrait) -> None:
    a, lm = portrait
    b = identity_b()
    hair = faces.hair_mask(a, lm) > 0.5
    crown = (slice(40, 60), slice(200, 240))  # the top of the head, all hair
    assert hair[crown].mean() > 0.95
    assert hair[(slice(0, 10), slice(0, 100))].mean() == 0  # background
    assert hair[(slice(110, 140), slice(205, 245))].mean() == 0  # cheeks and nose
    lab_a = cv2.cvtColor(a, cv2.COLOR_RGB2LAB).astype(float)
    lab_b = cv2.cvtColor(np.array(b), cv2.COLOR_RGB2LAB).astype(float)
    assert lab_b[hair, 0].mean() < lab_a[hair, 0].mean() - 25  # dark brown, not blond
    # Far from the head nothing moved or changed colour (the warp fades out to exactly 0).
    np.testing.assert_array_equal(b[300:], a[300:])


def test_landmark_warp_round_trip_and_locality(portrait) -> None:
    a, lm = portrait
    dst = faces.reshape_face(lm, FaceShape())
    there = faces.landmark_warp(a, lm, dst)
    back = faces.landmark_warp(there, dst, lm)
    face = (slice(80, 180), slice(175, 275))
    # Two bilinear resamplings blur a little; a misplaced warp would leave edges off by pixels.
    assert np.abs(back[face].astype(float) - a[face]).mean() < 4.0
    assert np.abs(there[face].astype(float) - a[face]).mean() > 8.0
    centre, radius = faces.flow_radius(dst)
    flow = faces.warp_flow((512, 512), lm, dst)
    yy, xx = np.mgrid[0:512, 0:512]
    outside = np.hypot(xx - centre[0], yy - centre[1]) >= radius
    assert np.abs(flow[outside]).max() == 0 and np.abs(flow[~outside]).max() > 2


def test_face_shape_and_colouring_are_checked() -> None:
    with pytest.raises(ValueError, match="jaw_width"):
        FaceShape(jaw_width=2.0)
    with pytest.raises(ValueError, match="hair_lab"):
        Colouring(hair_lab=(150.0, 0.0, 0.0))
    with pytest.raises(BadInput, match="unknown key"):
        from_dict(FaceShape, {"jaw": 1.1}, "shape")
    assert from_dict(FaceShape, {"jaw_width": 1.2}, "shape").jaw_width == 1.2


@pytest.mark.parametrize(
    ("kwargs", "moved"),
    [
        # Jaw dropped and brows raised: the lower lip and chin move ~12 px, the brows ~7 px.
        ({"open_mouth": 1.0, "brows": 1.0}, [8, 57, 19, 24]),
        # Frown: the inner brow ends move ~4 px down and together.
        ({"brows": -1.0}, [20, 21, 22, 23]),
    ],
)
def test_expression_moves_landmarks_where_asked(portrait, kwargs, moved) -> None:
    a, lm = portrait
    out = expression(a, lm, **kwargs)
    target = expression_landmarks(lm, **kwargs)
    found = find_landmarks(out)
    assert np.linalg.norm(found[moved] - target[moved], axis=1).max() < 2.5
    # ...and they did move: the targets are far from where they started.
    assert np.linalg.norm(found[moved] - lm[moved], axis=1).min() > 3.0


def test_expression_defaults_keep_the_image_and_bad_values_fail(portrait) -> None:
    a, lm = portrait
    np.testing.assert_array_equal(expression(a, lm), a)
    np.testing.assert_array_equal(expression_landmarks(lm), lm)
    with pytest.raises(ValueError):
        expression(a, lm, open_mouth=1.5)
    with pytest.raises(ValueError):
        expression(a, lm, brows=-2.0)


def test_expression_schedule_is_seeded_smooth_and_in_range() -> None:
    p = expression_schedule(200, seed=3)
    assert p.shape == (200, 3)
    np.testing.assert_array_equal(p, expression_schedule(200, seed=3))
    assert not np.array_equal(p, expression_schedule(200, seed=4))
    assert p[:, :2].min() >= 0 and p[:, :2].max() <= 1 and np.abs(p[:, 2]).max() <= 1
    # No jumps: per frame at most amplitude * 2 pi / shortest period (16 frames mouth, 48 else).
    step = np.abs(np.diff(p, axis=0)).max(0)
    assert step[0] < 0.35 * 2 * np.pi / 48 and step[2] < 0.6 * 2 * np.pi / 48
    assert step[1] < 1.2 * 2 * np.pi / 16
    assert 0.2 < (p[:, 1] > 0).mean() < 0.8  # the mouth opens and closes
    assert np.ptp(p[:, 0]) > 0.3 and np.ptp(p[:, 2]) > 0.3


def test_expression_clip_frames_match_exact_expressions(portrait) -> None:
    a, lm = portrait
    clip = ExpressionClip(a, lm, 40, seed=5)
    assert len(clip) == 40 and clip.flows.shape[0] == 4  # the bank: one flow per unit move
    again = ExpressionClip(a, lm, 40, seed=5)
    i = int(np.argmax(clip.params[:, 1]))  # the frame with the mouth most open
    assert clip.params[i, 1] > 0.3
    frame = clip(i)
    assert frame.shape == a.shape and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, again(i))
    smile, open_mouth, brows = (float(v) for v in clip.params[i])
    np.testing.assert_allclose(
        clip.landmarks(i), expression_landmarks(lm, smile, open_mouth, brows), atol=1e-9
    )
    # Blending the bank's flows is close to the full warp: a pixel off at the mouth's edges.
    exact = expression(a, lm, smile, open_mouth, brows)
    assert np.abs(frame.astype(float) - exact).mean() < 0.5
    assert np.abs(frame.astype(float) - a).mean() > 0.2  # and the face did change

    # expression_frames knows the portrait's landmarks (and identity B's) without detecting.
    known = expression_frames(a, 40, seed=5)
    np.testing.assert_array_equal(known(i), frame)


def test_render_clip_takes_one_face_per_frame(tmp_path, portrait) -> None:
    a, lm = portrait
    dark, light = np.full_like(a, 20), np.full_like(a, 230)
    faces_seq = [dark, light, dark, light]
    size = (160, 120)
    mats = render_clip(tmp_path / "seq.mp4", 4, frame_size=size, base_scale=0.4, face_rgb=faces_seq)
    frames = read_frames(tmp_path / "seq.mp4")
    assert len(mats) == len(frames) == 4
    x, y = transform_points(mats[0], np.array([ASTRONAUT_FACE_CENTER]))[0].astype(int)
    level = [f[y - 2 : y + 3, x - 2 : x + 3].mean() for f in frames]
    assert level[0] < 40 and level[2] < 40 and level[1] > 210 and level[3] > 210

    # A callable (an ExpressionClip) is asked for each frame in order.
    asked: list[int] = []

    def face_at(i: int) -> np.ndarray:
        asked.append(i)
        return a

    render_clip(tmp_path / "call.mp4", 5, frame_size=size, base_scale=0.4, face_rgb=face_at)
    assert asked == [0, 1, 2, 3, 4] and len(read_frames(tmp_path / "call.mp4")) == 5

    # A wrong number of faces fails before any file is made.
    with pytest.raises(ValueError, match="face_rgb has 4 images"):
        render_clip(tmp_path / "bad.mp4", 5, frame_size=size, face_rgb=faces_seq)
    assert not (tmp_path / "bad.mp4").exists()
    with pytest.raises(ValueError, match="face_rgb has 3 frames"):
        render_clip(tmp_path / "bad.mp4", 5, frame_size=size, face_rgb=ExpressionClip(a, lm, 3))
    assert not (tmp_path / "bad.mp4").exists()

    # One image (the old way) still means that image in every frame.
    render_clip(tmp_path / "one.mp4", 3, frame_size=size, base_scale=0.4, face_rgb=a)
    assert len(read_frames(tmp_path / "one.mp4")) == 3
