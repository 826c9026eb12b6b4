"""What a viewer judges in a swapped clip, as numbers: identity, pose, expression, detail,
seam, flicker. Pure functions on frames and landmarks; the dlib measuring happens in the caller.

Every figure is built so that a cheat does not pass it:
- identity is *verification* (within dlib's same-person distance of B's centroid and beyond it
  from A's), not "nearer B than A": an average face of A and B is near both and verifies as
  neither;
- detail is fine-detail (near-Laplacian) energy inside the inner face at a fixed inter-ocular
  distance, after a denoise: a blur scores low, and pixel noise or film grain (which the denoise
  removes) and a sharpening filter over a blur (little band energy left to amplify) do not
  raise it;
- seam compares the colour step across the swapped region's edge with the step the original
  frame had at the same pixels, so a skin-coloured paste with a visible edge scores badly even
  where the edge is faint in absolute terms.

Landmarks are dlib's 68-point iBUG layout in frame pixels, images uint8 RGB (H, W, 3).
"""

from __future__ import annotations

import cv2
import numpy as np

from faceswap.convert.seam import changed_region, edge_distance, seam_step  # noqa: F401 (re-exported)
from faceswap.extract import alignment

SAME_PERSON = 0.6  # dlib's same-person distance
DETAIL_IOD = 64.0  # inter-ocular distance (px) the detail is measured at
# The mean face's eye centres in unit-template coordinates (MEAN_FACE covers landmarks 17-67).
_EYE_L = alignment.MEAN_FACE[36 - 17 : 42 - 17].mean(axis=0)
_EYE_R = alignment.MEAN_FACE[42 - 17 : 48 - 17].mean(axis=0)
_TEMPLATE_IOD = float(np.linalg.norm(_EYE_R - _EYE_L))


def interocular(lms: np.ndarray) -> float:
    """Distance between the eye centres of one face's (68, 2) landmarks."""
    lms = np.asarray(lms, np.float64)
    return float(np.linalg.norm(lms[42:48].mean(0) - lms[36:42].mean(0)))


# ---- identity --------------------------------------------------------------------------------


def verify_identity(
    embeddings: np.ndarray,
    centroid_a: np.ndarray,
    centroid_b: np.ndarray,
    spread_b: float,
    threshold: float = SAME_PERSON,
) -> dict[str, float | int | None]:
    """How many faces dlib verifies as B and not A.

    embeddings (N, 128) of the swapped faces; centroids (128,) from A's and B's real faces;
    spread_b: the 95th percentile of B's real faces' distances to their centroid.
    verified_b: share within `threshold` of B and beyond it from A; within_spread_b: share
    within B's own spread (stricter: as close to B as B's own frames are).
    """
    emb = np.atleast_2d(np.asarray(embeddings, np.float64))
    if emb.size == 0:
        return {"faces": 0, "verified_b": None, "within_spread_b": None, "dist_a": None,
                "dist_b": None}  # fmt: skip
    da = np.linalg.norm(emb - np.asarray(centroid_a, np.float64), axis=1)
    db = np.linalg.norm(emb - np.asarray(centroid_b, np.float64), axis=1)
    return {
        "faces": len(emb),
        "verified_b": float(np.mean(verified_mask(emb, centroid_a, centroid_b, threshold))),
        "within_spread_b": float(np.mean(db <= spread_b)),
        "dist_a": float(da.mean()),
        "dist_b": float(db.mean()),
    }


def verified_mask(
    embeddings: np.ndarray,
    centroid_a: np.ndarray,
    centroid_b: np.ndarray,
    threshold: float = SAME_PERSON,
) -> np.ndarray:
    """(N,) bool: each face within `threshold` of B's centroid and beyond it from A's."""
    emb = np.asarray(embeddings, np.float64).reshape(-1, 128)
    da = np.linalg.norm(emb - np.asarray(centroid_a, np.float64), axis=1)
    db = np.linalg.norm(emb - np.asarray(centroid_b, np.float64), axis=1)
    return (db < threshold) & (da >= threshold)


def spread(embeddings: np.ndarray, centroid: np.ndarray, q: float = 95.0) -> float:
    """The q-th percentile of the embeddings' distances to their centroid."""
    emb = np.atleast_2d(np.asarray(embeddings, np.float64))
    return float(np.percentile(np.linalg.norm(emb - centroid, axis=1), q))


# ---- pose and expression ---------------------------------------------------------------------


def pose_difference(pose_orig: np.ndarray, pose_swap: np.ndarray) -> dict[str, float | None]:
    """Median |difference| of yaw, pitch and roll (degrees) between (N, 3) pose arrays."""
    a, b = np.asarray(pose_orig, np.float64), np.asarray(pose_swap, np.float64)
    if len(a) == 0:
        return {"yaw": None, "pitch": None, "roll": None}
    med = np.median(np.abs(a - b), axis=0)
    return {"yaw": float(med[0]), "pitch": float(med[1]), "roll": float(med[2])}


def pose_tracking(pose_orig: np.ndarray, pose_swap: np.ndarray) -> dict[str, float | None]:
    """pose_difference() less each axis's constant offset (the median difference, also
    returned as offset_yaw/pitch/roll). The pose is read from 2D landmarks against one generic
    3D face, so B's proportions on A's head read as a fixed tilt (a longer nose or a shorter
    chin is a few degrees of pitch); what is left is how well the swapped head follows A's
    turns and nods. A swap that truly holds its head tilted shows the same offset: both
    figures are reported."""
    a, b = np.asarray(pose_orig, np.float64), np.asarray(pose_swap, np.float64)
    if len(a) == 0:
        return {k: None for k in ("yaw", "pitch", "roll", "offset_yaw", "offset_pitch",
                                  "offset_roll")}  # fmt: skip
    d = b - a
    off = np.median(d, axis=0)
    med = np.median(np.abs(d - off), axis=0)
    return {"yaw": float(med[0]), "pitch": float(med[1]), "roll": float(med[2]),
            "offset_yaw": float(off[0]), "offset_pitch": float(off[1]),
            "offset_roll": float(off[2])}  # fmt: skip


def mouth_opening(lms: np.ndarray) -> np.ndarray:
    """(N,) inner-lip gap over face height (nose bridge top to chin) of (N, 68, 2) landmarks."""
    lms = np.asarray(lms, np.float64).reshape(-1, 68, 2)
    gap = np.linalg.norm(lms[:, 61:64].mean(1) - lms[:, 65:68].mean(1), axis=1)
    height = np.linalg.norm(lms[:, 8] - lms[:, 27], axis=1)
    return gap / np.maximum(height, 1e-6)


EXPRESSION_FEATURES = ("mouth opening", "mouth width", "eye opening")


def expression_features(lms: np.ndarray) -> np.ndarray:
    """(N, 3) expression measures of (N, 68, 2) landmarks, each a ratio of two lengths along
    the same axis of the face, so that turning or tilting the head, which foreshortens both
    alike, leaves it (nearly) unchanged: it follows the face, not the head.
    - mouth opening: outer-lip height (51-57) over nose length (27-33);
    - mouth width: mouth corners (48-54) over the outer eye corners (36-45);
    - eye opening: the mean of the four lid gaps (37-41, 38-40, 43-47, 44-46) over nose length.
    The inner-lip gap of mouth_opening() is ~1 px on a closed mouth, so on a clip that talks
    little its correlation is mostly landmark noise; the outer lips move with every expression."""
    lm = np.asarray(lms, np.float64).reshape(-1, 68, 2)

    def dist(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(lm[:, a] - lm[:, b], axis=1)

    nose = np.maximum(dist(27, 33), 1e-6)
    lids = (dist(37, 41) + dist(38, 40) + dist(43, 47) + dist(44, 46)) / 4
    return np.stack([dist(51, 57) / nose, dist(48, 54) / np.maximum(dist(36, 45), 1e-6),
                     lids / nose], axis=1)  # fmt: skip


def expression_correlation(orig: np.ndarray, swap: np.ndarray) -> float | None:
    """Mean over EXPRESSION_FEATURES of the correlation over frames between the original's and
    the swap's (N, 3) features. The swap is asked to follow A's changes, not to copy A's values
    (B's mouth may be wider). A feature A never changes is left out; one the swap holds still
    while A's changes scores 0 (a static face scores 0). None: fewer than 3 frames, or A's
    face never changes."""
    o, s = np.asarray(orig, np.float64), np.asarray(swap, np.float64)
    if o.ndim != 2 or o.shape != s.shape or len(o) < 3:
        return None
    per = []
    for k in range(o.shape[1]):
        if o[:, k].std() < 1e-9:
            continue
        c = correlation(o[:, k], s[:, k])
        per.append(0.0 if c is None else c)
    return float(np.mean(per)) if per else None


def mouth_gap_error(original: np.ndarray, swapped: np.ndarray) -> float | None:
    """Median |inner-lip gap of the swap - that of the original| over the frames, in face
    heights (mouth_opening's unit). A correlation ignores a constant offset: a swap that
    draws B's half-open mouth over every one of A's closed ones can still follow the little
    movement there is. This is that offset (None without frames)."""
    o, s = np.asarray(original, np.float64), np.asarray(swapped, np.float64)
    return float(np.median(np.abs(s - o))) if len(o) else None


def correlation(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation of two series; None when either is constant or too short."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3 or x.std() < 1e-9 or y.std() < 1e-9:
        return None
    return float(np.corrcoef(x, y)[0, 1])


# ---- detail ----------------------------------------------------------------------------------


def canonical_face(frame: np.ndarray, lms: np.ndarray, iod: float = DETAIL_IOD):
    """The face resampled so its eyes are `iod` px apart: (crop uint8, landmarks in the crop).

    The frame is low-passed first when it is shrunk (no aliasing to count as detail), so the
    same face scores the same at any size it was filmed at.
    """
    lms = np.asarray(lms, np.float64)
    scale = iod / _TEMPLATE_IOD  # template unit -> crop px
    size = int(round(1.4 * scale))
    to_unit = alignment.umeyama(lms[alignment.FIT_POINTS], alignment.MEAN_FACE)
    m = np.array([[scale, 0.0, 0.2 * scale], [0.0, scale, 0.2 * scale]]) @ np.vstack(
        [to_unit, [0.0, 0.0, 1.0]]
    )
    shrink = interocular(lms) / iod
    src = frame
    if shrink > 1.0:
        src = cv2.GaussianBlur(frame, (0, 0), 0.5 * shrink)
    crop = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    pts = lms @ m[:, :2].T + m[:, 2]
    return crop, pts


def inner_face_mask(lms: np.ndarray, shape: tuple[int, int], erode_iod: float = 0.15):
    """bool (H, W): hull of brows, eyes, nose and mouth (landmarks 17-67), eroded by
    `erode_iod` inter-ocular distances so the edge of a swap's mask never falls inside."""
    lms = np.asarray(lms, np.float64)
    hull = cv2.convexHull(np.round(lms[17:68]).astype(np.int32))
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    r = int(round(erode_iod * interocular(lms)))
    if r > 0:
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
    return mask.astype(bool)


def detail_energy(frame: np.ndarray, lms: np.ndarray, iod: float = DETAIL_IOD) -> float:
    """Fine-detail energy of the inner face at `iod` px between the eyes: mean squared grey
    levels of a difference of Gaussians (sigma 0.7 and 1.5 px, close to a Laplacian) after a
    non-local-means denoise (h 8).

    The denoise removes pixel noise and film grain, which are not structure (a median let
    grain through: a grainy blur scored 4x the blur); the band keeps eyelid and lip lines,
    lashes, nostrils and wrinkles. A coarser band would count the large features every face has (an
    open mouth, the brows) as detail: a blurred swap with a dark open mouth then scored as
    high as a sharp face. A perfect 64 px face put back by convert keeps 0.34-0.51 of a real
    face's figure here, depending on the face's size in the frame (128 px: 0.77-0.88): the
    resolution ceiling, clip_quality.resolution_ceiling and docs/quality.md."""
    crop, pts = canonical_face(frame, lms, iod)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    grey = cv2.fastNlMeansDenoising(grey, None, h=8.0, templateWindowSize=5,
                                    searchWindowSize=11).astype(np.float32)  # fmt: skip
    band = cv2.GaussianBlur(grey, (0, 0), 0.7) - cv2.GaussianBlur(grey, (0, 0), 1.5)
    mask = inner_face_mask(pts, grey.shape)
    if not mask.any():
        return float("nan")
    return float(np.mean(band[mask] ** 2))


def clip_scale(landmarks: list[np.ndarray]) -> float:
    """The median inter-ocular distance (px) of a clip's faces: the size a viewer sees them at.

    Detail at DETAIL_IOD alone flatters a swap of a face filmed larger: d9's eyes are 118 px
    apart, so at 64 px the figure looks at a face shrunk to half its width, where most of a
    swap's blur no longer shows (lightweight-128 on d9-face2: 0.67 of B's detail at 64 px,
    0.44 at 100)."""
    iods = [interocular(lm) for lm in landmarks]
    if not iods:
        raise ValueError("no faces to take the scale of")
    return float(np.median(iods))


# ---- flicker ---------------------------------------------------------------------------------


def frame_change(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Mean absolute grey-level change between two frames inside `region` (bool (H, W))."""
    if not region.any():
        return float("nan")
    d = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=2)
    return float(d[region].mean())


def face_region(lms: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W): convex hull of all 68 landmarks."""
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(np.asarray(lms)).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)
