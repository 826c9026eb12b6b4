"""Per-face measurements taken at extraction: pose, blur and landmark consistency."""

from __future__ import annotations

import cv2
import numpy as np

from faceswap.extract.masks import landmark_mask

# A generic head in millimetres-like units (x right, y down, z away from the camera), for the
# six iBUG points that are most stable across people: nose tip, chin, outer eye corners and
# mouth corners. The usual anthropometric model used for PnP head pose.
_POSE_POINTS = [30, 8, 36, 45, 48, 54]
_POSE_MODEL = np.array(
    [
        [0.0, 0.0, 0.0],
        [0.0, 330.0, 65.0],
        [-225.0, -170.0, 135.0],
        [225.0, -170.0, 135.0],
        [-150.0, 150.0, 125.0],
        [150.0, 150.0, 125.0],
    ]
)


def head_pose(landmarks: np.ndarray, frame_size: tuple[int, int]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from 68 landmarks by solvePnP on a generic head.

    frame_size = (width, height); the camera is a pinhole with focal length = the longer frame
    side. yaw > 0: the face turns towards the image's right; pitch > 0: looking up; roll > 0:
    the head tilts counter-clockwise on screen. PnP on six points has a mirror solution (the
    face seen from behind); starting the solver from a frontal head at the right distance
    keeps it on the real one.
    """
    w, h = frame_size
    f = float(max(w, h))
    cam = np.array([[f, 0, w / 2.0], [0, f, h / 2.0], [0, 0, 1]], dtype=np.float64)
    img_pts = np.asarray(landmarks, dtype=np.float64)[_POSE_POINTS]
    # initial guess: no rotation, at the depth where the outer eye corners are as far apart
    # as in the image (450 model units between points 36 and 45)
    eye_px = max(float(np.linalg.norm(img_pts[3] - img_pts[2])), 1.0)
    z = f * 450.0 / eye_px
    nose = img_pts[0]
    tvec = np.array([[(nose[0] - w / 2.0) * z / f], [(nose[1] - h / 2.0) * z / f], [z]])
    rvec = np.zeros((3, 1))
    ok, rvec, _ = cv2.solvePnP(_POSE_MODEL, img_pts, cam, None, rvec, tvec, True,
                               flags=cv2.SOLVEPNP_ITERATIVE)  # fmt: skip
    if not ok or not np.isfinite(rvec).all():
        return 0.0, 0.0, 0.0
    rot, _ = cv2.Rodrigues(rvec)
    # R = Rz(roll) @ Ry(yaw) @ Rx(pitch) in camera axes (x right, y down, z forward).
    yaw = np.degrees(np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(rot[2, 1], rot[2, 2]))
    roll = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
    # The model's z points away from the camera, so a face turning to image-right has a
    # negative rotation about y; flip signs to the documented convention.
    return float(-yaw), float(pitch), float(-roll)


def blur_score(face_bgr: np.ndarray, landmarks_aligned: np.ndarray | None = None) -> float:
    """Variance of the Laplacian over the face at a fixed 128 px scale (lower = blurrier).

    Resizing first makes scores comparable between crop sizes; masking to the landmark hull
    keeps a sharp background from hiding a blurry face.
    """
    size = face_bgr.shape[0]
    gray = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, (128, 128), interpolation=cv2.INTER_AREA)
    lap = cv2.Laplacian(gray, cv2.CV_64F)
    if landmarks_aligned is not None:
        mask = landmark_mask(np.asarray(landmarks_aligned) * (128.0 / size), 128, "hull") > 0.5
        if mask.sum() > 100:
            return float(lap[mask].var())
    return float(lap.var())


def landmark_jitter(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance between two landmark sets of one face, in inter-ocular distances.

    `a` and `b` come from the same aligner run on slightly shifted boxes; a confident aligner
    gives nearly the same points (< 0.05), an unsure one (occlusion, profile, not a face)
    moves them around. This is the "landmark consistency" outlier signal.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iod = np.linalg.norm(a[36:42].mean(0) - a[42:48].mean(0))
    return float(np.linalg.norm(a - b, axis=1).mean() / max(iod, 1e-6))


def blur_extent(face_bgr: np.ndarray, landmarks_aligned: np.ndarray | None = None) -> float:
    """How blurred the face is, from 0 (sharp) towards 1: the no-reference "re-blur" measure
    of Crete et al. (2007) over the face at a fixed 128 px scale, the blurrier of its
    horizontal and vertical readings.

    The face is blurred again with a 9 px box: an already blurred face loses little of its
    neighbouring-pixel differences, a sharp one loses most. Unlike the Laplacian variance
    (`blur_score`), it is a ratio, so smooth skin, soft light and low contrast do not read as
    blur: sharp faces of different clips score 0.32-0.46, a Gaussian blur of 2 px at 256 px
    (a softness a viewer sees) 0.49 and up.
    """
    size = face_bgr.shape[0]
    gray = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32)
    mask = np.ones((128, 128), bool)
    if landmarks_aligned is not None:
        hull = landmark_mask(np.asarray(landmarks_aligned) * (128.0 / size), 128, "hull") > 0.5
        if hull.sum() > 100:
            mask = hull
    out = 0.0
    for axis, kernel in ((1, (9, 1)), (0, (1, 9))):
        d_face = np.abs(np.diff(gray, axis=axis))
        d_blur = np.abs(np.diff(cv2.blur(gray, kernel), axis=axis))
        m = mask[:, 1:] & mask[:, :-1] if axis == 1 else mask[1:, :] & mask[:-1, :]
        total = float(d_face[m].sum())
        lost = float(np.maximum(0.0, d_face - d_blur)[m].sum())
        out = max(out, (total - lost) / max(total, 1e-6))
    return out
