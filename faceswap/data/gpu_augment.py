"""Batched augmentation on the training device with `F.grid_sample`.

Same transforms and parameter distributions as the CPU path in dataset.py (see augment.py):
colour jitter, one affine (flip, rotation, zoom, shift) shared by input and target, a smooth
random warp of the input only (5x5 control-point displacements upsampled to a dense flow) and a
low-frequency lighting field. Random numbers come from the given torch.Generator (drawn where
the generator lives and moved to the images' device), so a seeded generator gives the same batch
on any device up to floating-point rounding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from faceswap.data.augment import (
    FLOW_GRID,
    LUMA,
    N_UNIFORM,
    TPS_REG,
    WARP_POINTS,
    AugmentConfig,
    color_matrices,
    geometry_matrices,
    lighting_grids,
    tps_frame,
)


def _draw(generator: torch.Generator, b: int) -> tuple[np.ndarray, torch.Tensor]:
    """(B, N_UNIFORM) uniforms (float64 numpy, for the parameter math) and (B, 5, 5, 2) normals."""
    u = torch.rand(
        (b, N_UNIFORM), generator=generator, device=generator.device, dtype=torch.float64
    )
    noise = torch.randn((b, WARP_POINTS, WARP_POINTS, 2), generator=generator,
                        device=generator.device)  # fmt: skip
    return u.cpu().numpy(), noise


def identity_grid(b: int, size: int, device: torch.device | str) -> torch.Tensor:
    """(B, R, R, 2) sampling grid that reproduces the image (align_corners=False)."""
    theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=device).expand(b, 2, 3)
    return F.affine_grid(theta, [b, 1, size, size], align_corners=False)


def pixel_to_theta(forward: np.ndarray, size: int) -> np.ndarray:
    """(B, 2, 3) forward pixel matrices (source -> output, as for cv2.warpAffine) -> the
    `theta` of F.affine_grid (output -> source in normalised coordinates, align_corners=False)."""
    b = len(forward)
    m = np.zeros((b, 3, 3))
    m[:, :2] = forward
    m[:, 2, 2] = 1.0
    inv = np.linalg.inv(m)  # output pixel -> source pixel
    norm = np.array([[2.0 / size, 0, 1.0 / size - 1], [0, 2.0 / size, 1.0 / size - 1], [0, 0, 1]])
    return (norm @ inv @ np.linalg.inv(norm))[:, :2]


def _tps_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, n, 2), (B, m, 2) -> (B, n, m) thin-plate kernel r^2 log r."""
    d2 = (a * a).sum(-1)[..., :, None] + (b * b).sum(-1)[..., None, :] - 2.0 * a @ b.transpose(1, 2)
    d2 = d2.clamp_min(1e-30)
    return 0.5 * d2 * torch.log(d2)


def landmark_flows(
    src: torch.Tensor, dst: torch.Tensor, size: int, grid: int = FLOW_GRID, reg: float = TPS_REG
) -> torch.Tensor:
    """Batched augment.landmark_flow on the landmarks' device: src, dst (B, 68, 2) pixels ->
    (B, grid, grid, 2) coarse backward flows in pixels (solved in float64; the systems are
    small and a float32 thin-plate solve loses digits)."""
    b = len(src)
    ring_np, q_np = tps_frame(size, grid)
    dev = src.device
    ring = torch.tensor(ring_np, device=dev).expand(b, -1, -1)
    q = torch.tensor(q_np, device=dev).expand(b, -1, -1)
    dst = dst.to(torch.float64) / size
    pts = torch.cat([dst, ring], 1)  # (B, n, 2)
    n, m = pts.shape[1], dst.shape[1]
    a = torch.zeros((b, n + 3, n + 3), dtype=torch.float64, device=dev)
    a[:, :n, :n] = _tps_kernel(pts, pts) + reg * torch.eye(n, dtype=torch.float64, device=dev)
    a[:, :n, n] = 1.0
    a[:, n, :n] = 1.0
    a[:, :n, n + 1 :] = pts
    a[:, n + 1 :, :n] = pts.transpose(1, 2)
    rhs = torch.zeros((b, n + 3, 2), dtype=torch.float64, device=dev)
    rhs[:, :m] = src.to(torch.float64) / size - dst
    coef = torch.linalg.solve(a, rhs)
    flow = _tps_kernel(q, pts) @ coef[:, :n] + coef[:, n : n + 1] + q @ coef[:, n + 1 :]
    return (flow * size).reshape(b, grid, grid, 2).to(torch.float32)


def _smooth(coarse: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, g, g) -> (B, C, R, R) bicubic, the same sample placement as cv2.resize."""
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def _warp_flow(noise: torch.Tensor, cfg: AugmentConfig, size: int) -> torch.Tensor:
    """(B, R, R, 2) displacement in normalised units from (B, 5, 5, 2) normals."""
    coarse = noise.permute(0, 3, 1, 2) * (2.0 * cfg.warp_scale)  # pixel std warp_scale * R
    return _smooth(coarse, size).permute(0, 2, 3, 1)


def warp_batch(
    images: torch.Tensor, generator: torch.Generator, cfg: AugmentConfig
) -> torch.Tensor:
    """Random warp of a batch (B, C, R, R): a 5x5 grid of control points displaced by normals
    of std `cfg.warp_scale` of the side, upsampled bicubically to a smooth flow. Returns the
    images unchanged when the warp is off or its strength is 0."""
    if not (cfg.random_warp and cfg.warp_scale > 0):
        return images
    b, _, h, w = images.shape
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}")
    noise = torch.randn((b, WARP_POINTS, WARP_POINTS, 2), generator=generator,
                        device=generator.device).to(images.device)  # fmt: skip
    grid = identity_grid(b, h, images.device) + _warp_flow(noise, cfg, h).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(
    images: torch.Tensor,
    masks: torch.Tensor,
    generator: torch.Generator,
    cfg: AugmentConfig | None,
    mean_luma: torch.Tensor | None = None,
    flows: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The whole augmentation of a batch on its device.

    images: (B, 3, R, R) float RGB in [0, 1]; masks: (B, 3, R, R) float face/eyes/mouth.
    mean_luma: (B,) mean luma of each clean face (computed from the images when None).
    flows: (B, G, G, 2) coarse backward flows in pixels for warp_to_landmarks (from
    landmark_flows or FaceDataset.landmark_flow); required for that mode, ignored otherwise.
    Returns input, target (B, 3, R, R) and mask, eyes, mouth (B, 1, R, R).
    """
    b, _, size, _ = images.shape
    dev, dt = images.device, images.dtype
    if cfg is None:
        return _pack(images, images, masks)
    u, noise = _draw(generator, b)
    x = images
    if cfg.color > 0:
        if mean_luma is None:
            luma = torch.tensor(LUMA, device=dev, dtype=dt).view(1, 3, 1, 1)
            mean_luma = (x * luma).sum(1).mean((1, 2))
        cm = color_matrices(u, cfg, mean_luma.detach().double().cpu().numpy())
        cm_t = torch.as_tensor(cm, dtype=dt).to(dev)
        x = torch.einsum("bij,bjhw->bihw", cm_t[:, :, :3], x) + cm_t[:, :, 3, None, None]
        x = x.clamp_(0.0, 1.0)
    theta = None
    if cfg.has_geometry:
        theta = torch.as_tensor(pixel_to_theta(geometry_matrices(u, cfg, size), size), dtype=dt)
        theta = theta.to(dev)
        grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
        target = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        masks = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)  # fmt: skip
    else:
        grid = None
        target = x
    flow = None  # (B, R, R, 2) normalised
    if cfg.warp_to_landmarks:
        if flows is None:
            raise ValueError("warp_to_landmarks needs the coarse landmark flows")
        coarse = flows.to(dev, dt).permute(0, 3, 1, 2) * (2.0 / size)
        flow = _smooth(coarse, size).permute(0, 2, 3, 1)
    elif cfg.random_warp and cfg.warp_scale > 0:
        flow = _warp_flow(noise.to(dev, dt), cfg, size)
    if flow is None:
        inp = target
    else:
        # input(p) = target(p + flow(p)) = x(theta (p + flow(p))): one resampling of x
        base = identity_grid(b, size, dev).to(dt) if grid is None else grid
        if theta is not None:
            flow = torch.einsum("bij,bhwj->bhwi", theta[:, :, :2], flow)
        inp = F.grid_sample(x, base + flow, mode="bilinear", padding_mode="border",
                            align_corners=False)  # fmt: skip
    if cfg.lighting > 0:
        light = torch.as_tensor(lighting_grids(u, cfg), dtype=dt).to(dev)[:, None]
        gain = _smooth(light, size).clamp_(min=0.0)
        target = (target * gain).clamp_(max=1.0)
        inp = target if flow is None else (inp * gain).clamp_(max=1.0)
    return _pack(inp, target, masks)


def _pack(inp: torch.Tensor, target: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "input": inp,
        "target": target,
        "mask": masks[:, 0:1],
        "eyes": masks[:, 1:2],
        "mouth": masks[:, 2:3],
        **({"valid": masks[:, 3:4]} if masks.shape[1] > 3 else {}),
    }
