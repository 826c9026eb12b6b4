"""Convert geometry: crop and put back (round trips onto the landmarks), masks, smoothing."""

import cv2
import numpy as np
import pytest

from faceswap.convert.config import ConvertConfig
from faceswap.convert.masks import raw_mask, shape_mask, work_size
from faceswap.convert.pipeline import FaceJob, composite
from faceswap.convert.smoothing import TrackSmoother, eye_distance, savgol
from faceswap.convert.warp import crop_face, face_matrices, paste_box, resize_matrix, unwarp
from faceswap.extract import alignment as al
from faceswap.synthetic import head_motion

from helpers import face_landmarks


def _face(scale=220.0, angle=0.0, shift=(400.0, 300.0)):
    return face_landmarks(scale, angle, shift)


def _blobs(shape, points, sigma) -> np.ndarray:
    """Float image with a Gaussian blob at each (x, y) point (pixel centres at integers)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    img = np.zeros(shape, np.float64)
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return img


def _centroid(img, x, y, r) -> np.ndarray:
    x0, y0 = int(max(0, x - r)), int(max(0, y - r))
    win = img[y0 : int(y + r) + 1, x0 : int(x + r) + 1].astype(np.float64)
    yy, xx = np.mgrid[: win.shape[0], : win.shape[1]]
    w = win.sum()
    return np.array([(xx * win).sum() / w + x0, (yy * win).sum() / w + y0])


def test_resize_matrix_follows_cv2_resize():
    p = np.array([101.3, 77.6])
    img = _blobs((256, 256), [p], 6.0).astype(np.float32)
    small = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)
    expect = al.transform_points(resize_matrix(256, 64), p[None])[0]
    np.testing.assert_allclose(_centroid(small, *expect, 6), expect, atol=0.03)
    big = cv2.resize(small, (128, 128), interpolation=cv2.INTER_CUBIC)
    expect2 = al.transform_points(resize_matrix(64, 128), expect[None])[0]
    np.testing.assert_allclose(_centroid(big, *expect2, 10), expect2, atol=0.05)


POINTS = [36, 45, 30, 48, 54]  # outer eye corners, nose tip, mouth corners: far apart


@pytest.mark.parametrize(("crop_size", "resolution", "angle"),
                         [(64, 64, 0.0), (256, 64, 20.0), (64, 128, -35.0)])  # fmt: skip
def test_a_face_put_back_lands_on_its_landmarks(crop_size, resolution, angle):
    lms = _face(220, angle, (403.3, 297.8))
    # a frame with a blob on five landmarks -> crop for the model -> back into the frame
    frame = _blobs((600, 800), lms[POINTS], 7.0)
    frame8 = np.repeat((frame * 250).clip(0, 255).astype(np.uint8)[..., None], 3, 2)
    m_crop, m_model = face_matrices(lms, crop_size, resolution, "face")
    crop = crop_face(frame8, m_crop, crop_size, resolution)
    assert crop.shape == (resolution, resolution, 3)
    box = paste_box(m_model, resolution, 800, 600)
    x0, y0, x1, y1 = box
    assert (lms[:, 0].min() > x0 and lms[:, 0].max() < x1 and lms[:, 1].min() > y0
            and lms[:, 1].max() < y1)  # fmt: skip
    back = unwarp(crop[..., 0].astype(np.float32), m_model, box, cv2.INTER_CUBIC)
    for p in lms[POINTS]:
        got = _centroid(back, p[0] - x0, p[1] - y0, 14) + [x0, y0]
        np.testing.assert_allclose(got, p, atol=0.35)


def test_put_back_covers_the_crop_and_nothing_else():
    lms = _face(150, 10, (200.0, 150.0))
    _, m = face_matrices(lms, 64, 64, "face")
    box = paste_box(m, 64, 400, 300)
    ones = unwarp(np.ones((64, 64), np.float32), m, box, cv2.INTER_LINEAR, cv2.BORDER_CONSTANT)
    side = 64 / al.matrix_scale(m)  # the crop's side in frame pixels
    assert abs(ones.sum() - side**2) < 0.02 * side**2
    # a box clipped at the frame edge, and a face entirely outside
    assert paste_box(m, 64, 180, 120)[2:] == (180, 120)
    _, far = face_matrices(_face(100, 0, (-500.0, -500.0)), 64, 64, "face")
    assert paste_box(far, 64, 400, 300) is None


def test_composite_changes_the_face_only():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)
    lms = _face(220, 15, (400.0, 300.0))
    _, m = face_matrices(lms, 64, 64, "face")
    job = FaceJob(lms, m, crop=np.zeros((64, 64, 3), np.uint8),
                  swapped=np.full((64, 64, 3), 200.0, np.float32))  # fmt: skip
    cfg = ConvertConfig(mask="hull", color="none", erode=0.0, feather=0.05)
    out = composite(frame.copy(), [job], cfg, 64)
    x0, y0, x1, y1 = paste_box(m, 64, 800, 600)
    outside = np.ones((600, 800), bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], frame[outside])
    nose = lms[30].round().astype(int)
    assert np.abs(out[nose[1], nose[0]].astype(int) - 200).max() <= 1
    corner = np.round(al.transform_points(al.invert(m), [[2.0, 2.0]])[0]).astype(int)
    assert np.array_equal(out[corner[1], corner[0]], frame[corner[1], corner[0]])


def _edge_radius(alpha, level=0.5) -> float:
    """Radius where a radial profile through the centre crosses `level`."""
    row = alpha[alpha.shape[0] // 2, alpha.shape[1] // 2 :]
    i = int(np.argmax(row < level))
    return i - 1 + (row[i - 1] - level) / (row[i - 1] - row[i])


def test_erosion_and_feather_are_fractions_of_the_crop():
    size = 256
    disk = np.zeros((size, size), np.float32)
    cv2.circle(disk, (128, 128), 80, 1.0, -1)
    base = _edge_radius(shape_mask(disk, 0.0, 0.0))
    assert abs(base - 80.5) < 1.0
    assert abs(_edge_radius(shape_mask(disk, 0.05, 0.0)) - (base - 0.05 * size)) < 1.0
    assert abs(_edge_radius(shape_mask(disk, -0.05, 0.0)) - (base + 0.05 * size)) < 1.0
    soft = shape_mask(disk, 0.0, 0.1)
    ramp = _edge_radius(soft, 0.02) - _edge_radius(soft, 0.98)
    assert 0.8 * 0.1 * size < ramp < 1.05 * 0.1 * size  # smoothstep: 0.02..0.98 is ~90%
    # a mask that fills the crop still fades out before the crop's border: no square seam
    full = shape_mask(np.ones((size, size), np.float32), 0.0, 0.05)
    assert full[0].max() < 0.05 and full[:, -1].max() < 0.05 and full[128, 128] == 1.0


def test_mask_modes():
    lms = al.transform_points(face_matrices(_face(), 64, 64, "face")[1], _face())
    learned = np.zeros((64, 64), np.float32)
    learned[:, :32] = 1.0  # left half only
    hull = raw_mask("hull", learned, lms, 64)
    prod = raw_mask("product", learned, lms, 64)
    only = raw_mask("learned", learned, lms, 64)
    assert hull.shape == (work_size(64),) * 2 == (256, 256)
    assert 0.2 < hull.mean() < 0.7
    assert prod[:, 140:].max() == 0 and abs(prod.sum() - (hull * only).sum()) < 1e-3
    # a model without a learned mask falls back to the hull
    assert np.array_equal(raw_mask("learned", None, lms, 64), hull)


# ---- smoothing ----------------------------------------------------------------------------


def _track(n, seed=5, fps=24.0):
    """True landmarks of a face moving like the generated clips' heads: (n, 68, 2)."""
    base = _face(120, 0, (320.0, 180.0))
    c = base.mean(0)
    out = []
    for mo in head_motion(n, seed=seed, max_shift=40, max_angle=12):
        m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), mo.angle, mo.scale)
        m[:, 2] += (mo.dx, mo.dy)
        out.append(al.transform_points(m, base))
    return np.array(out)


def _corners(lms) -> np.ndarray:
    """Where the crop's corners sit in the frame, per frame: what a viewer sees move."""
    sq = np.array([[0.0, 0.0], [64.0, 0.0], [0.0, 64.0]])
    return np.array([al.transform_points(al.invert(al.crop_matrix(lm, 64, "face")), sq)
                     for lm in lms])  # fmt: skip


def _jitter(series) -> float:
    """RMS second difference over frames (px): zero for steady motion."""
    d2 = series[2:] - 2 * series[1:-1] + series[:-2]
    return float(np.sqrt((d2**2).sum(-1).mean()))


def _smooth(lms, k, fps=24.0):
    s = TrackSmoother(k)
    out = []
    for i, lm in enumerate(lms):
        out += s.push(i, i, [lm])
    out += s.flush()
    assert [f for f, _, _ in out] == list(range(len(lms)))  # every frame, in order
    return np.array([faces[0][1] for _, _, faces in out])


def test_smoothing_removes_landmark_jitter_of_a_moving_face():
    truth = _track(120)
    noise = np.random.default_rng(1).normal(0, 0.03 * eye_distance(truth[0]), truth.shape)
    noisy = truth + noise
    smooth = _smooth(noisy, k=6)
    tc, nc, sc = _corners(truth), _corners(noisy), _corners(smooth)
    assert _jitter(sc) < 0.25 * _jitter(nc)
    err = lambda a: float(np.sqrt(((a - tc) ** 2).sum(-1).mean()))  # noqa: E731
    assert err(sc) < 0.6 * err(nc)  # closer to the true motion, not only steadier
    np.testing.assert_allclose(smooth, savgol(noisy, 6), atol=1e-9)  # streaming == batch


@pytest.mark.parametrize("accel", [0.0, 0.4])
def test_smoothing_does_not_lag_fast_motion(accel):
    # 4 eye distances per second (a quick head turn), speeding up with accel
    base = _face(120, 0, (100.0, 180.0))
    iod = eye_distance(base)
    t = np.arange(48)
    dx = 4 * iod * t / 24 + accel * iod * t**2 / 24
    lms = base[None] + np.stack([dx, np.zeros_like(dx)], -1)[:, None]
    np.testing.assert_allclose(_smooth(lms, k=6), lms, atol=1e-6)


def test_tracks_are_smoothed_apart_and_cuts_restart_them():
    a, b = _track(30, seed=1), _track(30, seed=2) + [300.0, 0.0]
    s = TrackSmoother(3)
    out = []
    for i in range(30):
        faces = [a[i], b[i]] if i < 20 else [a[i] + [0.0, 400.0], b[i]]  # a cuts away at 20
        out += s.push(i, None, faces)
    out += s.flush()
    ids = [[tid for tid, _ in faces] for _, _, faces in out]
    assert all(x == ids[0] for x in ids[:20]) and ids[0][0] != ids[0][1]
    assert ids[25][0] not in ids[0] and ids[25][1] == ids[0][1]
    # the face after the cut is not pulled towards where the other track was
    np.testing.assert_allclose(out[20][2][0][1].mean(0), (a[20] + [0, 400]).mean(0), atol=2.0)
    assert [f for f in _smooth(a, 0)[:3].reshape(3, -1)[:, 0]] == list(a[:3, 0, 0])
