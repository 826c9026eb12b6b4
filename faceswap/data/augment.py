"""Augmentation settings and the random-parameter math shared by the CPU and device paths.

Both paths draw the same numbers per sample (a vector of `N_UNIFORM` uniforms and a 5x5x2 array
of normals) and turn them into transforms with the functions below, so they agree in
distribution; the CPU path applies them with OpenCV per sample, the device path with
`F.grid_sample` per batch. Pixel coordinates follow OpenCV: x right, y down, integer values
at pixel centres.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from faceswap.config import check, option

# uniforms per sample: 0-4 geometry (angle, zoom, shift x, shift y, flip), 5-8 colour
# (brightness, contrast, saturation, hue), 9 landmark-warp partner, 10-18 the 3x3 lighting grid
N_UNIFORM = 19
WARP_POINTS = 5  # control points per side of the random warp grid (deepfakes: 5x5)
LIGHT_POINTS = 3
FLOW_GRID = 16  # side of the coarse grid the landmark warp is evaluated on
TPS_REG = 1e-3  # smoothing of the landmark warp (unit-square units); keeps near-coincident
# landmarks (a closed mouth's lips) from making the spline fold
NEIGHBOURS = 10  # warp_to_landmarks picks among this many closest faces

# ITU-R BT.601 luma weights and the RGB <-> YIQ matrices used for the hue rotation
LUMA = (0.299, 0.587, 0.114)
_LUMA = np.array(LUMA)
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


@dataclass
class AugmentConfig:
    """Training-data augmentation. Every random choice is seeded (see FaceDataset)."""

    random_warp: bool = option(True, "random 5x5-grid warp of the input only (target stays clean)")
    warp_to_landmarks: bool = option(
        False, "warp the input toward a similar face's landmarks instead of the random grid"
    )
    warp_scale: float = option(0.03, "std of the warp control points, fraction of the face side")
    rotation: float = option(10.0, "max rotation in degrees (input and target alike)")
    zoom: float = option(0.05, "max zoom in or out, fraction (input and target alike)")
    shift: float = option(0.05, "max shift, fraction of the face side (input and target alike)")
    flip: float = option(0.5, "probability of a horizontal flip (input and target alike)")
    color: float = option(0.1, "brightness/contrast/saturation/hue jitter strength, 0 = off")
    lighting: float = option(0.1, "low-frequency lighting gradient strength, 0 = off")
    # 0.75: the last quarter without warps gave 40% more detail at 1,200 CPU-seconds on both
    # real pairs with identity held; 0.5, the last half, then brought both pairs nearer B with
    # as much detail, the mouth and seam better on d9-d6 (docs/quality.md). Measured on short
    # CPU runs only: a long GPU run may want its warps longer.
    warp_until: float = option(
        0.5,
        "share of the run after which the input warps stop (DeepFaceLab turns them off to "
        "sharpen a converged model); 1 = always on",
    )

    def __post_init__(self) -> None:
        check(0.0 <= self.warp_scale <= 0.2, "warp_scale must be between 0 and 0.2")
        check(0.0 <= self.rotation <= 180.0, "rotation must be between 0 and 180 degrees")
        check(0.0 <= self.zoom < 1.0, "zoom must be in [0, 1)")
        check(0.0 <= self.shift <= 0.5, "shift must be between 0 and 0.5")
        check(0.0 <= self.flip <= 1.0, "flip must be a probability in [0, 1]")
        check(0.0 <= self.color <= 1.0, "color must be between 0 and 1")
        check(0.0 <= self.lighting <= 1.0, "lighting must be between 0 and 1")
        check(0.0 <= self.warp_until <= 1.0, "warp_until must be between 0 and 1")

    @property
    def has_geometry(self) -> bool:
        return self.rotation > 0 or self.zoom > 0 or self.shift > 0 or self.flip > 0

    def at(self, progress: float) -> AugmentConfig:
        """The augmentation at this share of the run: without the warps from warp_until on.
        Pure, so a resumed run augments as the uninterrupted one did."""
        if progress < self.warp_until or self.warp_until >= 1.0 or not self.has_warp:
            return self
        return dataclasses.replace(self, random_warp=False, warp_to_landmarks=False)

    @property
    def has_warp(self) -> bool:
        return self.warp_to_landmarks or (self.random_warp and self.warp_scale > 0)


def geometry_matrix(u: np.ndarray, cfg: AugmentConfig, size: int) -> np.ndarray:
    """(2, 3) forward pixel matrix (source -> output, as for cv2.warpAffine) from u[0:5]:
    horizontal flip, then rotation and zoom about the centre, then shift. Scalar math: this
    runs once per sample on the CPU path, where numpy's per-call overhead would dominate."""
    angle = math.radians((2.0 * u[0] - 1.0) * cfg.rotation)
    scale = 1.0 + (2.0 * u[1] - 1.0) * cfg.zoom
    sx = (2.0 * u[2] - 1.0) * cfg.shift * size
    sy = (2.0 * u[3] - 1.0) * cfg.shift * size
    fx = -1.0 if u[4] < cfg.flip else 1.0
    a, b = scale * math.cos(angle), scale * math.sin(angle)
    c = (size - 1) / 2.0
    # cv2.getRotationMatrix2D's convention (positive = counter-clockwise on screen), times flip
    l00, l01, l10, l11 = a * fx, b, -b * fx, a
    return np.array([
        [l00, l01, c + sx - (l00 + l01) * c],
        [l10, l11, c + sy - (l10 + l11) * c],
    ])  # fmt: skip


def geometry_matrices(u: np.ndarray, cfg: AugmentConfig, size: int) -> np.ndarray:
    """(B, 2, 3) `geometry_matrix` of each row of u (B, N_UNIFORM)."""
    return np.stack([geometry_matrix(row, cfg, size) for row in np.atleast_2d(u)])


# hue rotation by h in the YIQ chroma plane = _HUE0 + cos(h) _HUE_C + sin(h) _HUE_S
_HUE0 = _YIQ2RGB @ np.diag([1.0, 0.0, 0.0]) @ _RGB2YIQ
_HUE_C = _YIQ2RGB @ np.diag([0.0, 1.0, 1.0]) @ _RGB2YIQ
_HUE_S = _YIQ2RGB @ np.array([[0.0, 0, 0], [0, 0, -1], [0, 1, 0]]) @ _RGB2YIQ
_GREY = np.outer(np.ones(3), _LUMA)


def color_matrix(u: np.ndarray, cfg: AugmentConfig, mean_luma: float) -> np.ndarray:
    """(3, 4) affine colour map on RGB in [0, 1] from u[5:9]: saturation and hue (a rotation
    of the YIQ chroma plane), contrast about the image's mean luma, brightness. All four are
    linear, so they fold into one matrix plus offset."""
    s = cfg.color
    bright = 1.0 + (2.0 * u[5] - 1.0) * s
    contrast = 1.0 + (2.0 * u[6] - 1.0) * s
    sat = 1.0 + (2.0 * u[7] - 1.0) * s
    hue = (2.0 * u[8] - 1.0) * s * (math.pi / 2)  # strength 0.1 turns hue by up to 9 degrees
    hue_m = _HUE0 + math.cos(hue) * _HUE_C + math.sin(hue) * _HUE_S
    sat_m = sat * np.eye(3) + (1.0 - sat) * _GREY
    out = np.empty((3, 4))
    out[:, :3] = (bright * contrast) * (hue_m @ sat_m)
    out[:, 3] = bright * (1.0 - contrast) * float(mean_luma)
    return out


def color_matrices(u: np.ndarray, cfg: AugmentConfig, mean_luma: np.ndarray) -> np.ndarray:
    """(B, 3, 4) `color_matrix` of each row of u with each face's mean luma (B,)."""
    u = np.atleast_2d(u)
    return np.stack([color_matrix(row, cfg, m) for row, m in zip(u, np.ravel(mean_luma))])


def lighting_grid(u: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """(3, 3) coarse gains in [1 - lighting, 1 + lighting] from u[10:19]; upsampled smoothly
    they give a low-frequency light field (gradients, one-sided light, vignettes)."""
    return (1.0 + (2.0 * np.asarray(u[10:19]) - 1.0) * cfg.lighting).reshape(3, 3)


def lighting_grids(u: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """(B, 3, 3) `lighting_grid` of each row of u."""
    return np.stack([lighting_grid(row, cfg) for row in np.atleast_2d(u)])


def partner(u9: float, n_neighbours: int) -> int:
    """Which of the nearest faces a landmark warp goes toward."""
    return min(int(u9 * n_neighbours), n_neighbours - 1)


def coarse_grid_positions(size: int, grid: int) -> np.ndarray:
    """Pixel positions of the samples of a (grid, grid) array that cv2.resize (and
    F.interpolate, align_corners=False) stretches to (size, size): (grid,) array."""
    return (np.arange(grid) + 0.5) * size / grid - 0.5


def _tps_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Thin-plate kernel r^2 log r between point sets a (n, 2) and b (m, 2): (n, m)."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * a @ b.T
    np.maximum(d2, 1e-30, out=d2)  # r = 0 gives 0 * log(tiny) = 0
    return 0.5 * d2 * np.log(d2)


@functools.lru_cache(maxsize=16)
def tps_frame(size: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-square anchors pinned to zero displacement along the border (16, 2) and the
    coarse evaluation points (grid * grid, 2) of `landmark_flow`, row-major."""
    t, mid = np.linspace(0.0, size - 1.0, 5), np.linspace(0.0, size - 1.0, 5)[1:-1]
    lo, hi = np.zeros_like, lambda v: np.full_like(v, size - 1.0)
    sides = ((t, lo(t)), (t, hi(t)), (lo(mid), mid), (hi(mid), mid))
    ring = np.concatenate([np.stack(p, 1) for p in sides])
    g = coarse_grid_positions(size, grid)
    gx, gy = np.meshgrid(g, g)
    q = np.stack([gx.ravel(), gy.ravel()], 1)
    ring, q = ring / size, q / size
    ring.setflags(write=False)
    q.setflags(write=False)
    return ring, q


def landmark_flow(
    src: np.ndarray, dst: np.ndarray, size: int, grid: int = FLOW_GRID, reg: float = TPS_REG
) -> np.ndarray:
    """(grid, grid, 2) backward displacement in pixels that moves the face's landmarks `src`
    to `dst`: output pixel p samples the face at p + flow(p). A regularised thin-plate spline
    through the 68 landmarks, pinned to zero along the border; evaluate it densely by resizing
    (cv2.resize / F.interpolate with align_corners=False). gpu_augment.landmark_flows is the
    batched torch version."""
    ring, q = tps_frame(size, grid)
    dst = np.asarray(dst, np.float64) / size
    pts = np.concatenate([dst, ring])  # (n, 2) unit square
    n, m = len(pts), len(dst)
    a = np.zeros((n + 3, n + 3))
    a[:n, :n] = _tps_kernel(pts, pts) + reg * np.eye(n)
    a[:n, n] = a[n, :n] = 1.0
    a[:n, n + 1 :] = pts
    a[n + 1 :, :n] = pts.T
    rhs = np.zeros((n + 3, 2))
    rhs[:m] = np.asarray(src, np.float64) / size - dst
    coef = np.linalg.solve(a, rhs)
    flow = _tps_kernel(q, pts) @ coef[:n] + coef[n] + q @ coef[n + 1 :]
    return (flow * size).reshape(grid, grid, 2).astype(np.float32)


def nearest_faces(landmarks: np.ndarray, k: int = NEIGHBOURS, chunk: int = 512) -> np.ndarray:
    """(N, k') indices of each face's k nearest other faces by landmark distance
    (k' = min(k, N - 1)); chunked so memory stays O(chunk * N)."""
    n = len(landmarks)
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64)
    x = landmarks.reshape(n, -1).astype(np.float32)
    sq = (x * x).sum(1)
    out = np.empty((n, k), dtype=np.int64)
    for a in range(0, n, chunk):
        d = sq[a : a + chunk, None] + sq[None] - 2.0 * x[a : a + chunk] @ x.T
        rows = np.arange(a, min(a + chunk, n))
        d[rows - a, rows] = np.inf
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(d, part, 1).argsort(1, kind="stable")
        out[a : a + chunk] = np.take_along_axis(part, order, 1)
    return out
