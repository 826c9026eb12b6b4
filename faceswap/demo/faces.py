"""Faces for the demo, made from the one real portrait that ships with scikit-image.

The astronaut portrait (`skimage.data.astronaut()`, public domain) is identity A. Identity B is
the same photo made into a different-looking, synthetic person (so the demo never swaps two real
people): dark brown hair, a warmer skin tone and fuller, darker eyebrows painted over the
original ones, then a smooth landmark-driven warp to another face shape (eyes closer together, a
fuller jaw, a wider nose and mouth). dlib's face embedding puts the two beyond its 0.6
same-person threshold (`identity_distance`).

Expressions are made the same way: the mouth, jaw, eyelid and brow landmarks are moved and the
image warped to follow (`expression`). For clips, `ExpressionClip` blends a bank of four
precomputed warps per frame, so a frame costs a few milliseconds instead of a full warp.

Coordinates are pixels of the 512x512 portrait, x right, y down. Landmarks are dlib's iBUG 68.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from faceswap.config import option
from faceswap.synthetic import astronaut

# iBUG 68 landmark groups (the subject's right side is on the image's left).
JAW, BROW_R, BROW_L = slice(0, 17), slice(17, 22), slice(22, 27)
NOSE_BRIDGE, NOSE = slice(27, 31), slice(31, 36)
EYE_R, EYE_L, MOUTH = slice(36, 42), slice(42, 48), slice(48, 68)
UPPER_INNER, LOWER_INNER = [61, 62, 63], [67, 66, 65]  # paired top to bottom


@functools.lru_cache(maxsize=1)
def _dlib_models():
    from faceswap.extract.aligners import make_aligner
    from faceswap.extract.detectors import make_detector

    return make_detector("dlib-hog"), make_aligner("dlib")


def find_landmarks(image_rgb: np.ndarray) -> np.ndarray | None:
    """(68, 2) landmarks of the largest face the dlib HOG detector finds, or None.

    The same backends as extraction's CPU default, so distances measured here match what the
    face sets of the demo clips will hold.
    """
    detector, aligner = _dlib_models()
    dets = detector.detect([image_rgb])[0]
    if not dets:
        return None
    best = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    return aligner.landmarks(image_rgb, [best.box])[0]


@functools.lru_cache(maxsize=1)
def astronaut_landmarks() -> np.ndarray:
    """(68, 2) read-only dlib landmarks of the astronaut portrait."""
    lm = find_landmarks(np.array(astronaut()))
    if lm is None:  # the portrait is frontal and sharp: this would be a broken dlib install
        raise RuntimeError("dlib found no face in the astronaut portrait")
    lm.setflags(write=False)
    return lm


def _eye_distance(lm: np.ndarray) -> float:
    """Outer eye corner to outer eye corner: the face's unit of length. Unlike the jaw width it
    is the same before and after `reshape_face` widens the jaw."""
    return float(np.linalg.norm(lm[45] - lm[36]))


# ---------------------------------------------------------------------------------------------
# Warping


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def warp_flow(size: tuple[int, int], src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(h, w, 2) float32 backward flow of a smooth warp moving points `src` to `dst`.

    Output pixel (x, y) takes its colour from input (x, y) + flow[y, x]: mapping output to input
    leaves no holes. The flow is a thin-plate spline through the (N, 2) points, pinned to zero
    on a ring around them (1.6x their extent) and on the image border. A spline is not local
    (a dropped jaw would still shift the suit below by pixels), so the flow is also faded out
    between 1.15x and 1.6x the points' extent, a window of `flow_radius`: everything outside it
    stays exactly in place. Solved on a 4-px grid and upsampled: smooth enough, 16x cheaper.
    """
    from scipy.interpolate import RBFInterpolator

    w, h = size
    centre, radius = flow_radius(dst)
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = centre + radius * np.stack([np.cos(ang), np.sin(ang)], 1)
    xs, ys = np.linspace(0, w - 1, 5), np.linspace(0, h - 1, 5)
    border = np.array(
        [(x, y) for x in xs for y in (0, h - 1)] + [(x, y) for y in ys[1:-1] for x in (0, w - 1)]
    )
    anchors = np.vstack([ring, border])
    pts = np.vstack([dst, anchors])
    disp = np.vstack([src - dst, np.zeros_like(anchors)])
    spline = RBFInterpolator(pts, disp, kernel="thin_plate_spline", smoothing=1.0)
    gy, gx = np.mgrid[0:h:4, 0:w:4]
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float64)
    flow = spline(grid).reshape(*gy.shape, 2).astype(np.float32)  # (h/4, w/4, 2)
    flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)  # (h, w, 2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(xx - centre[0], yy - centre[1]) / radius  # (h, w), 1 at the ring
    fade = _smoothstep((1.0 - r) / (1.0 - 1.15 / 1.6)).astype(np.float32)
    return flow * fade[..., None]


def flow_radius(dst: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (2,) and radius of the disc outside which `warp_flow(.., dst)` is exactly 0."""
    centre = dst.mean(0)
    return centre, float(np.linalg.norm(dst - centre, axis=1).max() * 1.6)


def apply_flow(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Resample `image` with a backward flow from `warp_flow` (bilinear, reflected border)."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(
        image, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


def landmark_warp(image: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Warp `image` so that its points `src` (N, 2) move to `dst` (N, 2), smoothly."""
    h, w = image.shape[:2]
    return apply_flow(image, warp_flow((w, h), src, dst))


# ---------------------------------------------------------------------------------------------
# Masks and colour


def hair_mask(image_rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(h, w) float32 soft mask of the hair, by GrabCut seeded from the face geometry.

    Colour thresholds alone fail here: blond hair, the skin and the warm grey background are
    close in colour, and the hair is streaked. GrabCut gets a head-sized ellipse as "probably
    hair", a band in the crown as "surely hair", and the landmark hull (the face), everything
    below the ears and everything far from the head as "surely not"; its colour models and edge
    term then find the hairline and the outline against the background.
    """
    h, w = image_rgb.shape[:2]
    ed = _eye_distance(lm)
    cx, top = float(lm[27, 0]), float(lm[BROW_R.start : BROW_L.stop, 1].min())
    head = (int(cx), int(top + 0.2 * ed))
    gc = np.full((h, w), cv2.GC_BGD, np.uint8)
    cv2.ellipse(gc, head, (int(2.5 * ed), int(2.6 * ed)), 0, 0, 360, cv2.GC_PR_BGD, -1)
    cv2.ellipse(gc, head, (int(1.8 * ed), int(1.9 * ed)), 0, 0, 360, cv2.GC_PR_FGD, -1)
    cv2.fillConvexPoly(gc, cv2.convexHull(lm.astype(np.int32)), cv2.GC_BGD)
    # The forehead between the brows and the hairline is the one place the hull misses.
    x0, x1 = int(lm[19, 0]), int(lm[24, 0])
    cv2.rectangle(gc, (x0, int(top - 0.42 * ed)), (x1, int(top)), cv2.GC_PR_BGD, -1)
    crown = (int(cx), int(top - 0.6 * ed))
    cv2.ellipse(gc, crown, (int(0.75 * ed), int(0.15 * ed)), 0, 0, 360, cv2.GC_FGD, -1)
    ears = int(lm[3, 1])  # the hair is not assumed to reach below the ears
    gc[ears:] = cv2.GC_BGD
    # GrabCut on the head's neighbourhood only: 3x faster than on the whole image.
    xa, xb = max(int(cx - 2.9 * ed), 0), min(int(cx + 2.9 * ed), w)
    sub = np.ascontiguousarray(gc[:ears, xa:xb])
    cv2.setRNGSeed(0)  # GrabCut's k-means initialisation draws from OpenCV's global RNG
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    crop = np.ascontiguousarray(image_rgb[:ears, xa:xb])
    cv2.grabCut(crop, sub, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    mask = np.zeros((h, w), np.float32)
    mask[:ears, xa:xb] = (sub == cv2.GC_FGD) | (sub == cv2.GC_PR_FGD)
    return cv2.GaussianBlur(mask, (0, 0), 1.2)


def skin_mask(image_rgb: np.ndarray, lm: np.ndarray, hair: np.ndarray) -> np.ndarray:
    """(h, w) float32 soft mask of the skin of face, ears and neck, not hair, eyes or teeth.

    A Gaussian colour model (Lab) of the face inside the landmark hull, without eyes, brows and
    mouth, is thresholded by Mahalanobis distance within an ellipse around the head, so the
    ears and the neck are found too but the orange suit below is not.
    """
    h, w = image_rgb.shape[:2]
    ed = _eye_distance(lm)
    lab = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    sample = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(sample, cv2.convexHull(lm[list(range(17)) + [24, 19]].astype(np.int32)), 1)
    for group in (EYE_R, EYE_L, MOUTH):
        cv2.fillConvexPoly(sample, cv2.convexHull(lm[group].astype(np.int32)), 0)
    for group in (BROW_R, BROW_L):
        cv2.polylines(sample, [lm[group].astype(np.int32)], False, 0, 5)
    pix = lab[sample == 1]  # (n, 3)
    mean, cov = pix.mean(0), np.cov(pix.T) + 4.0 * np.eye(3)
    d = lab - mean
    maha2 = np.einsum("hwi,ij,hwj->hw", d, np.linalg.inv(cov), d)
    region = np.zeros((h, w), np.float32)
    axes = (int(1.6 * ed), int(2.1 * ed))
    cv2.ellipse(region, (int(lm[27, 0]), int(lm[30, 1])), axes, 0, 0, 360, 1.0, -1)
    mask = region * np.clip((16.0 - maha2) / 8.0, 0.0, 1.0) * (1.0 - hair)
    return cv2.GaussianBlur(mask, (0, 0), 1.5)


def retint(
    image_rgb: np.ndarray, mask: np.ndarray, lab: tuple[float, float, float], contrast: float = 1.0
) -> np.ndarray:
    """Give the masked pixels a new mean colour, keeping their texture.

    In CIELAB (L 0-100, a and b signed), each pixel becomes `lab + (pixel - mean) * contrast`,
    `mean` being the mask-weighted mean, and is blended in by the mask. Shifting the mean rather
    than setting a colour keeps every highlight, strand and pore.
    """
    img = cv2.cvtColor(image_rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)  # (h, w, 3)
    wsum = float(mask.sum())
    if wsum <= 0:
        return image_rgb.copy()
    mean = (img * mask[..., None]).reshape(-1, 3).sum(0) / wsum
    new = np.asarray(lab, np.float32) + (img - mean) * np.float32(contrast)
    return _blend(image_rgb, cv2.cvtColor(new.astype(np.float32), cv2.COLOR_LAB2RGB), mask)


def _blend(image_rgb: np.ndarray, new_rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """image * (1 - alpha) + new * alpha, `new_rgb` float in 0-1, in RGB so that pixels with
    alpha 0 come back bit-exact (a Lab round trip would move some by a level or two)."""
    a = alpha[..., None]
    out = image_rgb.astype(np.float32) * (1.0 - a) + new_rgb * 255.0 * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def brow_mask(shape: tuple[int, int], lm: np.ndarray, thickness: float, drop: float) -> np.ndarray:
    """(h, w) float32 soft mask of fuller eyebrows along the brow landmarks.

    Each brow is a band around the landmark line (which dlib puts along the brow's upper
    half), `thickness` x 0.11 eye distances at its widest, rounded at the inner end and tapering
    to a third at the tail, moved down by `drop` eye distances. Drawn at 4x and reduced, so the
    edges are anti-aliased.
    """
    h, w = shape
    ed = _eye_distance(lm)
    big = np.zeros((h * 4, w * 4), np.uint8)
    profile = np.array([0.75, 1.0, 0.9, 0.65, 0.3]) * 0.11 * ed * thickness  # inner -> tail
    for group, inner_first in ((BROW_R, False), (BROW_L, True)):
        p = lm[group].astype(np.float64)
        p = (p if inner_first else p[::-1]) + [0.0, drop * ed]
        tangent = np.gradient(p, axis=0)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
        normal *= np.sign(normal[:, 1:2])  # pointing down, towards the eye
        upper = p - normal * profile[:, None] * 0.35
        lower = p + normal * profile[:, None] * 0.65
        poly = np.round(np.vstack([upper, lower[::-1]]) * 4).astype(np.int32)
        cv2.fillPoly(big, [poly], 255, cv2.LINE_AA)
    mask = cv2.resize(big.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(mask, (0, 0), 0.9)


def paint_brows(
    image_rgb: np.ndarray,
    lm: np.ndarray,
    *,
    thickness: float,
    darken: float,
    drop: float,
    chroma: tuple[float, float],
    seed: int = 0,
) -> np.ndarray:
    """Darker, fuller eyebrows: the brow band's lightness is multiplied down by up to `darken`
    and its (a, b) pulled towards the hair's `chroma`. A multiplicative darkening keeps the skin
    texture under it; noise stretched along the brow (1.2 px x 0.35 px) gives it hair strokes."""
    mask = brow_mask(image_rgb.shape[:2], lm, thickness, drop)
    noise = np.random.default_rng(seed).standard_normal(mask.shape).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=1.2, sigmaY=0.35)
    noise /= noise.std()
    alpha = np.clip(mask * darken * (1.0 + 0.15 * noise), 0.0, 1.0)  # (h, w)
    lab = cv2.cvtColor(image_rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    lab[..., 0] *= 1.0 - alpha
    lab[..., 1] += (chroma[0] - lab[..., 1]) * alpha * 0.7
    lab[..., 2] += (chroma[1] - lab[..., 2]) * alpha * 0.7
    return _blend(image_rgb, cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), (alpha > 0).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Identity B


@dataclass(frozen=True)
class FaceShape:
    """How a new face's geometry differs from the portrait's (factors of 1 and shifts of 0 keep
    it); shifts are in shares of the face's width (jaw end to jaw end) or height (nose top to
    chin)."""

    jaw_width: float = option(1.11, "jaw width factor, most at the cheeks, 0.4 of it at the ears")
    chin_length: float = option(0.97, "factor on the chin's distance below the nose")
    eye_scale: float = option(0.97, "size factor of each eye about its centre")
    eye_spread: float = option(-0.025, "each eye and brow moved outwards (negative: inwards)")
    brow_length: float = option(1.02, "length factor of each brow about its centre")
    brow_flatten: float = option(0.25, "share of the brows' arch taken away (0 keeps it)")
    brow_drop: float = option(0.005, "brows moved down, in face heights")
    nose_width: float = option(1.14, "width factor of the nostrils about the nose centre")
    nose_drop: float = option(0.0, "nose tip moved down (a longer nose), in face heights")
    mouth_width: float = option(1.12, "mouth width factor about the mouth centre")
    mouth_height: float = option(1.05, "mouth height (lip thickness) factor")
    mouth_drop: float = option(0.035, "mouth moved down, in face heights")

    def __post_init__(self) -> None:
        factors = ("jaw_width", "chin_length", "eye_scale", "brow_length", "nose_width")
        for name in (*factors, "mouth_width", "mouth_height"):
            if not 0.7 <= getattr(self, name) <= 1.4:
                raise ValueError(f"{name} must be between 0.7 and 1.4 (a face, not a caricature)")
        if not 0.0 <= self.brow_flatten <= 1.0:
            raise ValueError("brow_flatten must be between 0 and 1")
        for name in ("eye_spread", "brow_drop", "nose_drop", "mouth_drop"):
            if abs(getattr(self, name)) > 0.1:
                raise ValueError(f"{name} must be within +-0.1 (a face, not a caricature)")


def reshape_face(lm: np.ndarray, shape: FaceShape) -> np.ndarray:
    """Where the portrait's landmarks go on the new face: (68, 2) -> (68, 2)."""
    d = lm.astype(np.float64).copy()
    c = lm[NOSE].mean(0)
    fw, fh = lm[16, 0] - lm[0, 0], lm[8, 1] - lm[27, 1]
    # t: 0 at the jaw's top ends (by the ears), 1 at the chin. The jaw widens most halfway, at
    # the cheeks (a fuller face); the chin's length changes, the ears' height does not.
    t = np.clip((lm[JAW, 1] - lm[JAW, 1].min()) / (lm[8, 1] - lm[JAW, 1].min()), 0.0, 1.0)
    jaw = lm[JAW] - c
    d[JAW, 0] = c[0] + jaw[:, 0] * (1 + (shape.jaw_width - 1) * (0.4 + 0.6 * np.sin(np.pi * t)))
    d[JAW, 1] = c[1] + jaw[:, 1] * (1 + (shape.chin_length - 1) * t)
    for eye, brow in ((EYE_R, BROW_R), (EYE_L, BROW_L)):
        side = np.sign(lm[eye, 0].mean() - c[0])
        ec = lm[eye].mean(0)
        d[eye] = ec + (lm[eye] - ec) * shape.eye_scale + [side * shape.eye_spread * fw, 0.0]
        bc = lm[brow].mean(0)
        b = (lm[brow] - bc) * [shape.brow_length, 1.0 - shape.brow_flatten]
        d[brow] = bc + b + [side * shape.eye_spread * fw, shape.brow_drop * fh]
    d[NOSE] = c + (lm[NOSE] - c) * [shape.nose_width, 1.0] + [0.0, shape.nose_drop * fh]
    d[NOSE_BRIDGE] = lm[NOSE_BRIDGE] + np.outer(np.linspace(0, 1, 4), [0.0, shape.nose_drop * fh])
    mc = lm[MOUTH].mean(0)
    d[MOUTH] = (
        mc + (lm[MOUTH] - mc) * [shape.mouth_width, shape.mouth_height] + [0, shape.mouth_drop * fh]
    )
    return d


@dataclass(frozen=True)
class Colouring:
    """Hair, skin and eyebrows of a new face, as CIELAB colours (L 0-100, a and b signed)."""

    hair_lab: tuple[float, float, float] = option((24.0, 7.0, 16.0), "mean hair colour")
    hair_contrast: float = option(0.8, "hair texture contrast factor about the mean")
    skin_lab: tuple[float, float, float] = option((60.0, 10.0, 21.0), "mean skin colour")
    brow_thickness: float = option(1.2, "painted brow width, in 0.11 eye distances")
    brow_darken: float = option(0.5, "how much the brows' lightness is multiplied down")
    brow_offset: float = option(0.02, "painted brows moved down, in eye distances")

    def __post_init__(self) -> None:
        for name in ("hair_lab", "skin_lab"):
            lab = getattr(self, name)
            if len(lab) != 3 or not 0 <= lab[0] <= 100 or max(abs(lab[1]), abs(lab[2])) > 60:
                raise ValueError(f"{name} must be (L 0-100, a, b within +-60)")
        if not 0.0 < self.hair_contrast <= 2.0:
            raise ValueError("hair_contrast must be in (0, 2]")
        if not 0.0 <= self.brow_thickness <= 3.0 or not 0.0 <= self.brow_darken <= 1.0:
            raise ValueError("brow_thickness must be in [0, 3] and brow_darken in [0, 1]")
        if abs(self.brow_offset) > 0.2:
            raise ValueError("brow_offset must be within +-0.2")


def make_identity(
    image_rgb: np.ndarray, lm: np.ndarray, shape: FaceShape, colouring: Colouring
) -> tuple[np.ndarray, np.ndarray]:
    """A new person from a portrait: recolour (on the original geometry, where the masks are
    found), then warp to the new shape. Returns the (h, w, 3) uint8 image and its (68, 2)
    landmarks (the warp's targets)."""
    hair = hair_mask(image_rgb, lm)
    skin = skin_mask(image_rgb, lm, hair)
    img = retint(image_rgb, hair, colouring.hair_lab, colouring.hair_contrast)
    img = retint(img, skin, colouring.skin_lab)
    img = paint_brows(
        img,
        lm,
        thickness=colouring.brow_thickness,
        darken=colouring.brow_darken,
        drop=colouring.brow_offset,
        chroma=colouring.hair_lab[1:],
    )
    dst = reshape_face(lm, shape)
    return landmark_warp(img, lm, dst), dst


@functools.lru_cache(maxsize=1)
def _identity_b() -> tuple[np.ndarray, np.ndarray]:
    img, lm = make_identity(np.array(astronaut()), astronaut_landmarks(), FaceShape(), Colouring())
    img.setflags(write=False)
    lm.setflags(write=False)
    return img, lm


def identity_b() -> np.ndarray:
    """Identity B: the 512x512 RGB uint8 astronaut made into a different-looking person, with
    the default `FaceShape` and `Colouring`. Cached and read-only (copy before drawing)."""
    return _identity_b()[0]


def identity_b_landmarks() -> np.ndarray:
    """(68, 2) read-only landmarks of `identity_b()`: where its warp put the portrait's."""
    return _identity_b()[1]


def identity_distance(
    image_rgb: np.ndarray | None = None, reference: np.ndarray | None = None
) -> float:
    """dlib embedding distance between two face images (default: identity B and the portrait),
    measured as extraction does: dlib HOG box, dlib 68 landmarks, dlib ResNet descriptor.
    Above `faceswap.extract.identity.SAME_PERSON` (0.6) dlib calls them different people."""
    from faceswap.extract.identity import DlibEmbedder

    images = [identity_b() if image_rgb is None else image_rgb]
    images.append(np.array(astronaut()) if reference is None else reference)
    embedder = DlibEmbedder()
    emb = []
    for img in images:
        img = np.ascontiguousarray(img)
        lm = find_landmarks(img)
        if lm is None:
            raise ValueError("no face found in an image given to identity_distance")
        emb.append(embedder.embed(img, lm))
    return float(np.linalg.norm(emb[0] - emb[1]))


# ---------------------------------------------------------------------------------------------
# Expressions


def _with_teeth(lm: np.ndarray) -> np.ndarray:
    """(68, 2) landmarks + 3 points on the lower edge of the upper teeth (71, 2), 80 % of the
    way from the upper to the lower inner lip: pinning them to the upper lip keeps the teeth
    their size when the jaw drops, so that only the sliver below them stretches (and is painted
    over as the mouth's dark inside)."""
    teeth = lm[UPPER_INNER] + 0.8 * (lm[LOWER_INNER] - lm[UPPER_INNER])
    return np.vstack([lm, teeth])


def expression_basis(lm: np.ndarray) -> np.ndarray:
    """(4, 71, 2) landmark displacements (see `_with_teeth`) of four unit expressions, in this
    order: relax (the portrait's smile taken away), open (jaw dropped), brows up, frown.

    An expression's landmarks are `_with_teeth(lm) + c @ basis` for coefficients
    c = (1 - smile, open_mouth, max(brows, 0), max(-brows, 0)). Sizes are in eye distances:
    at 1, the jaw drops 0.2 (12 px on the portrait), the brows rise 0.12.
    """
    ed = _eye_distance(lm)
    b = np.zeros((4, 71, 2))
    mc = lm[MOUTH].mean(0)
    relax, opened, up, frown = b
    # Relax: corners in and down, the lower lip's U flattened up, the upper lip a little down,
    # the lower eyelids down (the smile's squint goes).
    for i in (48, 60, 54, 64):
        relax[i] = [np.sign(mc[0] - lm[i, 0]) * 0.06 * ed, 0.04 * ed]
    relax[[49, 50, 51, 52, 53, 61, 62, 63], 1] = 0.02 * ed
    relax[[57, 66], 1] = -0.06 * ed
    relax[[56, 58, 65, 67], 1] = -0.05 * ed
    relax[[55, 59], 1] = -0.03 * ed
    relax[[40, 41, 46, 47], 1] = 0.015 * ed
    # Open: the lower lip and the chin drop together, the jaw's sides less, the corners a bit.
    drop = 0.2 * ed
    opened[[55, 56, 57, 58, 59, 65, 66, 67], 1] = drop
    for i in (48, 60, 54, 64):
        opened[i] = [np.sign(mc[0] - lm[i, 0]) * 0.02 * ed, 0.35 * drop]
    opened[[49, 50, 51, 52, 53, 61, 62, 63], 1] = -0.02 * ed
    for k, share in enumerate((0.1, 0.3, 0.6, 0.9, 1.0)):  # jaw 4..8 and 12..8
        opened[[4 + k, 12 - k], 1] = share * drop
    # The teeth stay with the upper lip when the mouth opens, and keep their place between
    # the lips as the smile relaxes.
    opened[68:, 1] = -0.02 * ed
    relax[68:] = relax[UPPER_INNER] + 0.8 * (relax[LOWER_INNER] - relax[UPPER_INNER])
    # Brows up: the whole brow, the upper eyelids a little (eyes open wider).
    up[17:27, 1] = -0.12 * ed
    up[[37, 38, 43, 44], 1] = -0.02 * ed
    # Frown: the inner ends down and together, the outer ends less.
    cx = lm[27, 0]
    steps = ((0.03, 0.0), (0.04, 0.01), (0.05, 0.02), (0.07, 0.04), (0.08, 0.05))  # (dy, dx)
    for k, (dy, dx) in enumerate(steps):  # outer end to inner end of each brow
        for i in (17 + k, 26 - k):
            frown[i] = [dx * ed * np.sign(cx - lm[i, 0]), dy * ed]
    return b


def expression_coefficients(smile: float, open_mouth: float, brows: float) -> np.ndarray:
    """(4,) weights of `expression_basis` for an expression."""
    if not (0.0 <= smile <= 1.0 and 0.0 <= open_mouth <= 1.0 and -1.0 <= brows <= 1.0):
        raise ValueError("smile and open_mouth must be in [0, 1] and brows in [-1, 1]")
    return np.array([1.0 - smile, open_mouth, max(brows, 0.0), max(-brows, 0.0)])


def expression_landmarks(
    lm: np.ndarray, smile: float = 1.0, open_mouth: float = 0.0, brows: float = 0.0
) -> np.ndarray:
    """(68, 2) landmarks of the face with this expression (see `expression`)."""
    c = expression_coefficients(smile, open_mouth, brows)
    return (_with_teeth(lm) + np.tensordot(c, expression_basis(lm), 1))[:68]


# The inside of a mouth, top (in the shadow of the upper teeth) to bottom (the tongue), RGB.
_MOUTH_TOP_RGB = np.array([30.0, 12.0, 12.0], np.float32)
_MOUTH_BOTTOM_RGB = np.array([105.0, 45.0, 45.0], np.float32)


def _mouth_inside_outline(pts: np.ndarray) -> np.ndarray:
    """(M, 2) closed outline of the open mouth's inside: a smooth curve from the inner left
    corner along the upper teeth's edge to the right corner and back along the lower inner lip.
    Monotone cubic (PCHIP) curves in x: straight segments between landmarks would cut corners
    off the lower lip's curve."""
    from scipy.interpolate import PchipInterpolator

    curves = []
    for idx in ([60, 68, 69, 70, 64], [64, 65, 66, 67, 60]):
        p = pts[idx]
        order = np.argsort(p[:, 0])
        x, y = p[order, 0], p[order, 1]
        keep = np.concatenate([[True], np.diff(x) > 1e-3])  # PCHIP needs increasing x
        xs = np.linspace(x[0], x[-1], 24)
        ys = PchipInterpolator(x[keep], y[keep])(xs)
        curve = np.stack([xs, ys], 1)
        curves.append(curve if idx[0] == 60 else curve[::-1])
    return np.vstack(curves)


def _paint_mouth_inside(image: np.ndarray, pts: np.ndarray, opening: float) -> np.ndarray:
    """Paint the gap between the upper teeth and the lower lip dark, `pts` (71, 2) being the
    expression's landmarks with teeth points: the warp stretched a thin sliver there.
    Works on the mouth's box only (a full-image 4x mask would cost more than the warp)."""
    if opening <= 0:
        return image
    h, w = image.shape[:2]
    outline = _mouth_inside_outline(pts)
    x0, y0 = np.maximum(np.floor(outline.min(0)).astype(int) - 4, 0)
    x1, y1 = np.minimum(np.ceil(outline.max(0)).astype(int) + 5, [w, h])
    if x1 <= x0 or y1 <= y0:
        return image
    big = np.zeros(((y1 - y0) * 4, (x1 - x0) * 4), np.uint8)
    poly = np.round((outline - [x0, y0]) * 4).astype(np.int32)
    cv2.fillPoly(big, [poly], 255, cv2.LINE_AA)
    mask = cv2.resize(
        big.astype(np.float32) / 255.0, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA
    )
    alpha = cv2.GaussianBlur(mask, (0, 0), 0.7)[..., None] * min(1.0, 3.0 * opening) * 0.95
    # Vertical gradient across the gap: dark under the teeth, the tongue's red lower down.
    top, bottom = outline[:, 1].min(), outline[:, 1].max()
    ys = np.arange(y0, y1, dtype=np.float32)[:, None, None]
    t = np.clip((ys - top) / max(bottom - top, 1.0), 0.0, 1.0) ** 1.5  # (y1 - y0, 1, 1)
    colour = _MOUTH_TOP_RGB + (_MOUTH_BOTTOM_RGB - _MOUTH_TOP_RGB) * t  # (y1 - y0, 1, 3)
    out = image.copy()
    box = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(box * (1.0 - alpha) + colour * alpha + 0.5, 0, 255)
    return out


def expression(
    image_rgb: np.ndarray,
    lm: np.ndarray,
    smile: float = 1.0,
    open_mouth: float = 0.0,
    brows: float = 0.0,
) -> np.ndarray:
    """The face in `image_rgb` (with landmarks `lm`, (68, 2)) with another expression.

    The portrait already smiles broadly, so `smile` says how much of that smile is kept: 1 keeps
    it, 0 relaxes the mouth (corners in and down, lips closer over the teeth). `open_mouth`
    0..1 drops the jaw (the inside of the mouth painted dark below the upper teeth); `brows`
    -1..1 frowns (inner ends down and together) or raises the brows. The defaults return the
    image unchanged.
    """
    c = expression_coefficients(smile, open_mouth, brows)
    if not c.any():
        return np.array(image_rgb, copy=True)
    src = _with_teeth(lm)
    dst = src + np.tensordot(c, expression_basis(lm), 1)
    return _paint_mouth_inside(landmark_warp(image_rgb, src, dst), dst, open_mouth)


# Periods (frames) of the expression signals at 24 fps: the mouth moves at the pace of
# words (0.7-1.7 s), the smile and brows at the pace of sentences (2-5 s). A signal of
# amplitude a changes by at most a * 2 pi / (shortest period) per frame: 0.47 for the mouth.
_MOUTH_PERIODS = (16.0, 40.0)
_SLOW_PERIODS = (48.0, 120.0)


def _signal(rng: np.random.Generator, n: int, periods: tuple[float, float]) -> np.ndarray:
    """(n,) smooth signal in [-1, 1]: three sinusoids of random period, phase and weight."""
    t = np.arange(n, dtype=np.float64)[:, None]
    p = rng.uniform(*periods, size=3)
    phase = rng.uniform(0.0, 2.0 * math.pi, size=3)
    wts = rng.uniform(0.5, 1.0, size=3)
    return np.sin(2.0 * math.pi * t / p + phase) @ (wts / wts.sum())


def expression_schedule(n_frames: int, seed: int = 0) -> np.ndarray:
    """(n_frames, 3) smooth, seeded (smile, open_mouth, brows) per frame.

    The mouth is closed about half the time and opens in bursts like speech; the smile stays
    mostly on (0.3-1); the brows drift, rising or frowning up to 0.6.
    """
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    rng = np.random.default_rng(seed)
    smile = 0.65 + 0.35 * _signal(rng, n_frames, _SLOW_PERIODS)
    open_mouth = np.clip(1.2 * _signal(rng, n_frames, _MOUTH_PERIODS), 0.0, 1.0)
    brows = 0.6 * _signal(rng, n_frames, _SLOW_PERIODS)
    return np.stack([smile, open_mouth, brows], 1)


class ExpressionClip:
    """Per-frame images of one face whose expression changes smoothly (`expression_schedule`).

    A full warp costs ~0.15 s (the spline evaluated on a 4-px grid), too slow per frame. The
    warp's flow is nearly linear in the landmark moves, so a bank of four flows, one per unit
    expression of `expression_basis`, is computed once (~0.6 s) and each frame blends them with
    its coefficients and resamples: a few ms per frame. Frames are made on demand (call with
    the frame index), so a long clip holds no stack of images.
    """

    def __init__(self, image_rgb: np.ndarray, lm: np.ndarray, n_frames: int, *, seed: int = 0):
        img = np.asarray(image_rgb)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image must be (h, w, 3) uint8, got {img.shape} {img.dtype}")
        self.image = img
        self.params = expression_schedule(n_frames, seed)  # (n, 3)
        self._src = _with_teeth(np.asarray(lm, np.float64))  # (71, 2)
        self._basis = expression_basis(self._src[:68])  # (4, 71, 2)
        h, w = img.shape[:2]
        flows = [warp_flow((w, h), self._src, self._src + b) for b in self._basis]
        # Every flow is 0 outside its disc (see warp_flow): keep the box around all discs.
        boxes = []
        for b in self._basis:
            centre, radius = flow_radius(self._src + b)
            boxes.append(np.concatenate([centre - radius, centre + radius]))
        lo = np.maximum(np.floor(np.min(boxes, 0)[:2]).astype(int), 0)
        hi = np.minimum(np.ceil(np.max(boxes, 0)[2:]).astype(int) + 1, [w, h])
        self._box = (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))  # x0, y0, x1, y1
        x0, y0, x1, y1 = self._box
        self.flows = np.stack([f[y0:y1, x0:x1] for f in flows])  # (4, y1-y0, x1-x0, 2): the bank
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self._grid = np.stack([xx, yy], -1)  # (y1-y0, x1-x0, 2) absolute pixel coordinates

    def __len__(self) -> int:
        return len(self.params)

    def coefficients(self, i: int) -> np.ndarray:
        """(4,) weights of the bank for frame `i`."""
        return expression_coefficients(*(float(v) for v in self.params[i]))

    def landmarks(self, i: int) -> np.ndarray:
        """(68, 2) landmarks of frame `i` in the image's pixels."""
        return (self._src + np.tensordot(self.coefficients(i), self._basis, 1))[:68]

    def __call__(self, i: int) -> np.ndarray:
        """(h, w, 3) uint8 RGB face image of frame `i`."""
        c = self.coefficients(i)
        out = self.image.copy()
        if not c.any():
            return out
        x0, y0, x1, y1 = self._box
        maps = self._grid + np.tensordot(c.astype(np.float32), self.flows, 1)  # (bh, bw, 2)
        out[y0:y1, x0:x1] = cv2.remap(
            self.image, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        pts = self._src + np.tensordot(c, self._basis, 1)
        return _paint_mouth_inside(out, pts, float(self.params[i, 1]))


def expression_frames(
    image_rgb: np.ndarray, n_frames: int, *, seed: int = 0, landmarks: np.ndarray | None = None
) -> ExpressionClip:
    """Per-frame images of `image_rgb` with smoothly changing expressions, for
    `render_clip(face_rgb=...)`: call the result with a frame index.

    `landmarks` default to the known ones of the astronaut and of `identity_b()` (exact, no
    detection) and to dlib's for any other image.
    """
    if landmarks is None:
        img = np.asarray(image_rgb)
        if np.array_equal(img, astronaut()):
            landmarks = astronaut_landmarks()
        elif np.array_equal(img, identity_b()):
            landmarks = identity_b_landmarks()
        else:
            landmarks = find_landmarks(np.ascontiguousarray(img))
            if landmarks is None:
                raise ValueError("no face found in the image given to expression_frames")
    return ExpressionClip(image_rgb, landmarks, n_frames, seed=seed)
