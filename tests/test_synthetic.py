"""Tests for faceswap.synthetic: known motion, exact source-to-frame matrices, readable clips."""

from __future__ import annotations

import numpy as np
import pytest

from faceswap.synthetic import (
    ASTRONAUT_FACE_CENTER,
    Motion,
    astronaut,
    head_motion,
    recolor_identity,
    render_clip,
    render_frame,
    transform_points,
)

from helpers import read_frames


def _as_array(motion: list[Motion]) -> np.ndarray:
    return np.array([[m.dx, m.dy, m.angle, m.scale] for m in motion])


def test_head_motion_deterministic_per_seed() -> None:
    a = head_motion(48, seed=3)
    assert a == head_motion(48, seed=3)
    assert a != head_motion(48, seed=4)
    assert len(a) == 48 and all(isinstance(m, Motion) for m in a)


def test_head_motion_is_smooth_and_bounded() -> None:
    arr = _as_array(head_motion(200, seed=0))
    step = np.abs(np.diff(arr, axis=0))
    assert step[:, :2].max() < 5.0  # px per frame
    assert step[:, 2].max() < 2.0  # degrees per frame
    assert step[:, 3].max() < 0.02
    assert np.abs(arr[:, :2]).max() <= 40.0
    assert np.abs(arr[:, 2]).max() <= 12.0
    assert arr[:, 3].min() >= 0.9 and arr[:, 3].max() <= 1.1
    # It actually moves: a static "motion" would pass the smoothness checks trivially.
    assert np.ptp(arr[:, 0]) > 10.0 and np.ptp(arr[:, 2]) > 3.0


@pytest.mark.parametrize(
    "motion",
    [Motion(0.0, 0.0, 0.0, 1.0), Motion(17.5, -9.25, 11.0, 1.08), Motion(-30.0, 22.0, -8.0, 0.9)],
)
def test_render_frame_puts_face_center_where_asked(motion: Motion) -> None:
    size = (320, 240)
    frame, m = render_frame(
        astronaut(), motion, size, face_center=ASTRONAUT_FACE_CENTER, base_scale=0.75
    )
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    assert m.shape == (2, 3) and m.dtype == np.float64
    got = transform_points(m, np.array([ASTRONAUT_FACE_CENTER]))[0]
    want = np.array([(320 - 1) / 2 + motion.dx, (240 - 1) / 2 + motion.dy])
    assert np.linalg.norm(got - want) < 0.5


@pytest.mark.parametrize(
    ("motion", "base_scale"),
    [(Motion(0.0, 0.0, 0.0, 1.0), 1.0), (Motion(12.3, -7.6, 9.0, 1.05), 2.0)],
)
def test_render_frame_matrix_matches_pixels(motion: Motion, base_scale: float) -> None:
    size = (400, 300)
    marker = (200.0, 100.0)  # on the face, well inside the frame for these motions
    marked = astronaut().copy()
    marked[int(marker[1]), int(marker[0])] = 255
    kwargs = {"face_center": ASTRONAUT_FACE_CENTER, "base_scale": base_scale}
    plain, m = render_frame(astronaut(), motion, size, **kwargs)
    bright, m2 = render_frame(marked, motion, size, **kwargs)
    np.testing.assert_array_equal(m, m2)

    # The marker is the only difference; its weighted centroid is where the matrix says it goes.
    diff = np.abs(bright.astype(np.float64) - plain.astype(np.float64)).sum(axis=2)
    assert diff.max() > 50
    ys, xs = np.nonzero(diff)
    w = diff[ys, xs]
    centroid = np.array([np.sum(xs * w), np.sum(ys * w)]) / w.sum()
    want = transform_points(m, np.array([marker]))[0]
    assert np.linalg.norm(centroid - want) < 1.0


def test_render_frame_uses_given_background() -> None:
    size = (320, 240)
    bg = np.zeros((240, 320, 3), np.uint8)
    bg[:] = (10, 200, 30)
    motion = Motion(0.0, 0.0, 0.0, 1.0)
    frame, _ = render_frame(
        astronaut(), motion, size, face_center=ASTRONAUT_FACE_CENTER, base_scale=0.25, background=bg
    )
    # At scale 0.25 the 512 px source covers 128 px around the centre; corners are background.
    np.testing.assert_array_equal(frame[0, 0], (10, 200, 30))
    np.testing.assert_array_equal(frame[-1, -1], (10, 200, 30))
    with pytest.raises(ValueError):
        render_frame(
            astronaut(),
            motion,
            size,
            face_center=ASTRONAUT_FACE_CENTER,
            base_scale=0.25,
            background=bg[:100],
        )


def test_transform_points_shape_and_values() -> None:
    m = np.array([[2.0, 0.0, 5.0], [0.0, 3.0, -1.0]])
    out = transform_points(m, np.array([[1.0, 1.0], [0.0, 2.0]]))
    np.testing.assert_allclose(out, [[7.0, 2.0], [5.0, 5.0]])
    with pytest.raises(ValueError):
        transform_points(m, np.zeros(2))


def test_render_clip_writes_readable_video(tmp_path) -> None:
    path = tmp_path / "clips" / "astronaut.mp4"
    matrices = render_clip(path, n_frames=12, frame_size=(320, 240), base_scale=0.5, seed=2)
    assert len(matrices) == 12 and all(m.shape == (2, 3) for m in matrices)

    frames = read_frames(path)
    assert len(frames) == 12
    assert all(f.shape == (240, 320, 3) for f in frames)

    # The matrices are the ones for head_motion(seed=2): the face centre follows that motion.
    centers = np.array(
        [transform_points(m, np.array([ASTRONAUT_FACE_CENTER]))[0] for m in matrices]
    )
    expected = np.array([[159.5 + mo.dx, 119.5 + mo.dy] for mo in head_motion(12, seed=2)])
    np.testing.assert_allclose(centers, expected, atol=1e-9)


def test_render_clip_rejects_mismatched_motion(tmp_path) -> None:
    with pytest.raises(ValueError):
        render_clip(tmp_path / "x.mp4", n_frames=5, motion=head_motion(4), frame_size=(64, 48))


def test_recolor_identity_changes_colour_not_shape() -> None:
    src = astronaut()
    out = recolor_identity(src)
    assert out.shape == src.shape and out.dtype == np.uint8
    mean_in = src.reshape(-1, 3).mean(axis=0)
    mean_out = out.reshape(-1, 3).mean(axis=0)
    assert np.abs(mean_out - mean_in).max() > 5.0
    np.testing.assert_array_equal(out, recolor_identity(src))  # deterministic
    assert not np.array_equal(out, recolor_identity(src, seed=2))
