"""Losses: hand-computed MAE/MSE, SSIM against an independent numpy/scipy reference, MS-SSIM at
small sizes, face-mask and region weighting, the mask loss, gradients and fp32 under autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from faceswap.config import from_dict
from faceswap.errors import BadInput
from faceswap.train.losses import (
    LOSS_TERMS,
    FaceLoss,
    LossConfig,
    laplacian_loss,
    mae,
    ms_ssim_index,
    ms_ssim_loss,
    mse,
    pixel_weights,
    ssim_index,
    ssim_loss,
)


def _images(b=2, c=3, size=64, noise=0.1, seed=0):
    """A smooth random target and a noisy copy of it, both (B, C, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(b, c, size // 8, size // 8, generator=g)
    target = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear")
    pred = (target + noise * torch.randn(target.shape, generator=g)).clamp(0, 1)
    return pred, target


def _ref_ssim_map(x: np.ndarray, y: np.ndarray, win: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Straightforward float64 SSIM map of one 2-D channel: 2-D Gaussian window, valid region."""
    r = win // 2
    ax = np.arange(-r, r + 1, dtype=np.float64)
    g2 = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
    g2 /= g2.sum()

    def filt(a):
        return ndimage.correlate(a, g2, mode="reflect")[r:-r, r:-r]

    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx**2
    syy = filt(y * y) - my**2
    sxy = filt(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))


def _ref_ssim(pred: torch.Tensor, target: torch.Tensor, weight=None) -> float:
    p, t = pred.double().numpy(), target.double().numpy()
    maps = np.stack(
        [
            np.stack([_ref_ssim_map(p[b, c], t[b, c]) for c in range(p.shape[1])])
            for b in range(p.shape[0])
        ]
    )  # (B, C, H-10, W-10)
    if weight is None:
        return float(maps.mean())
    w = weight.double().numpy()[:, :, 5:-5, 5:-5] * np.ones_like(maps)
    return float((w * maps).sum() / w.sum())


# --------------------------------------------------------------------------- pixel losses


def test_identical_images_give_zero_loss_and_ssim_one():
    _, target = _images()
    for name, fn in LOSS_TERMS.items():
        assert fn(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6), name
    assert ssim_index(target.clone(), target).item() == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim_index(target.clone(), target).item() == pytest.approx(1.0, abs=1e-6)


def test_mae_mse_by_hand():
    target = torch.zeros(2, 3, 16, 16)
    assert mae(target + 0.1, target).item() == pytest.approx(0.1, rel=1e-6)
    assert mse(target + 0.1, target).item() == pytest.approx(0.01, rel=1e-5)
    # Vertical stripes shifted by one pixel: every pixel is off by exactly 1.
    stripes = (torch.arange(16) % 2).float().expand(2, 3, 16, 16)
    shifted = torch.roll(stripes, 1, dims=-1)
    assert mae(shifted, stripes).item() == pytest.approx(1.0)
    assert mse(shifted, stripes).item() == pytest.approx(1.0)
    # +-0.2 sign noise: |err| = 0.2 everywhere.
    sign = torch.randint(0, 2, target.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    noisy = 0.5 + 0.2 * sign.float()
    half = torch.full_like(target, 0.5)
    assert mae(noisy, half).item() == pytest.approx(0.2, rel=1e-5)
    assert mse(noisy, half).item() == pytest.approx(0.04, rel=1e-5)


def test_weighted_mean_and_zero_weight():
    target = torch.zeros(1, 3, 8, 8)
    pred = target.clone()
    pred[..., :4] = 1.0  # left half wrong
    weight = torch.zeros(1, 1, 8, 8)
    weight[..., 4:] = 1.0  # only the right half counts
    assert mae(pred, target, weight).item() == 0.0
    weight[..., 3] = 2.0  # one column of wrong pixels, counted twice
    # sum(w * err) / sum(w * C) = (2 * 8 * 3) / ((2 * 8 + 4 * 8) * 3)
    assert mae(pred, target, weight).item() == pytest.approx(16 / 48)
    zero = torch.zeros(1, 1, 8, 8)
    for fn in (mae, mse, ssim_loss, ms_ssim_loss):
        p = torch.rand(1, 3, 16, 16, requires_grad=True)
        out = fn(p, torch.rand(1, 3, 16, 16), weight=torch.zeros(1, 1, 16, 16))
        assert torch.isfinite(out), fn.__name__
        out.backward()
        assert torch.isfinite(p.grad).all(), fn.__name__
    assert mse(pred, target, zero).item() == 0.0


def test_shape_errors():
    a = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="pred and target"):
        mae(a, torch.rand(1, 3, 16, 8))
    with pytest.raises(ValueError, match="weight"):
        mae(a, a, torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="window"):
        ssim_index(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="odd"):
        ssim_index(a, a, window=10)


# --------------------------------------------------------------------------- SSIM


@pytest.mark.parametrize("noise", [0.02, 0.2, 1.0])
def test_ssim_matches_numpy_reference(noise):
    pred, target = _images(noise=noise, size=48, seed=int(noise * 100))
    ref = _ref_ssim(pred, target)
    assert ssim_index(pred, target).item() == pytest.approx(ref, abs=1e-3)
    assert ssim_loss(pred, target).item() == pytest.approx(1 - ref, abs=1e-3)


def test_ssim_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    pred, target = _images(b=1, size=48, noise=0.15, seed=5)
    ref = metrics.structural_similarity(
        pred[0].double().numpy(),
        target[0].double().numpy(),
        channel_axis=0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
    )
    assert ssim_index(pred, target).item() == pytest.approx(ref, abs=1e-3)


def test_weighted_ssim_matches_reference():
    pred, target = _images(size=40, noise=0.2, seed=7)
    weight = torch.rand(2, 1, 40, 40, generator=torch.Generator().manual_seed(3))
    ref = _ref_ssim(pred, target, weight)
    assert ssim_index(pred, target, weight=weight).item() == pytest.approx(ref, abs=1e-3)


@pytest.mark.parametrize("size", [64, 256])
def test_ms_ssim_small_and_large(size):
    pred, target = _images(b=1, size=size, noise=0.05, seed=size)
    worse, _ = _images(b=1, size=size, noise=0.3, seed=size)
    good = ms_ssim_loss(pred, target).item()
    bad = ms_ssim_loss(worse, target).item()
    assert 0.0 < good < bad <= 1.0
    assert ms_ssim_loss(target.clone(), target).item() == pytest.approx(0.0, abs=1e-5)
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    weighted = ms_ssim_loss(pred, target, weight=mask)
    assert torch.isfinite(weighted) and 0.0 < weighted.item() < 1.0


def test_ms_ssim_reduces_to_ssim_with_one_scale():
    pred, target = _images(size=64, noise=0.2, seed=11)
    ssim = ssim_index(pred, target).item()
    # One weight given -> one scale. Image of 20 px -> only one scale fits an 11-px window.
    assert ms_ssim_index(pred, target, weights=(1.0,)).item() == pytest.approx(ssim, abs=1e-5)
    small_p, small_t = pred[..., :20, :20], target[..., :20, :20]
    assert ms_ssim_index(small_p, small_t).item() == pytest.approx(
        ssim_index(small_p, small_t).item(), abs=1e-5
    )
    with pytest.raises(ValueError, match="smaller than"):
        ms_ssim_index(pred[..., :8, :8], target[..., :8, :8])


# --------------------------------------------------------------------------- FaceLoss


def _face_batch(size=32):
    """Target image, face mask (central square), eyes (small square inside), mouth."""
    _, target = _images(b=2, size=size, noise=0.0, seed=2)
    face = torch.zeros(2, 1, size, size)
    face[..., 8:24, 8:24] = 1.0
    eyes = torch.zeros_like(face)
    eyes[..., 10:13, 10:22] = 1.0
    mouth = torch.zeros_like(face)
    mouth[..., 19:22, 12:20] = 1.0
    return target, face, eyes, mouth


def test_masked_loss_ignores_background():
    target, face, eyes, mouth = _face_batch()
    pred, _ = _images(b=2, size=32, noise=0.1, seed=9)
    cfg = LossConfig(terms={"mae": 1.0, "mse": 0.5}, background_weight=0.0, mask_loss=0.0)
    loss = FaceLoss(cfg)
    before, _ = loss(pred, None, target, face, eyes, mouth)
    changed = pred.clone()
    changed[..., :8, :] = torch.rand_like(changed[..., :8, :])  # background rows only
    changed[..., :, 28:] = 0.0
    after, _ = loss(changed, None, target, face, eyes, mouth)
    assert after.item() == pytest.approx(before.item(), rel=1e-6)
    # With a background weight the same change does count.
    cfg_bg = LossConfig(terms={"mae": 1.0}, background_weight=0.1, mask_loss=0.0)
    a, _ = FaceLoss(cfg_bg)(pred, None, target, face, eyes, mouth)
    b, _ = FaceLoss(cfg_bg)(changed, None, target, face, eyes, mouth)
    assert a.item() != pytest.approx(b.item(), rel=1e-3)


def test_masked_ssim_ignores_far_background():
    size = 48
    _, target = _images(b=1, size=size, noise=0.0, seed=4)
    pred, _ = _images(b=1, size=size, noise=0.1, seed=4)
    face = torch.zeros(1, 1, size, size)
    face[..., 16:32, 16:32] = 1.0
    cfg = LossConfig(terms={"ssim": 1.0}, background_weight=0.0, mask_loss=0.0)
    before, _ = FaceLoss(cfg)(pred, None, target, face)
    changed = pred.clone()
    changed[..., :10, :] = 0.0  # > 5 px (the window radius) away from the face
    after, _ = FaceLoss(cfg)(changed, None, target, face)
    assert after.item() == pytest.approx(before.item(), abs=1e-6)


def test_eye_multiplier_scales_eye_error():
    size = 32
    target = torch.full((1, 3, size, size), 0.5)
    face = torch.ones(1, 1, size, size)
    eyes = torch.zeros_like(face)
    eyes[..., 10:14, 8:24] = 1.0
    pred = target.clone()
    pred[..., 11:13, 10:20] += 0.3  # error only inside the eye region
    n, n_eye = size * size, int(eyes.sum())
    results = {}
    for mult in (1.0, 3.0):
        cfg = LossConfig(terms={"mae": 1.0}, eye_multiplier=mult, mouth_multiplier=1.0)
        results[mult], _ = FaceLoss(cfg)(pred, None, target, face, eyes, torch.zeros_like(face))
    # Weights are 1 outside the eyes and 3 inside: numerator x3, denominator N + 2 * n_eye.
    expected = 3 * n / (n + 2 * n_eye)
    assert (results[3.0] / results[1.0]).item() == pytest.approx(expected, rel=1e-5)
    w = pixel_weights(LossConfig(), face, eyes, None)
    assert w.max().item() == pytest.approx(3.0)


def test_pixel_weights_formula():
    target, face, eyes, mouth = _face_batch()
    cfg = LossConfig(background_weight=0.2, eye_multiplier=3.0, mouth_multiplier=2.0)
    w = pixel_weights(cfg, face, eyes, mouth)
    expected = 0.2 + 0.8 * face + 2.0 * eyes + 1.0 * mouth
    assert torch.allclose(w, expected)
    unmasked = LossConfig(masked=False, eye_multiplier=1.0, mouth_multiplier=1.0)
    assert pixel_weights(unmasked, face, eyes, mouth) is None


def test_mask_loss_term():
    target, face, eyes, mouth = _face_batch()
    pred_mask = face * 0.5  # off by 0.5 inside the face
    cfg = LossConfig(terms={"mae": 1.0}, mask_loss=2.0)
    total, parts = FaceLoss(cfg)(target.clone(), pred_mask, target, face, eyes, mouth)
    frac = face.mean().item()
    assert parts["mask"] == pytest.approx(0.25 * frac, rel=1e-5)
    assert parts["mae"] == pytest.approx(0.0, abs=1e-7)
    assert parts["total"] == pytest.approx(2.0 * 0.25 * frac, rel=1e-5)
    assert total.item() == pytest.approx(parts["total"])
    _, off = FaceLoss(LossConfig(mask_loss=0.0))(target, pred_mask, target, face, eyes, mouth)
    assert "mask" not in off
    _, none = FaceLoss(cfg)(target, None, target, face, eyes, mouth)
    assert "mask" not in none


def test_all_terms_gradients_finite():
    target, face, eyes, mouth = _face_batch(size=64)
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1).requires_grad_(True)
    pred_mask = torch.rand_like(face).requires_grad_(True)
    cfg = LossConfig(terms={"mae": 1.0, "mse": 1.0, "ssim": 0.5, "ms_ssim": 0.5, "lap": 1.0})
    total, parts = FaceLoss(cfg)(pred, pred_mask, target, face, eyes, mouth)
    assert set(parts) == {"mae", "mse", "ssim", "ms_ssim", "lap", "mask", "total"}
    total.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert torch.isfinite(pred_mask.grad).all()
    # Identical images (SSIM at its maximum) must not give NaN gradients either.
    same = target.clone().requires_grad_(True)
    FaceLoss(cfg)(same, None, target, face, eyes, mouth)[0].backward()
    assert torch.isfinite(same.grad).all()


def test_fp32_under_autocast():
    target, face, eyes, mouth = _face_batch()
    pred = (target + 0.1).clamp(0, 1)
    cfg = LossConfig(terms={"mae": 1.0, "ssim": 1.0})
    ref, _ = FaceLoss(cfg)(pred, None, target, face, eyes, mouth)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = FaceLoss(cfg)(pred.bfloat16(), None, target.bfloat16(), face, eyes, mouth)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref.item(), rel=2e-2)


# --------------------------------------------------------------------------- Laplacian bands


def _astronaut_face(size=64):
    """The astronaut's face (a real face's lines and texture) as (1, 3, size, size) in [0, 1]."""
    from skimage.data import astronaut

    crop = torch.from_numpy(astronaut()[30:230, 140:340].copy()).permute(2, 0, 1)[None] / 255.0
    return torch.nn.functional.interpolate(crop, size=(size, size), mode="area")


def test_laplacian_loss_counts_a_blur_that_mae_forgives():
    target = _astronaut_face()
    blurred = torch.from_numpy(
        ndimage.gaussian_filter(target.numpy(), sigma=(0, 0, 1.2, 1.2))
    ).float()
    # A uniform brightness shift with the blur's MAE: the same pixel error, no lost detail.
    shifted = (target + mae(blurred, target)).clamp(0, 1)
    assert mae(shifted, target).item() == pytest.approx(mae(blurred, target).item(), rel=0.1)
    assert laplacian_loss(shifted, target).item() < 0.02 * laplacian_loss(blurred, target).item()
    assert laplacian_loss(target.clone(), target).item() == pytest.approx(0.0, abs=1e-7)


def test_laplacian_loss_is_not_lowered_by_grain_on_a_blur():
    # Fine texture that is not the target's own (a grain filter over a blur) must not pass
    # for detail: it adds band error where it should remove it.
    target = _astronaut_face()
    blurred = torch.from_numpy(
        ndimage.gaussian_filter(target.numpy(), sigma=(0, 0, 1.2, 1.2))
    ).float()
    grain = 0.03 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    base = laplacian_loss(blurred, target).item()
    assert laplacian_loss((blurred + grain).clamp(0, 1), target).item() > 1.1 * base


def test_laplacian_loss_weights_odd_sizes_and_levels():
    target = _astronaut_face(size=45)
    pred = target.clone()
    pred[..., :, 30:] = 1.0 - pred[..., :, 30:]  # error on the right only
    left = torch.zeros(1, 1, 45, 45)
    left[..., :, :20] = 1.0
    assert (
        laplacian_loss(pred, target, weight=left).item()
        < 0.05 * laplacian_loss(pred, target).item()
    )
    assert laplacian_loss(pred, target, levels=1).item() > 0
    with pytest.raises(ValueError, match="too small for 5 levels"):
        laplacian_loss(pred, target, levels=5)
    with pytest.raises(ValueError, match="levels must be >= 1"):
        laplacian_loss(pred, target, levels=0)


def test_config_validation():
    with pytest.raises(ValueError, match=r"unknown loss term 'l1'.*mae, mse, ssim, ms_ssim, lap"):
        LossConfig(terms={"l1": 1.0})
    with pytest.raises(BadInput, match="unknown loss term"):
        from_dict(LossConfig, {"terms": {"perceptual": 1.0}}, "train.yaml")
    for bad in (
        {"terms": {}},
        {"terms": {"mae": -1.0}},
        {"terms": {"mae": 0.0}},
        {"background_weight": 1.5},
        {"mask_loss": -0.1},
        {"eye_multiplier": 0.5},
    ):
        with pytest.raises(ValueError):
            LossConfig(**bad)
    assert LossConfig().terms == {"mae": 1.0, "ssim": 0.5}  # the benchmarked default
    assert LossConfig().terms is not LossConfig().terms
