"""Pose and mouth coverage of face sets and the target frames that fall outside it.

A model only learns the poses it is shown: decoder B cannot draw B turned 45 degrees if B's face
set never turns that far. Poses are (yaw, pitch) in degrees from the face-set index.

One definition, used by every number of the report and its recommendations: a target face is
*covered* by a face set when at least `min_faces` of the set's faces lie within `radius` degrees
of it (Euclidean in the yaw x pitch plane), or when it is one of the set's own faces (the target
is that set's clip). A target face is *outside* when a set does not cover it, A or B: the swap
needs the encoder to know the pose (A) and decoder B to draw it (B). The per-axis gaps ("beyond
B's pitch") only sort the faces a set does not cover by the direction in which they leave its
range, so a gap's share is never larger than that set's uncovered share, which is never larger
than the outside share.

The mouth is one more axis a decoder only learns where it is shown: a face set of B talking
throughout never closes its mouth, and decoder B then draws B's parted lips over every closed
mouth of A (docs/quality.md). `mouth_gaps` finds the target faces whose inner-lip gap lies
beyond a set's range.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from faceswap.evaluate.swap_quality import mouth_opening
from faceswap.faceset import FaceSet, merge_spans

YAW_LIMIT = 90.0
PITCH_LIMIT = 60.0
# How far (in face heights, mouth_opening's unit) a target's mouth may lie beyond a set's most
# closed or most open faces and still count as shown: ~1 px of a 200 px face, dlib's noise.
MOUTH_TOLERANCE = 0.005


def poses_of(fs: FaceSet) -> np.ndarray:
    """(N, 2) yaw, pitch of the set's faces in degrees."""
    return np.asarray([(f.yaw, f.pitch) for f in fs.faces], np.float64).reshape(-1, 2)


def heatmap(poses: np.ndarray, bin_deg: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts (n_pitch, n_yaw) over yaw [-90, 90] x pitch [-60, 60] (poses beyond are clipped
    into the edge bins), with the yaw and pitch bin edges. Row 0 is the lowest pitch."""
    yaw_edges = np.arange(-YAW_LIMIT, YAW_LIMIT + bin_deg / 2, bin_deg)
    pitch_edges = np.arange(-PITCH_LIMIT, PITCH_LIMIT + bin_deg / 2, bin_deg)
    p = np.asarray(poses, np.float64).reshape(-1, 2)
    yaw = np.clip(p[:, 0], -YAW_LIMIT, YAW_LIMIT)
    pitch = np.clip(p[:, 1], -PITCH_LIMIT, PITCH_LIMIT)
    counts, _, _ = np.histogram2d(pitch, yaw, bins=[pitch_edges, yaw_edges])
    return counts.astype(np.int64), yaw_edges, pitch_edges


def covered(
    train: np.ndarray, query: np.ndarray, radius: float = 10.0, min_faces: int = 3
) -> np.ndarray:
    """(N,) bool: does `train` (M, 2) have at least min_faces poses within `radius` degrees of
    each `query` (N, 2) pose?"""
    query = np.asarray(query, np.float64).reshape(-1, 2)
    train = np.asarray(train, np.float64).reshape(-1, 2)
    if len(query) == 0:
        return np.zeros(0, bool)
    if len(train) < min_faces:
        return np.zeros(len(query), bool)
    counts = cKDTree(train).query_ball_point(query, r=radius, return_length=True)
    return np.asarray(counts) >= min_faces


def extent(values: np.ndarray, min_faces: int = 3) -> tuple[float, float] | None:
    """(low, high): the set has fewer than min_faces faces below low and above high (its
    min_faces-th smallest and largest value). None when it has fewer than min_faces faces."""
    v = np.sort(np.asarray(values, np.float64))
    if len(v) < min_faces:
        return None
    return float(v[min_faces - 1]), float(v[-min_faces])


def range_gaps(
    train: np.ndarray, target: np.ndarray, uncovered: np.ndarray, min_faces: int = 3
) -> list[dict]:
    """The uncovered target faces (bool mask `uncovered`) that lie beyond the training faces'
    extent, per axis and side: {"axis", "side" (+1 above / -1 below), "limit" (degrees),
    "share" (of all target faces), "faces" (count)}, for every side with at least one."""
    train = np.asarray(train, np.float64).reshape(-1, 2)
    target = np.asarray(target, np.float64).reshape(-1, 2)
    uncovered = np.asarray(uncovered, bool)
    out = []
    if len(target) == 0:
        return out
    for k, axis in enumerate(("yaw", "pitch")):
        ext = extent(train[:, k], min_faces)
        if ext is None:
            continue
        for side, limit in ((-1, ext[0]), (1, ext[1])):
            beyond = uncovered & (target[:, k] < limit if side < 0 else target[:, k] > limit)
            if beyond.any():
                out.append({"axis": axis, "side": side, "limit": round(limit, 2),
                            "share": round(float(beyond.mean()), 5),
                            "faces": int(beyond.sum())})  # fmt: skip
    return out


def frame_spans(frames: list[int]) -> list[list[int]]:
    """Frame numbers -> merged inclusive spans [[first, last], ...] for a readable list."""
    return [[a, b - 1] for a, b in merge_spans([[f, f + 1] for f in frames])]


def members(fs: FaceSet, target: FaceSet, tolerance: float = 1.0) -> np.ndarray:
    """(len(target.faces),) bool: the target face is also a face of `fs`: same source file,
    frame and position in the frame, at the same pose (within `tolerance` degrees)."""
    own = {(f.source, f.frame, f.name.rsplit("_", 1)[-1]): (f.yaw, f.pitch) for f in fs.faces}
    out = np.zeros(len(target.faces), bool)
    for i, f in enumerate(target.faces):
        pose = own.get((f.source, f.frame, f.name.rsplit("_", 1)[-1]))
        out[i] = pose is not None and max(abs(pose[0] - f.yaw), abs(pose[1] - f.pitch)) <= tolerance
    return out


def ood_target(
    sets: dict[str, np.ndarray],
    target: FaceSet,
    radius: float = 10.0,
    min_faces: int = 3,
    own: dict[str, np.ndarray] | None = None,
) -> dict:
    """Which faces of the target clip lie outside each training set's pose coverage.

    sets: name -> (M, 2) poses; own: name -> `members(set, target)`, target faces that are
    the set's own (covered by it whatever their neighbourhood). Returns per set the share and
    count of uncovered target faces and their gaps by axis; "outside" lists the faces that
    some set does not cover (with frame, yaw, pitch, which sets miss them) and their frames
    as spans per source."""
    tp = poses_of(target)
    cov = {k: covered(p, tp, radius, min_faces) for k, p in sets.items()}
    for k, m in (own or {}).items():
        if k in cov:
            cov[k] = cov[k] | m
    n = len(tp)
    out: dict = {"faces": n, "radius": radius, "min_faces": min_faces, "sets": {}}
    for k, c in cov.items():
        out["sets"][k] = {"uncovered": int((~c).sum()),
                          "share": round(float((~c).mean()), 5) if n else None,
                          "gaps": range_gaps(sets[k], tp, ~c, min_faces)}  # fmt: skip
    missing = np.zeros(n, bool)
    for c in cov.values():
        missing |= ~c
    out["outside_share"] = round(float(missing.mean()), 5) if n else None
    faces = []
    spans: dict[str, list[int]] = {}
    for i in np.flatnonzero(missing):
        f = target.faces[i]
        faces.append({"name": f.name, "frame": f.frame, "yaw": round(f.yaw, 1),
                      "pitch": round(f.pitch, 1),
                      "missing_in": [k for k, c in cov.items() if not c[i]]})  # fmt: skip
        spans.setdefault(f.source, []).append(f.frame)
    out["outside"] = faces
    out["outside_spans"] = {k: frame_spans(v) for k, v in spans.items()}
    return out


def mouths_of(fs: FaceSet) -> np.ndarray:
    """(N,) mouth opening (inner-lip gap over face height) of the set's faces."""
    if not fs.faces:
        return np.zeros(0, np.float64)
    return mouth_opening(np.stack([f.landmarks_array() for f in fs.faces]))


def mouth_gaps(
    train: np.ndarray,
    target: np.ndarray,
    own: np.ndarray | None = None,
    min_faces: int = 3,
    tolerance: float = MOUTH_TOLERANCE,
) -> list[dict]:
    """The target faces whose mouth is more closed (side -1) or more open (+1) than the set's
    extent, by more than `tolerance`: {"side", "limit" (the set's min_faces-th most closed or
    most open face), "share" (of all target faces), "faces"}, for each side with one. `own`:
    target faces that are the set's own (shown, whatever their opening)."""
    target = np.asarray(target, np.float64).reshape(-1)
    ext = extent(train, min_faces)
    if ext is None or len(target) == 0:
        return []
    shown = np.zeros(len(target), bool) if own is None else np.asarray(own, bool)
    out = []
    for side, limit in ((-1, ext[0]), (1, ext[1])):
        beyond = ~shown & (side * (target - limit) > tolerance)
        if beyond.any():
            out.append({"side": side, "limit": round(limit, 4),
                        "share": round(float(beyond.mean()), 5), "faces": int(beyond.sum())})  # fmt: skip
    return out
