"""Synthetic occluders pasted onto real faces: the segmentation's training signal for "not face".

An occluder is a shape (where it covers) and a texture (what it looks like there). Shapes come
in families; training uses TRAIN_SHAPES and the benchmark also HELD_OUT_SHAPES, which training
never sees, so the benchmark measures cutting out occluders in general, not the shapes learned.
Textures are crops of scikit-image's sample photos (objects, cats, coffee, rockets, textures:
held-out ones for the benchmark too) and skin cut from other faces (a hand is skin-coloured,
the hard case for a segmenter that learned "skin = face").

All functions are pure given the numpy Generator: a seed reproduces the same occluders.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import cv2
import numpy as np

TRAIN_SHAPES = ("ellipse", "polygon", "rect", "hand", "blob", "edge")
HELD_OUT_SHAPES = ("mic", "crescent", "star")
TRAIN_TEXTURES = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                  "brick", "grass", "gravel", "retina", "colorwheel", "camera", "moon")  # fmt: skip
HELD_OUT_TEXTURES = ("coins", "page", "text", "cat", "logo")


@functools.lru_cache(maxsize=32)
def _texture_image(name: str) -> np.ndarray:
    """A scikit-image sample photo as BGR uint8 (grey ones repeated over three channels)."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3][..., ::-1]).astype(np.uint8)
    img.setflags(write=False)
    return img


def texture(rng: np.random.Generator, size: int, names: tuple[str, ...],
            skins: list[np.ndarray] | None = None) -> np.ndarray:  # fmt: skip
    """(size, size, 3) BGR uint8: a random crop of a sample photo, or (a third of the time,
    when `skins` are given) a patch of another face's skin, stretched and tinted."""
    if skins and rng.random() < 0.35:
        src = skins[int(rng.integers(len(skins)))]
    else:
        src = _texture_image(names[int(rng.integers(len(names)))])
    h, w = src.shape[:2]
    side = int(rng.integers(max(8, min(h, w) // 6), min(h, w) + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    patch = cv2.resize(
        src[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_LINEAR
    )
    gain = rng.uniform(0.6, 1.3, size=3) * rng.uniform(0.7, 1.2)
    return cv2.multiply(patch, (*gain.tolist(), 0.0), dtype=cv2.CV_8U)  # saturating


def skin_patch(face_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A square of cheek skin from an aligned face (below the eye, beside the nose)."""
    lm = np.asarray(landmarks)
    eye, nose = lm[36:42].mean(0), lm[31]
    c = (eye + nose) / 2
    r = max(4, int(np.linalg.norm(eye - nose) * 0.35))
    x, y = int(c[0]), int(c[1])
    h, w = face_bgr.shape[:2]
    x0, y0 = np.clip([x - r, y - r], 0, [w - 2, h - 2])
    return face_bgr[y0 : y0 + 2 * r, x0 : x0 + 2 * r].copy()


# ---- shapes: (size, size) uint8 masks, 255 where the occluder covers --------------------


def _ellipse(rng, size, c, r):
    m = np.zeros((size, size), np.uint8)
    axes = (int(r * rng.uniform(0.5, 1.0)), int(r * rng.uniform(0.3, 1.0)))
    cv2.ellipse(m, (int(c[0]), int(c[1])), axes, rng.uniform(0, 180), 0, 360, 255, -1)
    return m


def _polygon(rng, size, c, r):
    m = np.zeros((size, size), np.uint8)
    n = int(rng.integers(3, 9))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * rng.uniform(0.5, 1.0, n)
    pts = np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], 1)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 255)
    return m


def _rect(rng, size, c, r):
    m = np.zeros((size, size), np.uint8)
    box = cv2.boxPoints(((c[0], c[1]), (r * rng.uniform(0.4, 2.0), r * rng.uniform(0.2, 1.0)),
                         rng.uniform(0, 180)))  # fmt: skip
    cv2.fillPoly(m, [np.round(box).astype(np.int32)], 255)
    return m


def _capsule(m, p, q, width):
    cv2.line(m, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 255, max(1, int(width)))
    for pt in (p, q):
        cv2.circle(m, (int(pt[0]), int(pt[1])), max(1, int(width / 2)), 255, -1)


def _hand(rng, size, c, r):
    """A palm and four or five fingers (capsules) fanning out, at a random angle."""
    m = np.zeros((size, size), np.uint8)
    a = rng.uniform(0, 2 * np.pi)
    d = np.array([np.cos(a), np.sin(a)])
    palm = r * 0.55
    cv2.ellipse(m, (int(c[0]), int(c[1])), (int(palm), int(palm * 0.8)), np.degrees(a), 0, 360,
                255, -1)  # fmt: skip
    n = int(rng.integers(4, 6))
    for k in range(n):
        fa = a + (k - (n - 1) / 2) * rng.uniform(0.25, 0.4)
        fd = np.array([np.cos(fa), np.sin(fa)])
        base = c + fd * palm * 0.7
        tip = base + fd * r * rng.uniform(0.5, 0.9)
        _capsule(m, base, tip, r * rng.uniform(0.14, 0.2))
    # the wrist/arm runs out of the crop the other way
    _capsule(m, c, c - d * size, palm * 1.1)
    return m


def _blob(rng, size, c, r):
    """A smooth random blob: thresholded low-frequency noise inside a soft disc."""
    g = 12
    noise = cv2.resize(rng.standard_normal((g, g)).astype(np.float32), (size, size),
                       interpolation=cv2.INTER_CUBIC)  # fmt: skip
    yy, xx = np.mgrid[0:size, 0:size]
    disc = 1.0 - np.hypot(xx - c[0], yy - c[1]) / max(r, 1.0)
    return ((disc * 2.0 + noise * 0.6) > 0.6).astype(np.uint8) * 255


def _edge(rng, size, c, r):
    """Something coming in from the crop's edge (a shoulder, a raised object): a thick band
    from a random side towards the face."""
    m = np.zeros((size, size), np.uint8)
    a = rng.uniform(0, 2 * np.pi)
    d = np.array([np.cos(a), np.sin(a)])
    _capsule(m, c, c + d * size * 1.5, r * rng.uniform(0.6, 1.4))
    return m


def _mic(rng, size, c, r):
    """Held out: a microphone, a ball on a long thin handle."""
    m = np.zeros((size, size), np.uint8)
    a = rng.uniform(0, 2 * np.pi)
    d = np.array([np.cos(a), np.sin(a)])
    head = r * rng.uniform(0.35, 0.55)
    cv2.circle(m, (int(c[0]), int(c[1])), int(head), 255, -1)
    _capsule(m, c, c + d * size, head * rng.uniform(0.35, 0.6))
    return m


def _crescent(rng, size, c, r):
    """Held out: a disc with a bite taken out of it."""
    m = np.zeros((size, size), np.uint8)
    cv2.circle(m, (int(c[0]), int(c[1])), int(r * 0.8), 255, -1)
    a = rng.uniform(0, 2 * np.pi)
    off = c + np.array([np.cos(a), np.sin(a)]) * r * rng.uniform(0.4, 0.7)
    cv2.circle(m, (int(off[0]), int(off[1])), int(r * 0.7), 0, -1)
    return m


def _star(rng, size, c, r):
    """Held out: a concave star (5 to 7 points)."""
    m = np.zeros((size, size), np.uint8)
    n = int(rng.integers(5, 8))
    a0 = rng.uniform(0, 2 * np.pi)
    ang = a0 + np.arange(2 * n) * np.pi / n
    rad = np.where(np.arange(2 * n) % 2 == 0, r, r * rng.uniform(0.35, 0.5))
    pts = np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], 1)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 255)
    return m


SHAPES: dict[str, Callable[..., np.ndarray]] = {
    "ellipse": _ellipse, "polygon": _polygon, "rect": _rect, "hand": _hand, "blob": _blob,
    "edge": _edge, "mic": _mic, "crescent": _crescent, "star": _star,
}  # fmt: skip


def shape_mask(rng: np.random.Generator, size: int, family: str, face: np.ndarray) -> np.ndarray:
    """(size, size) uint8 occluder shape of `family`, placed over the face mask `face`
    (uint8 or bool, (size, size)): its centre on a random point of the face, its radius 15-45%
    of the crop."""
    if family not in SHAPES:
        raise ValueError(f"occluder shape must be one of {', '.join(SHAPES)}, not {family!r}")
    ys, xs = np.nonzero(face)
    if len(xs):
        k = int(rng.integers(len(xs)))
        c = np.array([xs[k], ys[k]], np.float64)
    else:
        c = np.array([size / 2, size / 2])
    r = size * rng.uniform(0.15, 0.45)
    return SHAPES[family](rng, size, c, r)


def paste(image: np.ndarray, shape: np.ndarray, tex: np.ndarray, rng: np.random.Generator
          ) -> np.ndarray:  # fmt: skip
    """The image with `tex` pasted where `shape` covers, over a slightly soft edge (real
    occluders are not cut with scissors: a 0.5-1.5 px blur of the edge)."""
    sigma = rng.uniform(0.3, 1.5)
    x, y, w, h = cv2.boundingRect(shape)
    out = image.copy()
    if w == 0:
        return out
    # only the shape's box (plus the blur's reach) is blended
    m = int(3 * sigma) + 1
    x0, y0 = max(0, x - m), max(0, y - m)
    x1, y1 = min(shape.shape[1], x + w + m), min(shape.shape[0], y + h + m)
    alpha = cv2.GaussianBlur(shape[y0:y1, x0:x1].astype(np.float32) / 255.0, (0, 0), sigma)
    a = alpha[..., None]
    roi = image[y0:y1, x0:x1].astype(np.float32) * (1 - a) + tex[y0:y1, x0:x1] * a
    out[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
    return out


def glasses(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a pair of glasses (rims, bridge, sometimes tinted lenses) over the eyes. Unlike an
    occluder they stay in the face mask: the pseudo-labels (the landmark hull) count glasses as
    face, and a net that never saw glasses cuts them out of faces that wear them."""
    lm = np.asarray(landmarks, np.float64)
    out = image.copy()
    colour = tuple(int(v) for v in rng.integers(0, 90, 3)) if rng.random() < 0.7 else (
        tuple(int(v) for v in rng.integers(120, 255, 3)))  # fmt: skip
    thick = int(rng.integers(1, 5))
    eye_d = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
    w, h = eye_d * rng.uniform(0.38, 0.5), eye_d * rng.uniform(0.25, 0.38)
    tint = rng.random() < 0.3
    overlay = out.copy()
    centres = []
    for eye in (lm[36:42], lm[42:48]):
        c = eye.mean(0) + [0, eye_d * rng.uniform(-0.02, 0.08)]
        centres.append(c)
        box = ((float(c[0]), float(c[1])), (float(2 * w), float(2 * h)), 0.0)
        if tint:
            cv2.ellipse(overlay, box, colour, -1)
        cv2.ellipse(out, box, colour, thick)
    if tint:
        out = cv2.addWeighted(overlay, rng.uniform(0.2, 0.5), out, 1.0, 0.0)
        for c in centres:
            cv2.ellipse(out, ((float(c[0]), float(c[1])), (float(2 * w), float(2 * h)), 0.0),
                        colour, thick)  # fmt: skip
    a, b = centres[0] + [w, 0], centres[1] - [w, 0]
    cv2.line(out, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), colour, thick)
    return out


def occlude(
    image: np.ndarray,
    face: np.ndarray,
    rng: np.random.Generator,
    shapes: tuple[str, ...] = TRAIN_SHAPES,
    textures: tuple[str, ...] = TRAIN_TEXTURES,
    skins: list[np.ndarray] | None = None,
    count: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste `count` occluders over the face. Returns the occluded BGR image and the union of
    the occluder shapes ((size, size) uint8, 255 = covered)."""
    size = image.shape[0]
    covered = np.zeros((size, size), np.uint8)
    out = image
    for _ in range(count):
        fam = shapes[int(rng.integers(len(shapes)))]
        shape = shape_mask(rng, size, fam, face)
        out = paste(out, shape, texture(rng, size, textures, skins), rng)
        covered = np.maximum(covered, shape)
    return out, covered
