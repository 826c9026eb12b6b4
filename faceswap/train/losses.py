"""Reconstruction losses: masked MAE/MSE, SSIM, MS-SSIM and Laplacian bands, and FaceLoss.

All functions take images as (B, C, H, W) floats in [0, 1] (data range 1) and an optional
per-pixel weight (B, 1, H, W) (or (B, C, H, W)). They compute in float32 with autocast turned
off, so a bf16/fp16 training step still gets an fp32 loss (SSIM's E[x^2] - E[x]^2 loses
everything in half precision).

SSIM follows Wang et al. 2004: an 11-tap Gaussian window (sigma 1.5) applied separably with
*valid* padding (no border is invented; the SSIM map is (H - 10) x (W - 10)), C1 = 0.01^2,
C2 = 0.03^2. This matches `skimage.metrics.structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1)`, which crops the same border. A pixel
weight map is centre-cropped to the SSIM map, i.e. each window is weighted by the weight of its
centre pixel.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faceswap.config import option

__all__ = [
    "LOSS_TERMS",
    "MS_SSIM_WEIGHTS",
    "GAN_SIDES",
    "FaceLoss",
    "LossConfig",
    "laplacian_loss",
    "mae",
    "ms_ssim_index",
    "ms_ssim_loss",
    "mse",
    "pixel_weights",
    "ssim_index",
    "ssim_loss",
]

C1 = 0.01**2
C2 = 0.03**2
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_EPS = 1e-8
GAN_SIDES = ("b", "ab")


def _fp32(t: Tensor) -> contextlib.AbstractContextManager:
    """Autocast off for the device of `t` (a no-op context when autocast is not on)."""
    dev = t.device.type
    try:
        on = torch.is_autocast_enabled(dev)
    except (RuntimeError, TypeError):  # device type autocast does not know
        on = False
    return torch.autocast(dev, enabled=False) if on else contextlib.nullcontext()


def _check_pair(pred: Tensor, target: Tensor, weight: Tensor | None) -> None:
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(
            f"pred and target must both be (B, C, H, W), got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if weight is not None:
        b, c, h, w = pred.shape
        if weight.ndim != 4 or weight.shape[0] != b or weight.shape[2:] != (h, w):
            raise ValueError(
                f"weight must be (B, 1, H, W) matching {tuple(pred.shape)}, got "
                f"{tuple(weight.shape)}"
            )
        if weight.shape[1] not in (1, c):
            raise ValueError(f"weight must have 1 or {c} channels, got {weight.shape[1]}")


def _weighted_mean(err: Tensor, weight: Tensor | None) -> Tensor:
    """sum(w * err) / sum(w broadcast over channels); 0 (not NaN) when the weights sum to 0."""
    if weight is None:
        return err.mean()
    w = weight.expand_as(err)
    return (w * err).sum() / w.sum().clamp_min(_EPS)


def mae(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean absolute error, optionally weighted per pixel (scalar tensor, fp32)."""
    _check_pair(pred, target, weight)
    with _fp32(pred):
        w = None if weight is None else weight.float()
        return _weighted_mean((pred.float() - target.float()).abs(), w)


def mse(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean squared error, optionally weighted per pixel (scalar tensor, fp32)."""
    _check_pair(pred, target, weight)
    with _fp32(pred):
        w = None if weight is None else weight.float()
        return _weighted_mean((pred.float() - target.float()).square(), w)


def _gaussian(window: int, sigma: float, device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian taps, shape (window,)."""
    x = torch.arange(window, dtype=torch.float32, device=device) - (window - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _check_window(window: int, sigma: float) -> None:
    if window < 3 or window % 2 == 0:
        raise ValueError(f"SSIM window must be an odd number >= 3, got {window}")
    if not sigma > 0:
        raise ValueError(f"SSIM sigma must be > 0, got {sigma}")


def _ssim_maps(x: Tensor, y: Tensor, window: int, sigma: float) -> tuple[Tensor, Tensor]:
    """SSIM and contrast-structure maps, both (B, C, H - window + 1, W - window + 1)."""
    c = x.shape[1]
    if min(x.shape[-2:]) < window:
        raise ValueError(
            f"images of {x.shape[-2]}x{x.shape[-1]} px are smaller than the {window}-px SSIM window"
        )
    g = _gaussian(window, sigma, x.device)
    # The five local moments filtered in one grouped conv pair: (B, 5C, H, W).
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    gx = g.view(1, 1, 1, window).expand(5 * c, 1, 1, window)
    gy = g.view(1, 1, window, 1).expand(5 * c, 1, window, 1)
    f = F.conv2d(F.conv2d(stack, gx, groups=5 * c), gy, groups=5 * c)
    mu_x, mu_y, exx, eyy, exy = f.split(c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    s_xx, s_yy, s_xy = exx - mu_xx, eyy - mu_yy, exy - mu_xy
    cs = (2 * s_xy + C2) / (s_xx + s_yy + C2)
    lum = (2 * mu_xy + C1) / (mu_xx + mu_yy + C1)
    return lum * cs, cs


def _crop(weight: Tensor | None, window: int) -> Tensor | None:
    """Centre-crop a (B, 1, H, W) weight to the valid SSIM map."""
    if weight is None:
        return None
    r = window // 2
    return weight[..., r : weight.shape[-2] - r, r : weight.shape[-1] - r]


def ssim_index(
    pred: Tensor,
    target: Tensor,
    window: int = 11,
    sigma: float = 1.5,
    weight: Tensor | None = None,
) -> Tensor:
    """Mean SSIM index in [-1, 1] (1 = identical), scalar fp32; weighted by the window centres."""
    _check_pair(pred, target, weight)
    _check_window(window, sigma)
    with _fp32(pred):
        smap, _ = _ssim_maps(pred.float(), target.float(), window, sigma)
        w = _crop(None if weight is None else weight.float(), window)
        return _weighted_mean(smap, w)


def ssim_loss(
    pred: Tensor,
    target: Tensor,
    window: int = 11,
    sigma: float = 1.5,
    weight: Tensor | None = None,
) -> Tensor:
    """1 - ssim_index: 0 for identical images, up to 2."""
    return 1.0 - ssim_index(pred, target, window, sigma, weight)


def ms_ssim_index(
    pred: Tensor,
    target: Tensor,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
    window: int = 11,
    sigma: float = 1.5,
    weight: Tensor | None = None,
) -> Tensor:
    """Multi-scale SSIM (Wang et al. 2003), scalar fp32.

    Scale j is the image average-pooled j times by 2. The standard five weights assume images of
    at least 176 px; smaller images use only the finest scales whose side is still >= `window`
    (64 px -> 3 scales: 64, 32, 16) and the kept weights are renormalised to sum to 1. With one
    scale this is plain SSIM. Contrast-structure terms are clamped to >= 1e-6 before the
    fractional powers so negative correlations give a large loss, not NaN. Computed per image
    and channel, then averaged; images whose weight map is all zero are left out of the mean.
    """
    _check_pair(pred, target, weight)
    _check_window(window, sigma)
    if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("MS-SSIM weights must be non-negative and not all zero")
    side = min(pred.shape[-2:])
    n = 0
    while n < len(weights) and side // (2**n) >= window:
        n += 1
    if n == 0:
        raise ValueError(f"images of {side} px are smaller than the {window}-px SSIM window")
    scale_w = torch.tensor(weights[:n], dtype=torch.float32, device=pred.device)
    scale_w = scale_w / scale_w.sum()
    with _fp32(pred):
        x, y = pred.float(), target.float()
        wt = None if weight is None else weight.float()
        vals = []  # n x (B, C)
        for j in range(n):
            smap, cs = _ssim_maps(x, y, window, sigma)
            m = smap if j == n - 1 else cs
            wc = _crop(wt, window)
            if wc is None:
                vals.append(m.mean(dim=(2, 3)))
            else:
                wc = wc.expand_as(m)
                vals.append((wc * m).sum(dim=(2, 3)) / wc.sum(dim=(2, 3)).clamp_min(_EPS))
            if j < n - 1:
                x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
                wt = None if wt is None else F.avg_pool2d(wt, 2)
        v = torch.stack(vals).clamp_min(1e-6)  # (n, B, C)
        per_image = (v ** scale_w.view(n, 1, 1)).prod(dim=0).mean(dim=1)  # (B,)
        if weight is None:
            return per_image.mean()
        keep = (weight.float().flatten(1).sum(1) > 0).float()  # (B,)
        if keep.sum() == 0:
            return per_image.sum() * 0 + 1.0  # nothing to compare: index 1, loss 0
        return (per_image * keep).sum() / keep.sum()


def ms_ssim_loss(
    pred: Tensor,
    target: Tensor,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
    window: int = 11,
    sigma: float = 1.5,
    weight: Tensor | None = None,
) -> Tensor:
    """1 - ms_ssim_index."""
    return 1.0 - ms_ssim_index(pred, target, weights, window, sigma, weight)


# Burt & Adelson's 5-tap binomial: the low-pass of one pyramid level.
_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


def _binomial_blur(x: Tensor) -> Tensor:
    """x (B, C, H, W) low-passed by the separable 5-tap binomial, borders reflected."""
    c = x.shape[1]
    g = torch.tensor(_BINOMIAL, dtype=x.dtype, device=x.device) / 16.0
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(x, g.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def laplacian_loss(
    pred: Tensor, target: Tensor, weight: Tensor | None = None, levels: int = 3
) -> Tensor:
    """Mean over `levels` detail bands of the weighted L1 between the two images' bands.

    Band j is the image at 1/2^j scale minus its binomial low-pass: eyelid and lip lines,
    lashes, creases. In a plain pixel loss they are a small share of the error, so a blurred
    face that gets the colours right scores nearly as well as a sharp one; here every band
    counts as much as the others, and no band holds the colours (MAE does). The bands are
    differences, so matching them still means matching B's own lines where B has them: a
    noise or grain the target lacks raises this loss. (Lap1 of Bojanowski et al. 2018, less
    its low-pass residual.)
    """
    _check_pair(pred, target, weight)
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if min(pred.shape[-2:]) < 3 * 2 ** (levels - 1):
        raise ValueError(f"images of {tuple(pred.shape[-2:])} px are too small for {levels} levels")
    with _fp32(pred):
        # The pyramid is linear, so the bands of the difference are the difference of the bands.
        d = pred.float() - target.float()
        w = None if weight is None else weight.float()
        total = d.new_zeros(())
        for j in range(levels):
            low = _binomial_blur(d)
            total = total + _weighted_mean((d - low).abs(), w)
            if j < levels - 1:
                d = low[..., ::2, ::2]
                w = None if w is None else _binomial_blur(w)[..., ::2, ::2]
        return total / levels


LOSS_TERMS: dict[str, Callable[..., Tensor]] = {
    "mae": mae,
    "mse": mse,
    "ssim": ssim_loss,
    "ms_ssim": ms_ssim_loss,
    "lap": laplacian_loss,
}


@dataclass
class LossConfig:
    """Training loss: a weighted sum of reconstruction terms, face-mask weighting, mask loss."""

    terms: dict[str, float] = option(
        {"mae": 1.0, "ssim": 0.5},
        "weights of the reconstruction terms: mae, mse, ssim, ms_ssim, lap (Laplacian detail bands)",
    )
    masked: bool = option(True, "weight the reconstruction loss by the face mask")
    background_weight: float = option(
        0.1, "pixel weight outside the face mask when masked (0 = ignore the background)"
    )
    mask_loss: float = option(
        1.0, "weight of the learned-mask loss (MSE to the landmark mask); 0 = off"
    )
    eye_multiplier: float = option(3.0, "loss weight on the eye region (1 = no extra weight)")
    mouth_multiplier: float = option(2.0, "loss weight on the mouth region (1 = no extra weight)")
    gan_power: float = option(
        0.0,
        "weight of the patch-GAN term on the decoded faces (0 = off; 0.1 as in DeepFaceLab): "
        "high-frequency detail the pixel losses blur away",
    )
    gan_start: float = option(
        0.5, "share of the run after which the GAN term (and its discriminator) starts, in [0, 1)"
    )
    gan_sides: str = option("b", "decoder outputs the discriminator judges: b (the swap's) or ab")
    gan_lr: float = option(0.0, "discriminator learning rate (0 = the model's LR at each step)")
    gan_dims: int = option(16, "discriminator width: channels of its first convolution")

    def __post_init__(self) -> None:
        if not isinstance(self.terms, dict) or not self.terms:
            raise ValueError(f"terms must be a non-empty mapping of {', '.join(LOSS_TERMS)}")
        for name, w in self.terms.items():
            if name not in LOSS_TERMS:
                raise ValueError(
                    f"unknown loss term {name!r} (valid terms: {', '.join(LOSS_TERMS)})"
                )
            if (
                isinstance(w, bool)
                or not isinstance(w, (int, float))
                or not (math.isfinite(w) and w >= 0)
            ):
                raise ValueError(f"loss term {name!r} weight must be a finite number >= 0")
        if not any(w > 0 for w in self.terms.values()):
            raise ValueError("at least one loss term must have a weight > 0")
        if not 0.0 <= self.background_weight <= 1.0:
            raise ValueError("background_weight must be between 0 and 1")
        if not (math.isfinite(self.mask_loss) and self.mask_loss >= 0):
            raise ValueError("mask_loss must be >= 0")
        for name in ("eye_multiplier", "mouth_multiplier"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 1.0):
                raise ValueError(f"{name} must be >= 1")
        if not (_real(self.gan_power) and self.gan_power >= 0):
            raise ValueError("gan_power must be a finite number >= 0 (0 = off)")
        if not (_real(self.gan_start) and 0 <= self.gan_start < 1):
            raise ValueError("gan_start must be in [0, 1) (a share of the run)")
        if self.gan_sides not in GAN_SIDES:
            raise ValueError(
                f"gan_sides must be one of {', '.join(GAN_SIDES)}, not {self.gan_sides!r}"
            )
        if not (_real(self.gan_lr) and self.gan_lr >= 0):
            raise ValueError("gan_lr must be a finite number >= 0 (0 = the model's LR)")
        if (
            isinstance(self.gan_dims, bool)
            or not isinstance(self.gan_dims, int)
            or not (1 <= self.gan_dims <= 512)
        ):
            raise ValueError("gan_dims must be an integer in [1, 512]")


def _real(v: object) -> bool:
    """A finite int or float (YAML may give a string or a bool where a number belongs)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def pixel_weights(
    cfg: LossConfig,
    face_mask: Tensor | None,
    eyes: Tensor | None = None,
    mouth: Tensor | None = None,
) -> Tensor | None:
    """Per-pixel loss weights (B, 1, H, W), or None for a plain mean.

    masked: background_weight + (1 - background_weight) * face_mask
    else:   1
    plus (eye_multiplier - 1) * eyes + (mouth_multiplier - 1) * mouth in both cases.
    """
    w: Tensor | None = None
    if cfg.masked:
        if face_mask is None:
            raise ValueError("a masked loss needs face_mask")
        fm = face_mask.float()
        w = cfg.background_weight + (1.0 - cfg.background_weight) * fm
    for region, mult in ((eyes, cfg.eye_multiplier), (mouth, cfg.mouth_multiplier)):
        if region is not None and mult != 1.0:
            extra = (mult - 1.0) * region.float()
            w = (1.0 + extra) if w is None else w + extra
    return w


class FaceLoss(nn.Module):
    """The training loss of one decoder: weighted reconstruction terms plus the mask loss."""

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.terms = {n: float(w) for n, w in cfg.terms.items() if w > 0}

    def forward(
        self,
        pred_rgb: Tensor,
        pred_mask: Tensor | None,
        target_rgb: Tensor,
        face_mask: Tensor | None = None,
        eyes: Tensor | None = None,
        mouth: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Total loss (scalar fp32 tensor) and its parts as floats: each term's unweighted
        value, "mask" (when used) and "total". pred/target (B, C, H, W), masks (B, 1, H, W),
        all in [0, 1]. The mask loss is skipped when pred_mask is None (no mask head).
        """
        b, _, h, w = pred_rgb.shape
        for name, m in (("face_mask", face_mask), ("eyes", eyes), ("mouth", mouth)):
            if m is not None and tuple(m.shape) != (b, 1, h, w):
                raise ValueError(f"{name} must be {(b, 1, h, w)}, got {tuple(m.shape)}")
        with _fp32(pred_rgb):
            pred, target = pred_rgb.float(), target_rgb.float()
            weight = pixel_weights(self.cfg, face_mask, eyes, mouth)
            parts: dict[str, Tensor] = {}
            total = pred.new_zeros(())
            for name, tw in self.terms.items():
                value = LOSS_TERMS[name](pred, target, weight=weight)
                parts[name] = value
                total = total + tw * value
            if self.cfg.mask_loss > 0 and pred_mask is not None:
                if face_mask is None:
                    raise ValueError("the mask loss needs face_mask")
                value = mse(pred_mask.float(), face_mask.float())
                parts["mask"] = value
                total = total + self.cfg.mask_loss * value
            parts["total"] = total
            # One device->host copy for all parts, not one sync per term.
            floats = torch.stack([v.detach() for v in parts.values()]).tolist()
        return total, dict(zip(parts, floats))
