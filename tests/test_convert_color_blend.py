"""Colour matching and blending on synthetic images whose statistics are known."""

import cv2
import numpy as np
import pytest

from faceswap.convert.blend import blend, feather_blend, sharpen
from faceswap.convert.color import edge_match, match_color


def _image(mean, std, seed, size=64) -> np.ndarray:
    """(size, size, 3) float32 BGR with per-channel normal noise of this mean and std."""
    rng = np.random.default_rng(seed)
    img = rng.normal(mean, std, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.float32)


MASK = np.zeros((64, 64), bool)
MASK[8:56, 12:52] = True


def test_avg_matches_the_masked_means():
    face = _image([60, 90, 120], [10, 15, 20], 0)
    ref = _image([140, 110, 100], [25, 20, 15], 1)
    ref[~MASK] = 255  # outside the mask does not count
    out = match_color("avg", face, ref, MASK)
    np.testing.assert_allclose(out[MASK].mean(0), ref[MASK].mean(0), atol=1e-3)
    np.testing.assert_allclose(out[MASK].std(0), face[MASK].std(0), rtol=1e-4)  # shape kept


def test_rct_matches_mean_and_spread_in_lab():
    face = _image([60, 90, 120], [10, 15, 20], 0)
    ref = _image([140, 110, 100], [25, 20, 15], 1)
    out = match_color("rct", face, ref, MASK)
    lab = lambda x: cv2.cvtColor(np.clip(x, 0, 255) / 255.0, cv2.COLOR_BGR2Lab)[MASK]  # noqa: E731
    np.testing.assert_allclose(lab(out).mean(0), lab(ref).mean(0), atol=0.5)
    np.testing.assert_allclose(lab(out).std(0), lab(ref).std(0), rtol=0.05)
    assert np.abs(lab(face).mean(0) - lab(ref).mean(0)).max() > 10  # it had something to do


def test_hist_matches_the_distribution():
    face = _image([60, 90, 120], [10, 15, 20], 0)
    # a skewed reference: the quantiles, not only mean and std, must follow it
    rng = np.random.default_rng(2)
    ref = np.clip(rng.gamma(2.0, 20.0, (64, 64, 3)) + [30, 60, 90], 0, 255).astype(np.float32)
    out = match_color("hist", face, ref, MASK)
    q = np.linspace(0.05, 0.95, 19)
    for c in range(3):
        np.testing.assert_allclose(np.quantile(out[MASK][:, c], q),
                                   np.quantile(ref[MASK][:, c], q), atol=1.5)  # fmt: skip
    # monotone: the order of pixel values is kept
    a, b = face[MASK][:, 0], out[MASK][:, 0]
    assert np.all(np.diff(b[np.argsort(a, kind="stable")]) >= -1e-4)


def test_edge_match_removes_the_step_at_the_edge_and_keeps_the_middle():
    # the original: skin of 150 inside the mask, dark hair (40) outside it; the face: its own
    # texture, globally matched, but a dark fringe (70) along the top of the mask
    rng = np.random.default_rng(3)
    ref = np.full((64, 64, 3), 150.0, np.float32)
    ref[~MASK] = 40.0
    texture = rng.normal(0.0, 6.0, (64, 64, 3)).astype(np.float32)
    face = 150.0 + texture
    face[8:12, 12:52] = 70.0 + texture[8:12, 12:52]
    out = edge_match(face, ref, MASK, band=0.15)
    # at the edge the fringe is pulled most of the way to the original's skin
    assert np.abs(out[8:10, 20:44].mean() - 150.0) < 0.35 * np.abs(face[8:10, 20:44].mean() - 150)
    # the middle of the face (beyond the band) is untouched, texture and all
    np.testing.assert_array_equal(out[24:40, 26:38], face[24:40, 26:38])
    # the dark hair outside the mask did not bleed in: the sides of the face stay at skin level
    assert abs(out[30:34, 12:14].mean() - face[30:34, 12:14].mean()) < 2.0
    # fine texture in the band is kept (the correction is low-frequency)
    band = out[14:20, 20:44] - cv2.GaussianBlur(out, (0, 0), 2.0)[14:20, 20:44]
    assert (
        band.std()
        > 0.6 * (texture[14:20, 20:44] - cv2.GaussianBlur(texture, (0, 0), 2.0)[14:20, 20:44]).std()
    )
    assert edge_match(face, ref, MASK, band=0.0) is face


def test_none_leaves_the_face_alone():
    face = _image([60, 90, 120], [10, 15, 20], 0)
    assert match_color("none", face, _image([1, 2, 3], [1, 1, 1], 1), MASK) is face
    with pytest.raises(ValueError, match="color must be"):
        match_color("bogus", face, face, MASK)


def _disk_alpha(h=120, w=160, r=40, feather=10.0) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    d = r - np.hypot(xx - w / 2, yy - h / 2)
    return np.clip(d / feather + 0.5, 0, 1).astype(np.float32)


def test_feather_blend_is_the_alpha_mix():
    dst = np.full((120, 160, 3), 100, np.uint8)
    face = np.full((120, 160, 3), 200, np.uint8)
    alpha = _disk_alpha()
    out = feather_blend(dst, face, alpha).astype(int)
    assert out[60, 80].tolist() == [200] * 3 and out[0, 0].tolist() == [100] * 3
    np.testing.assert_allclose(out[..., 0], 100 + 100 * alpha, atol=0.51)
    # no step: neighbouring pixels never differ by more than the ramp allows
    assert np.abs(np.diff(out[60, :, 0])).max() <= 100 / 10 + 1


def test_seamless_takes_the_frames_colour_and_keeps_the_faces_detail():
    h, w = 120, 160
    yy, xx = np.mgrid[:h, :w]
    dst = np.full((h, w, 3), 100, np.uint8)
    texture = 20 * np.sin(xx / 3.0)  # the face's detail
    face = np.repeat((180 + texture)[..., None], 3, 2).astype(np.uint8)  # 80 brighter
    alpha = _disk_alpha(h, w, 40, 6.0)
    out = blend("seamless", dst, face, alpha).astype(np.float32)[..., 0]
    inner = np.hypot(xx - w / 2, yy - h / 2) < 25
    # Poisson: the level comes from the frame around the mask, the detail from the face
    assert abs(out[inner].mean() - 100) < 6
    assert np.corrcoef(out[inner], texture[inner])[0, 1] > 0.95
    feather = blend("feather", dst, face, alpha).astype(np.float32)[..., 0]
    assert abs(feather[inner].mean() - 180) < 2  # what a plain alpha blend gives instead
    # at the edge of the mask, the seamless result steps far less than the feathered one
    ring = np.abs(np.hypot(xx - w / 2, yy - h / 2) - 40) < 4
    assert np.abs(out[ring] - 100).mean() < 0.5 * np.abs(feather[ring] - 100).mean()


def test_seamless_on_a_tiny_region_falls_back_to_feather():
    dst = np.full((6, 6, 3), 100, np.uint8)
    face = np.full((6, 6, 3), 200, np.uint8)
    alpha = np.full((6, 6), 0.5, np.float32)
    assert np.array_equal(blend("seamless", dst, face, alpha), feather_blend(dst, face, alpha))


def test_sharpen_raises_edge_contrast_and_keeps_flat_areas():
    img = np.zeros((32, 32, 3), np.float32)
    img[:, 16:] = 100.0
    img = cv2.GaussianBlur(img, (0, 0), 1.5)
    out = sharpen(img, 1.0)
    assert np.abs(np.diff(out[16, :, 0])).max() > 1.1 * np.abs(np.diff(img[16, :, 0])).max()
    assert out.max() > 100.3 and out.min() < -0.3  # the overshoot of an unsharp mask
    np.testing.assert_allclose(out[:, :4], img[:, :4], atol=1e-3)
    assert sharpen(img, 0.0) is img
