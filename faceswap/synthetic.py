"""Synthetic clips of a real face with known head motion.

The portrait from `skimage.data.astronaut()` (public domain, bundled with scikit-image, so no
download) is warped into larger frames by a per-frame similarity transform. Because every frame's
source-to-frame matrix is returned, tests can map known points of the portrait (for example the
landmarks detected on the still image) into each frame and compare them with what the extractor
finds there. The same clips feed the demo; `faceswap.demo.faces` gives its second identity and
the per-frame expressions (`render_clip` takes one face image per frame).

Coordinates are OpenCV pixel coordinates: x to the right, y down, integer values at pixel centres.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: Centre of the astronaut's face in the 512x512 source image (centre of the dlib HOG box).
ASTRONAUT_FACE_CENTER: tuple[float, float] = (220.0, 121.0)
#: Approximate face box (left, top, right, bottom) of the astronaut as dlib HOG sees it.
ASTRONAUT_FACE_BOX: tuple[int, int, int, int] = (175, 76, 265, 166)

# Mid-grey: neutral for detectors and far from both skin tones and the dark suit.
_DEFAULT_BACKGROUND_BGR = (128, 128, 128)

# Periods (in frames) of the sinusoids in `head_motion`. At 24 fps these are 2.5-7.5 s, the pace
# of a person turning their head while talking; the lower bound caps the per-frame step at
# 2*pi/60 (about 0.105) of the amplitude, i.e. about 4.2 px for the default 40 px shift.
_MIN_PERIOD = 60.0
_MAX_PERIOD = 180.0
_N_COMPONENTS = 3


@dataclass(frozen=True)
class Motion:
    """Per-frame similarity motion of the face.

    Attributes:
        dx: Horizontal shift in pixels of the output frame, of the face centre from the frame
            centre.
        dy: Vertical shift in pixels of the output frame (positive is down).
        angle: Rotation in degrees, counter-clockwise positive as in `cv2.getRotationMatrix2D`.
        scale: Uniform scale, multiplied with the clip's base scale.
    """

    dx: float
    dy: float
    angle: float
    scale: float


def _smooth_signal(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """A sum of a few low-frequency sinusoids with random periods, phases and weights, in [-1, 1].

    The weights are non-negative and sum to 1, so the result never leaves [-1, 1] and callers can
    scale it straight to their amplitude.
    """
    periods = rng.uniform(_MIN_PERIOD, _MAX_PERIOD, size=_N_COMPONENTS)
    phases = rng.uniform(0.0, 2.0 * math.pi, size=_N_COMPONENTS)
    weights = rng.uniform(0.5, 1.0, size=_N_COMPONENTS)
    weights /= weights.sum()
    waves = np.sin(2.0 * math.pi * t[:, None] / periods[None, :] + phases[None, :])
    return waves @ weights


def head_motion(
    n_frames: int,
    *,
    seed: int = 0,
    max_shift: float = 40.0,
    max_angle: float = 12.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
) -> list[Motion]:
    """Smooth, deterministic head motion for `n_frames` frames.

    Each of dx, dy, angle and scale is an independent sum of three sinusoids with periods of
    60-180 frames and phases drawn from `seed`, so consecutive frames differ by small amounts as a
    real head does: at most about 0.105 of the amplitude per frame (4.2 px and 1.3 degrees with the
    defaults).

    Args:
        n_frames: Number of frames (>= 0).
        seed: Seed for periods, phases and weights; the same seed gives the same motion.
        max_shift: Bound on |dx| and |dy| in output pixels.
        max_angle: Bound on |angle| in degrees.
        scale_range: (low, high) bounds of the scale.

    Returns:
        One `Motion` per frame.
    """
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    if max_shift < 0 or max_angle < 0:
        raise ValueError("max_shift and max_angle must be >= 0")
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")

    rng = np.random.default_rng(seed)
    t = np.arange(n_frames, dtype=np.float64)
    # Draw the channels in a fixed order so that a seed always gives the same motion.
    dx = max_shift * _smooth_signal(rng, t)
    dy = max_shift * _smooth_signal(rng, t)
    angle = max_angle * _smooth_signal(rng, t)
    scale = (lo + hi) / 2.0 + (hi - lo) / 2.0 * _smooth_signal(rng, t)
    return [
        Motion(float(a), float(b), float(c), float(d))
        for a, b, c, d in zip(dx, dy, angle, scale, strict=True)
    ]


def _check_frame_size(frame_size: tuple[int, int]) -> tuple[int, int]:
    width, height = (int(v) for v in frame_size)
    if width <= 0 or height <= 0:
        raise ValueError(f"frame_size must be positive (width, height), got {frame_size}")
    return width, height


def _frame_center(width: int, height: int) -> tuple[float, float]:
    # With integer coordinates at pixel centres, the geometric centre of a W-pixel row is
    # (W - 1) / 2, not W / 2.
    return (width - 1) / 2.0, (height - 1) / 2.0


def _similarity_matrix(
    motion: Motion,
    frame_size: tuple[int, int],
    *,
    face_center: tuple[float, float],
    base_scale: float,
) -> np.ndarray:
    """The 2x3 float64 matrix that maps source-image pixels to frame pixels for `motion`.

    The source is scaled by `base_scale * motion.scale` and rotated by `motion.angle` about
    `face_center`, which lands at the frame centre ((W - 1) / 2, (H - 1) / 2) plus (dx, dy).
    """
    width, height = _check_frame_size(frame_size)
    scale = base_scale * motion.scale
    if scale <= 0:
        raise ValueError(f"base_scale * motion.scale must be > 0, got {scale}")
    fx, fy = float(face_center[0]), float(face_center[1])
    m = cv2.getRotationMatrix2D((fx, fy), float(motion.angle), float(scale)).astype(np.float64)
    # getRotationMatrix2D keeps face_center fixed; shift it to its target in the frame.
    cx, cy = _frame_center(width, height)
    m[0, 2] += cx + motion.dx - fx
    m[1, 2] += cy + motion.dy - fy
    return m


def transform_points(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points.

    Args:
        M: 2x3 affine matrix (as returned by `render_frame`).
        pts: (N, 2) array of (x, y) points.

    Returns:
        (N, 2) float64 array of transformed points.
    """
    m = np.asarray(M, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"M must be 2x3, got shape {m.shape}")
    p = np.asarray(pts, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"pts must be (N, 2), got shape {p.shape}")
    return p @ m[:, :2].T + m[:, 2]


def render_frame(
    face_rgb: np.ndarray,
    motion: Motion,
    frame_size: tuple[int, int],
    *,
    face_center: tuple[float, float],
    base_scale: float,
    background: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one frame of the source image moved by `motion`.

    Args:
        face_rgb: Source image, (h, w, 3) uint8 RGB.
        motion: This frame's motion.
        frame_size: (width, height) of the output frame.
        face_center: Point of the source image (x, y) that the motion is about.
        base_scale: Scale of the source in the frame before `motion.scale`.
        background: Optional (height, width, 3) uint8 BGR image behind the source; plain mid-grey
            when None.

    Returns:
        (frame_bgr, M): the (height, width, 3) uint8 BGR frame and the 2x3 float64 matrix that
        maps source-image pixel coordinates to frame pixel coordinates.
    """
    src = np.asarray(face_rgb)
    if src.ndim != 3 or src.shape[2] != 3 or src.dtype != np.uint8:
        raise ValueError(f"face_rgb must be (h, w, 3) uint8, got {src.shape} {src.dtype}")
    width, height = _check_frame_size(frame_size)
    m = _similarity_matrix(motion, (width, height), face_center=face_center, base_scale=base_scale)

    if background is None:
        bg = np.empty((height, width, 3), np.uint8)
        bg[:] = _DEFAULT_BACKGROUND_BGR
    else:
        bg = np.asarray(background)
        if bg.shape != (height, width, 3) or bg.dtype != np.uint8:
            raise ValueError(
                f"background must be ({height}, {width}, 3) uint8, got {bg.shape} {bg.dtype}"
            )

    src_bgr = cv2.cvtColor(src, cv2.COLOR_RGB2BGR)
    size = (width, height)
    # Warping with a black constant border makes the warped image alpha-premultiplied at the
    # source's edges (bilinear weights mix in zeros); warping an all-ones mask the same way gives
    # exactly that alpha. Compositing premultiplied colour over the background then gives clean,
    # anti-aliased edges on any background instead of a grey or black seam.
    warped = cv2.warpAffine(
        src_bgr,
        m,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    ).astype(np.float32)
    alpha = cv2.warpAffine(
        np.ones(src.shape[:2], np.float32),
        m,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )[..., None]
    frame = warped + bg.astype(np.float32) * (1.0 - alpha)
    frame_bgr = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return frame_bgr, m


@functools.lru_cache(maxsize=1)
def _astronaut_cached() -> np.ndarray:
    from skimage import data  # imported lazily: skimage.data is slow to import

    img = np.ascontiguousarray(data.astronaut(), dtype=np.uint8)
    # Read-only so that no caller can corrupt the shared cached copy.
    img.setflags(write=False)
    return img


def astronaut() -> np.ndarray:
    """The 512x512 RGB uint8 astronaut portrait from `skimage.data.astronaut()`, cached.

    The array is read-only because it is shared between callers; copy it before drawing on it.
    """
    return _astronaut_cached()


#: What `render_clip` takes as the face: one image for every frame, one image per frame (a
#: sequence, or an (N, h, w, 3) array), or a function from the frame index to its image.
FaceImages = np.ndarray | Sequence[np.ndarray] | Callable[[int], np.ndarray]


def _face_per_frame(face_rgb: FaceImages | None, n_frames: int) -> Callable[[int], np.ndarray]:
    """frame index -> source image, checked before anything is written where it can be."""
    if face_rgb is None:
        src = astronaut()
        return lambda i: src
    if callable(face_rgb):
        # A callable that knows its length (faceswap.demo.faces.ExpressionClip) is checked too.
        if isinstance(face_rgb, Sized) and len(face_rgb) < n_frames:
            raise ValueError(f"face_rgb has {len(face_rgb)} frames but n_frames is {n_frames}")
        return face_rgb
    if isinstance(face_rgb, np.ndarray) and face_rgb.ndim == 3:
        return lambda i: face_rgb
    if len(face_rgb) != n_frames:
        raise ValueError(f"face_rgb has {len(face_rgb)} images but n_frames is {n_frames}")
    return lambda i: face_rgb[i]


def render_clip(
    path: str | os.PathLike[str],
    n_frames: int = 48,
    *,
    frame_size: tuple[int, int] = (1280, 720),
    fps: float = 24.0,
    seed: int = 0,
    base_scale: float = 2.0,
    face_rgb: FaceImages | None = None,
    face_center: tuple[float, float] | None = None,
    motion: list[Motion] | None = None,
) -> list[np.ndarray]:
    """Write an MP4 clip of the face moving by known motion.

    Args:
        path: Output .mp4 path; missing parent folders are created.
        n_frames: Number of frames.
        frame_size: (width, height) of the video.
        fps: Frame rate written into the file.
        seed: Seed for `head_motion` when `motion` is None.
        base_scale: Scale of the source image in the frame (before each frame's motion scale).
        face_rgb: Source RGB uint8 image; the astronaut portrait when None. For a face that
            changes over the clip (expressions), one image per frame: a sequence of
            `n_frames` images, an (n_frames, h, w, 3) array, or a callable taking the frame
            index (0 .. n_frames - 1) and returning that frame's image.
        face_center: Point of the source the motion is about; `ASTRONAUT_FACE_CENTER` when None
            (right for the astronaut, `recolor_identity` variants of it and the demo faces of
            `faceswap.demo.faces`; pass your own for another image).
        motion: Per-frame motion, `len(motion) == n_frames`; `head_motion(n_frames, seed=seed)`
            when None.

    Returns:
        One 2x3 float64 matrix per frame, mapping source-image coordinates to frame coordinates.

    Raises:
        RuntimeError: The video writer could not be opened for `path`.
    """
    width, height = _check_frame_size(frame_size)
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    face_at = _face_per_frame(face_rgb, n_frames)
    center = ASTRONAUT_FACE_CENTER if face_center is None else face_center
    if motion is None:
        motion = head_motion(n_frames, seed=seed)
    elif len(motion) != n_frames:
        raise ValueError(f"motion has {len(motion)} entries but n_frames is {n_frames}")

    out = Path(path)
    # VideoWriter fails to open (without saying why) when the folder is missing.
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"could not open a video writer (mp4v) for {out}")
    matrices: list[np.ndarray] = []
    try:
        for i, mo in enumerate(motion):
            frame, m = render_frame(
                face_at(i), mo, (width, height), face_center=center, base_scale=base_scale
            )
            writer.write(frame)
            matrices.append(m)
    finally:
        writer.release()
    logger.debug("wrote %d synthetic frames (%dx%d) to %s", len(matrices), width, height, out)
    return matrices


def recolor_identity(
    face_rgb: np.ndarray,
    *,
    hue_shift: int = 10,
    saturation: float = 1.15,
    skin_tone: float = 0.85,
    seed: int = 1,
) -> np.ndarray:
    """A differently coloured variant of a portrait, to serve as a second identity.

    The whole image is changed in HSV: the hue is rotated, the saturation and the brightness are
    multiplied. The geometry is unchanged, so face boxes and `ASTRONAUT_FACE_CENTER` still apply.
    `seed` adds a small deterministic per-channel gain (within 3 %) so that different seeds give
    distinguishable variants with the same parameters.

    Args:
        face_rgb: (h, w, 3) uint8 RGB image.
        hue_shift: Hue rotation in OpenCV 8-bit hue units (0-179, two degrees each).
        saturation: Saturation multiplier.
        skin_tone: Brightness (HSV value) multiplier; below 1 darkens the skin.
        seed: Seed for the per-channel gain.

    Returns:
        (h, w, 3) uint8 RGB image.
    """
    src = np.asarray(face_rgb)
    if src.ndim != 3 or src.shape[2] != 3 or src.dtype != np.uint8:
        raise ValueError(f"face_rgb must be (h, w, 3) uint8, got {src.shape} {src.dtype}")
    if saturation < 0 or skin_tone < 0:
        raise ValueError("saturation and skin_tone must be >= 0")

    hsv = cv2.cvtColor(src, cv2.COLOR_RGB2HSV).astype(np.float32)
    # 8-bit OpenCV hue lives in [0, 180); wrap so a shift rotates rather than clips.
    hsv[..., 0] = np.mod(hsv[..., 0] + hue_shift, 180.0)
    hsv[..., 1] *= saturation
    hsv[..., 2] *= skin_tone
    hsv = np.clip(np.rint(hsv), 0, [179, 255, 255]).astype(np.uint8)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)

    gains = np.random.default_rng(seed).uniform(0.97, 1.03, size=3).astype(np.float32)
    return np.clip(np.rint(rgb * gains), 0, 255).astype(np.uint8)


def cached_faceset(
    target: str | os.PathLike[str],
    n_frames: int,
    size: int,
    *,
    seed: int = 0,
    face_rgb: np.ndarray | None = None,
) -> Path:
    """A face set extracted (dlib, no embeddings) from a rendered 480x270 clip, kept at `target`
    and reused while it loads with faces: what the benchmarks train on.

    It is built in a temporary folder beside `target` and moved into place at the end, so an
    interrupted build is never mistaken for a finished one.
    """
    import contextlib
    import shutil
    import tempfile

    from faceswap import faceset as fsmod
    from faceswap.config import ExtractConfig
    from faceswap.extract.pipeline import extract

    target = Path(target)
    with contextlib.suppress(Exception):
        if fsmod.load(target).faces:
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("making face set %s (%d frames at %d px)", target, n_frames, size)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        clip = Path(tmp) / "clip.mp4"
        render_clip(clip, n_frames, frame_size=(480, 270), base_scale=0.75, seed=seed,
                    face_rgb=face_rgb)  # fmt: skip
        extract([str(clip)], Path(tmp) / "set", ExtractConfig(size=size, embed=False))
        if target.exists():  # a broken earlier attempt
            shutil.rmtree(target)
        os.replace(Path(tmp) / "set", target)
    return target
