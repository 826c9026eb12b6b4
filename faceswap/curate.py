"""Face-set curation: inspect, rank, flag and (reversibly) reject faces.

Outlier faces (blurry, misaligned, another person, near-duplicates) drag a trained model
down, so users need to find them fast. This is the library behind
`faceswap faceset info|sort|filter|dedupe|remove|restore`; the CLI does all printing.

Faces are never deleted: rejecting moves the file to `rejected/` and the record from
`fs.faces` to `fs.rejected` with a reason, and `restore` undoes it. Both moves are ordered
so that a crash at any moment leaves a valid index whose listed files all exist (at worst
an unlisted extra file is left behind).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import cv2
import numpy as np

from faceswap.errors import BadInput
from faceswap.extract.identity import SAME_PERSON, distances
from faceswap.extract.quality import blur_extent
from faceswap.faceset import FACES_DIR, REJECTED_DIR, Face, FaceSet, FaceSetError

log = logging.getLogger(__name__)

SORT_KEYS = ("blur", "yaw", "pitch", "roll", "identity", "residual", "jitter", "score", "frame")
STAT_KEYS = ("yaw", "pitch", "roll", "blur", "residual", "jitter", "score")
YAW_BIN = 15
# Share of the embeddings closest to the median that form the robust identity centroid.
_CENTROID_KEEP = 0.8
# A face is "rare" when fewer than RARE_NEIGHBOURS others are within RARE_RADIUS of its
# aligned landmark shape (RMS, crop sides; ~4 px at 256, a clearly different expression).
RARE_RADIUS = 0.015
RARE_NEIGHBOURS = 5
# Rows per block in blocked pairwise computations (bounds memory at ~N * block * 8 bytes).
_BLOCK = 512


# ---- inspection ---------------------------------------------------------------------------


def _stats(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    p = np.percentile(values, [0, 5, 50, 95, 100])
    return {k: round(float(v), 3) for k, v in zip(("min", "p5", "median", "p95", "max"), p)}


def _reason_kind(reason: str | None) -> str:
    """The reason without its numbers ("blurry (blur 12.3 < 40.0)" -> "blurry") for counting."""
    if not reason:
        return "unknown"
    return reason.split(" (", 1)[0].strip() or "unknown"


def info(fs: FaceSet) -> dict[str, Any]:
    """A JSON-serializable summary of the face set for `faceswap faceset info`."""
    by_reason: dict[str, int] = {}
    for f in fs.rejected:
        kind = _reason_kind(f.reason)
        by_reason[kind] = by_reason.get(kind, 0) + 1

    metrics = {
        key: _stats(np.asarray([getattr(f, key) for f in fs.faces], np.float64))
        for key in STAT_KEYS
    }

    yaws = np.clip(np.asarray([f.yaw for f in fs.faces], np.float64), -90.0, 90.0)
    edges = np.arange(-90, 91, YAW_BIN)
    counts, _ = np.histogram(yaws, bins=edges)
    histogram = [
        {"from": int(a), "to": int(b), "count": int(n)}
        for a, b, n in zip(edges[:-1], edges[1:], counts)
    ]

    dist = identity_distances(fs)
    dist = dist[np.isfinite(dist)]
    identity = None
    if dist.size:
        p50, p95 = np.percentile(dist, [50, 95])
        identity = {
            "centroid_distance": {
                "median": round(float(p50), 3),
                "p95": round(float(p95), 3),
                "max": round(float(dist.max()), 3),
            },
            "beyond_threshold": int((dist > SAME_PERSON).sum()),
        }

    outliers: dict[str, int] = {}
    for _f, reason in find_outliers(fs, auto_rule(fs)):
        kind = _reason_kind(reason)
        outliers[kind] = outliers.get(kind, 0) + 1

    return {
        "faces": len(fs.faces),
        "rejected": len(fs.rejected),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "sources": len(fs.sources),
        "size": fs.size,
        "centering": fs.centering,
        "image_format": fs.image_format,
        "faces_with_embedding": sum(f.embedding is not None for f in fs.faces),
        **metrics,
        "yaw_histogram": histogram,
        "identity": identity,
        "near_duplicates": len(find_duplicates(fs)),
        # The two numbers to weigh: outliers drag a model down, but losing rare expressions
        # and poses drags it down more, so neither count should be traded for the other.
        "outliers": outliers,
        "rare": rare_faces(fs),
    }


def rare_faces(fs: FaceSet, radius: float = RARE_RADIUS, neighbours: int = RARE_NEIGHBOURS) -> int:
    """How many faces have an expression and pose that fewer than `neighbours` other faces
    share: fewer than that within `radius` (RMS aligned-landmark distance, crop sides). These
    are what a model learns least of; curation should never be what removes them."""
    n = len(fs.faces)
    if n == 0:
        return 0
    shape = np.stack([f.aligned_landmarks().ravel() / fs.size for f in fs.faces])
    lim = radius**2 * (shape.shape[1] // 2)
    count = 0
    for start in range(0, n, _BLOCK):
        close = (_sq_dist(shape[start : start + _BLOCK], shape) < lim).sum(1) - 1  # not itself
        count += int((close < neighbours).sum())
    return count


def _nearest_distances(emb: np.ndarray, refs: np.ndarray) -> np.ndarray:
    # identity.distances builds an (N, R, 128) array; blocks keep that small for big sets.
    out = np.empty(len(emb), np.float64)
    step = max(1, 4_000_000 // (128 * max(1, len(refs))))
    for i in range(0, len(emb), step):
        out[i : i + step] = distances(emb[i : i + step], refs)
    return out


def _robust_centroid(emb: np.ndarray) -> np.ndarray:
    """Median, then the mean of the 80% closest to it: a minority of other people (or bad
    embeddings) cannot pull the centroid towards themselves."""
    med = np.median(emb, axis=0)
    d = np.linalg.norm(emb - med, axis=1)
    keep = max(1, math.ceil(_CENTROID_KEEP * len(emb)))
    return emb[np.argsort(d, kind="stable")[:keep]].mean(axis=0)


def identity_distances(fs: FaceSet, refs: np.ndarray | None = None) -> np.ndarray:
    """(len(fs.faces),) distance of each face's embedding to the nearest of `refs`, or without
    refs to the set's robust centroid. NaN for faces without an embedding."""
    out = np.full(len(fs.faces), np.nan, np.float64)
    emb, idx = fs.embeddings()
    if not idx:
        return out
    if refs is None:
        ref = _robust_centroid(emb.astype(np.float64))[None, :]
    else:
        ref = np.asarray(refs, np.float64)
        if ref.ndim == 1:
            ref = ref[None, :]
        if ref.ndim != 2 or ref.shape[0] == 0 or ref.shape[1] != emb.shape[1]:
            raise BadInput(
                f"reference embeddings must be (N, {emb.shape[1]}), got {tuple(ref.shape)}"
            )
        if not np.isfinite(ref).all():
            raise BadInput("reference embeddings contain NaN or infinite values")
    out[idx] = _nearest_distances(emb.astype(np.float64), ref)
    return out


# ---- sorting ------------------------------------------------------------------------------


def _values(fs: FaceSet, key: str, refs: np.ndarray | None = None) -> np.ndarray:
    if key not in SORT_KEYS:
        raise BadInput(f"unknown sort key {key!r}; choose one of {', '.join(SORT_KEYS)}")
    if key == "identity":
        return identity_distances(fs, refs)
    return np.asarray([getattr(f, key) for f in fs.faces], np.float64)


def sort_faces(fs: FaceSet, key: str, reverse: bool = False) -> list[tuple[Face, float]]:
    """Faces with their value of `key`, ascending (descending with reverse).

    yaw/pitch/roll sort by the signed angle. "frame" sorts by (source, frame) so one clip's
    faces stay together. Faces without a value (identity without embedding) come last
    either way.
    """
    values = _values(fs, key)
    faces = fs.faces
    finite = [i for i in range(len(faces)) if not math.isnan(values[i])]
    missing = [i for i in range(len(faces)) if math.isnan(values[i])]
    if key == "frame":
        order = sorted(finite, key=lambda i: (faces[i].source, faces[i].frame), reverse=reverse)
    else:
        order = sorted(finite, key=lambda i: values[i], reverse=reverse)
    return [(faces[i], float(values[i])) for i in order + missing]


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard link (instant, no extra space); copy where the file system cannot link."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def export_sorted(fs: FaceSet, ranked: list[tuple[Face, float]], out_dir: Path) -> int:
    """Write the ranked faces into `out_dir` as `<rank>_<value>_<name><ext>` (rank from 1) so
    a file browser shows them in order. Returns the count.

    Files are hard links where possible: editing one in place would edit the face set's copy,
    but deleting or renaming them is harmless.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise BadInput(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()):
            raise BadInput(f"{out_dir}: folder is not empty; name a new or empty one")
    out_dir.mkdir(parents=True, exist_ok=True)
    for rank, (face, value) in enumerate(ranked, start=1):
        src = fs.path_of(face)
        if not src.is_file():
            raise FaceSetError(f"{src}: face image is missing")
        ext = PurePosixPath(face.file).suffix
        _link_or_copy(src, out_dir / f"{rank:05d}_{value:+.3f}_{face.name}{ext}")
    log.info("exported %d faces to %s", len(ranked), out_dir)
    return len(ranked)


# ---- filtering ----------------------------------------------------------------------------

# Absolute thresholds for faces that are bad whatever the rest of the set looks like,
# calibrated on faces degraded on purpose inside the real clips d6, d9, face2 and face4
# (docs/curation.md, scripts/bench_curation.py).
# Blur is two views that must agree: the re-blur extent (quality.blur_extent: a ratio, so
# content-independent; sharp faces 0.32-0.52, the top being closed eyes, which lose edges, not
# sharpness) and the Laplacian variance at 128 px (sharp faces 57-880, a Gaussian blur of
# 2 px at 256 px brings every face of those clips under 80).
BLUR_EXTENT_ABSOLUTE = 0.5
BLUR_ABSOLUTE = 100.0
# Soft footage (a webcam, a compressed upload) can have most faces over the absolute extent;
# then a face must be this much blurrier than the set's median (the relative last resort).
BLUR_EXTENT_MARGIN = 0.1
# Landmarks far from the mean face shape, in crop sides: real faces, grimaces included, stay
# under 0.04; a crop of something that is not a face scores ~0.1.
RESIDUAL_ABSOLUTE = 0.08
# Movement of the landmarks under a 5% box shift, in eye distances. A sure aligner moves them
# < 0.06 (real grimaces up to ~0.2); landmarks fitted to the wrong place move 0.1-1.0.
JITTER_ABSOLUTE = 0.3
# Distance of a face's landmarks from the line between its neighbouring frames of the same
# track, in eye distances: the head's own motion cancels, a landmark fit that jumped off the
# face does not. Real talking and grimacing at 25-30 fps stays under ~0.22.
JUMP_ABSOLUTE = 0.3
# Neighbours further apart than this (seconds) say too little about the frame in between.
_JUMP_MAX_GAP = 0.15


@dataclass
class FilterRule:
    """Thresholds that flag a face; a field left at None is not checked."""

    blur_below: float | None = None
    blur_extent_above: float | None = None  # with blur_below too, both must fire
    residual_above: float | None = None
    jitter_above: float | None = None
    jump_above: float | None = None
    identity_above: float | None = None
    yaw_beyond: float | None = None  # |yaw| > value
    pitch_beyond: float | None = None  # |pitch| > value
    score_below: float | None = None


def auto_rule(fs: FaceSet, strictness: float = 1.0) -> FilterRule:
    """Thresholds for faces that are really bad: absolute values (module constants), with one
    relative fallback for blur on soft footage. `strictness` > 1 flags more (every threshold
    moves towards typical faces by that factor), < 1 fewer. Pose and score are left unset:
    wide poses and rare expressions are wanted, not outliers.
    """
    if not math.isfinite(strictness) or strictness <= 0:
        raise BadInput(f"strictness must be a positive number, got {strictness}")
    rule = FilterRule()
    if not fs.faces:
        return rule
    extents = blur_extents(fs)
    rule.blur_extent_above = max(
        BLUR_EXTENT_ABSOLUTE / strictness, float(np.median(extents)) + BLUR_EXTENT_MARGIN
    )
    rule.blur_below = BLUR_ABSOLUTE * strictness
    rule.residual_above = RESIDUAL_ABSOLUTE / strictness
    rule.jitter_above = JITTER_ABSOLUTE / strictness
    rule.jump_above = JUMP_ABSOLUTE / strictness
    if any(f.embedding is not None for f in fs.faces):
        rule.identity_above = SAME_PERSON
    return rule


def blur_extents(fs: FaceSet, faces: list[Face] | None = None) -> np.ndarray:
    """(N,) quality.blur_extent of each face's aligned image (default: all of fs.faces)."""
    faces = fs.faces if faces is None else faces
    if not faces:
        return np.zeros(0, np.float64)
    workers = max(1, min(16, os.cpu_count() or 1, len(faces)))
    with ThreadPoolExecutor(workers) as pool:
        out = pool.map(lambda f: blur_extent(fs.load_image(f), f.aligned_landmarks()), faces)
        return np.asarray(list(out), np.float64)


def _eye_distance(lms: np.ndarray) -> float:
    return max(float(np.linalg.norm(lms[36:42].mean(0) - lms[42:48].mean(0))), 1e-6)


def landmark_jumps(fs: FaceSet, max_gap: float = _JUMP_MAX_GAP) -> np.ndarray:
    """(len(fs.faces),) how far each face's landmarks sit from where its neighbouring frames
    put them, in eye distances; NaN without a face of the same track within `max_gap` seconds
    on both sides (still images, sparse extraction, the ends of a track).

    The prediction interpolates the previous and next faces' landmarks linearly in time, so
    a head that moves, turns or talks predicts itself; a landmark fit that lands on the wrong
    place does not. Half of the largest neighbouring jump is taken off (see below).
    """
    raw = np.full(len(fs.faces), np.nan, np.float64)
    tracks: dict[tuple[str, int], list[int]] = {}
    for i, f in enumerate(fs.faces):
        if f.time is not None and math.isfinite(f.time):
            tracks.setdefault((f.source, f.track), []).append(i)
    pairs: list[tuple[int, int]] = []  # (face, neighbour) whose prediction used each other
    for members in tracks.values():
        members.sort(key=lambda i: fs.faces[i].time)  # type: ignore[arg-type,return-value]
        for k in range(1, len(members) - 1):
            p, c, n = (fs.faces[members[j]] for j in (k - 1, k, k + 1))
            tp, tc, tn = p.time, c.time, n.time
            assert tp is not None and tc is not None and tn is not None
            if tc - tp > max_gap or tn - tc > max_gap or tn <= tp:
                continue
            w = (tc - tp) / (tn - tp)
            pred = (1 - w) * p.landmarks_array() + w * n.landmarks_array()
            lms = c.landmarks_array()
            raw[members[k]] = float(np.linalg.norm(lms - pred, axis=1).mean()) / _eye_distance(lms)
            pairs += [(members[k], members[k - 1]), (members[k], members[k + 1])]
    # One bad fit also spoils its neighbours' predictions, by about half its own error: take
    # half of the largest neighbouring jump off, so only the face that jumped stays high.
    blame = np.zeros(len(fs.faces), np.float64)
    for i, j in pairs:
        if math.isfinite(raw[j]):
            blame[i] = max(blame[i], 0.5 * raw[j])
    return np.maximum(raw - blame, 0.0)


def find_outliers(
    fs: FaceSet, rule: FilterRule, refs: np.ndarray | None = None
) -> list[tuple[Face, str]]:
    """Each face that a rule flags, with the reason from the first rule that fires (order:
    blur, residual, jitter, jump, identity, yaw, pitch, score)."""
    ident = identity_distances(fs, refs) if rule.identity_above is not None else None
    jumps = landmark_jumps(fs) if rule.jump_above is not None else None
    extent = blur_extents(fs) if rule.blur_extent_above is not None else None
    out: list[tuple[Face, str]] = []
    for i, f in enumerate(fs.faces):
        reason = None
        soft = rule.blur_below is not None and f.blur < rule.blur_below
        if extent is not None and rule.blur_extent_above is not None:
            smeared = extent[i] > rule.blur_extent_above
            if smeared and (rule.blur_below is None or soft):
                reason = f"blurry (extent {extent[i]:.3f} > {rule.blur_extent_above:.3f}" + (
                    f", blur {f.blur:.1f} < {rule.blur_below:.1f})" if soft else ")"
                )
        elif soft:
            reason = f"blurry (blur {f.blur:.1f} < {rule.blur_below:.1f})"
        if reason is not None:
            out.append((f, reason))
            continue
        if rule.residual_above is not None and f.residual > rule.residual_above:
            reason = f"misaligned (residual {f.residual:.3f} > {rule.residual_above:.3f})"
        elif rule.jitter_above is not None and f.jitter > rule.jitter_above:
            reason = f"unstable landmarks (jitter {f.jitter:.3f} > {rule.jitter_above:.3f})"
        elif (
            jumps is not None
            and rule.jump_above is not None
            and jumps[i] > rule.jump_above  # NaN (no neighbours) never fires
        ):
            reason = f"landmarks jump (jump {jumps[i]:.3f} > {rule.jump_above:.3f})"
        elif (
            ident is not None
            and rule.identity_above is not None
            and ident[i] > rule.identity_above  # NaN (no embedding) never fires
        ):
            reason = f"other person (identity {ident[i]:.3f} > {rule.identity_above:.3f})"
        elif rule.yaw_beyond is not None and abs(f.yaw) > rule.yaw_beyond:
            reason = f"extreme yaw (yaw {f.yaw:+.1f}, |yaw| > {rule.yaw_beyond:.1f})"
        elif rule.pitch_beyond is not None and abs(f.pitch) > rule.pitch_beyond:
            reason = f"extreme pitch (pitch {f.pitch:+.1f}, |pitch| > {rule.pitch_beyond:.1f})"
        elif rule.score_below is not None and f.score < rule.score_below:
            reason = f"low score (score {f.score:.3f} < {rule.score_below:.3f})"
        if reason is not None:
            out.append((f, reason))
    return out


# ---- near-duplicates ----------------------------------------------------------------------

# Two aligned faces are near-duplicates when BOTH their landmark shapes and their low-res
# pixels match: the shape term sees expression and pose (a mouth opening 2 px is a new face
# for the model), the pixel term sees what landmarks miss (eyes closing, gaze, lighting).
# Calibrated on the real talking-head clips d6 and d9 (docs/curation.md): consecutive frames
# at 30 fps differ by a median 0.005-0.008 in shape and 0.11-0.16 in pixels, dlib's landmark
# noise on a still face is ~0.003, two random frames of one clip ~0.02 and ~0.35.
DUPLICATE_SHAPE = 0.004  # RMS landmark distance, fraction of the crop side (~1 px at 256)
DUPLICATE_PIXELS = 0.05  # RMS difference of the 32x32 grey crops, each scaled to mean 0, std 1
_THUMB = 32


def _thumb(img_bgr: np.ndarray) -> np.ndarray:
    """(1024,) float32 grey 32x32 thumbnail scaled to mean 0, std 1: blind to exposure and
    contrast changes, not to expression."""
    gray = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    return ((small - small.mean()) / (small.std() + 1e-6)).ravel()


def face_features(fs: FaceSet, faces: list[Face] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 136) aligned landmarks as fractions of the crop side, and (N, 1024) thumbnails."""
    faces = fs.faces if faces is None else faces
    if not faces:
        return np.zeros((0, 136), np.float32), np.zeros((0, _THUMB * _THUMB), np.float32)
    shape = np.stack([f.aligned_landmarks().ravel() / fs.size for f in faces]).astype(np.float32)
    # Decoding dominates; OpenCV releases the GIL, so threads scale it across cores.
    workers = max(1, min(16, os.cpu_count() or 1, len(faces)))
    with ThreadPoolExecutor(workers) as pool:
        thumbs = list(pool.map(lambda f: _thumb(fs.load_image(f)), faces, chunksize=64))
    return shape, np.stack(thumbs)


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances by one matrix product."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def _cluster(shape: np.ndarray, pixels: np.ndarray, max_shape: float, max_pixels: float):
    """Greedy anchors in order: each face joins the earlier anchor nearest in shape among those
    within both thresholds, or becomes an anchor itself. Returns each face's anchor index.

    Comparing against anchors only (not every member) stops a slow change of expression from
    chaining into one group. Shapes are compared blockwise by matrix products; pixels only for
    the few pairs whose shapes match.
    """
    n = len(shape)
    dim_s, dim_p = shape.shape[1] // 2, pixels.shape[1]
    lim_s, lim_p = max_shape**2 * dim_s, max_pixels**2 * dim_p  # on squared sums
    anchor_of = np.empty(n, np.int64)
    anchors: list[int] = []
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        # earlier anchors, vectorized over the block
        best = np.full(stop - start, np.inf)
        best_anchor = np.full(stop - start, -1, np.int64)
        if anchors:
            idx = np.asarray(anchors)
            ds = _sq_dist(shape[start:stop], shape[idx])
            for u, j in zip(*np.nonzero(ds < lim_s)):
                if ds[u, j] < best[u]:
                    dp = float(((pixels[start + u] - pixels[idx[j]]) ** 2).sum())
                    if dp < lim_p:
                        best[u], best_anchor[u] = ds[u, j], idx[j]
        # then in order within the block, against the anchors it adds
        new: list[int] = []
        for u in range(stop - start):
            i = start + u
            if new:
                nid = np.asarray(new)
                ds = ((shape[nid] - shape[i]) ** 2).sum(1)
                for j in np.nonzero(ds < lim_s)[0]:
                    if ds[j] < best[u] and ((pixels[nid[j]] - pixels[i]) ** 2).sum() < lim_p:
                        best[u], best_anchor[u] = ds[j], nid[j]
            if best_anchor[u] < 0:
                best_anchor[u] = i
                new.append(i)
        anchor_of[start:stop] = best_anchor
        anchors.extend(new)
    return anchor_of


def find_duplicates(
    fs: FaceSet, max_shape: float = DUPLICATE_SHAPE, max_pixels: float = DUPLICATE_PIXELS
) -> list[tuple[Face, Face]]:
    """Near-duplicate faces as (duplicate_to_reject, kept_face) pairs.

    Faces are grouped greedily in (source, frame) order: a face whose aligned landmarks are
    within `max_shape` (RMS, fraction of the crop side) AND whose 32x32 grey thumbnail is
    within `max_pixels` (RMS, normalised) of the first face of an earlier group joins the
    nearest such group. Each group keeps its sharpest face (highest blur; earliest on a tie).
    """
    for name, v in (("shape", max_shape), ("pixel", max_pixels)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
            raise BadInput(f"duplicate {name} threshold must be a number >= 0, got {v!r}")
    if len(fs.faces) < 2:
        return []
    order = sorted(range(len(fs.faces)), key=lambda i: (fs.faces[i].source, fs.faces[i].frame))
    faces = [fs.faces[i] for i in order]
    shape, pixels = face_features(fs, faces)
    anchor_of = _cluster(shape, pixels, float(max_shape), float(max_pixels))
    kept: dict[int, int] = {}
    for i, a in enumerate(anchor_of.tolist()):
        k = kept.get(a)
        if k is None or faces[i].blur > faces[k].blur:
            kept[a] = i
    pairs = [(faces[i], faces[kept[a]]) for i, a in enumerate(anchor_of.tolist()) if kept[a] != i]
    log.info("%d near-duplicates among %d faces (shape %.4f, pixels %.3f)", len(pairs),
             len(faces), max_shape, max_pixels)  # fmt: skip
    return pairs


# ---- rejecting and restoring --------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    """Make new directory entries durable before the index names them (POSIX only)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _move(
    fs: FaceSet, records: list[Face], dest_dir: str, reasons: list[str | None], to_rejected: bool
) -> int:
    """Move `records` (in fs.faces, or fs.rejected when restoring) to `dest_dir`, crash-safely:
    1. link/copy each file to its new place (the index does not name these yet),
    2. update the records and atomically save the index (now it names the new files),
    3. unlink the old files (no longer named).
    A crash before 2 leaves unlisted extra files, after 2 unlisted old files; never a listed
    file that is missing.
    """
    if not records:
        return 0
    listed = {f.file for f in fs.faces + fs.rejected}
    plan: list[tuple[Face, Path, Path, str]] = []
    for f in records:
        name = PurePosixPath(f.file).name
        new_rel = f"{dest_dir}/{name}"
        src, dst = fs.path_of(f), fs.root / dest_dir / name
        if new_rel in listed:
            raise FaceSetError(f"{dst}: another face in the index already uses this file")
        if not src.is_file() and not dst.is_file():
            raise FaceSetError(f"{src}: face image is missing")
        plan.append((f, src, dst, new_rel))

    (fs.root / dest_dir).mkdir(exist_ok=True)
    for _f, src, dst, _rel in plan:
        if not src.is_file():
            continue  # an earlier interrupted move already placed it; keep that copy
        if dst.exists() or dst.is_symlink():
            if _same_file(src, dst):
                continue  # left by an interrupted earlier attempt: the same file
            dst.unlink()  # unlisted leftover with other content: replace it
        _link_or_copy(src, dst)
    _fsync_dir(fs.root / dest_dir)

    old = [(f, f.file, f.reason) for f, *_ in plan]
    old_faces, old_rejected = list(fs.faces), list(fs.rejected)
    moving = {id(f) for f, *_ in plan}
    for (f, _src, _dst, rel), reason in zip(plan, reasons):
        f.file, f.reason = rel, reason
    if to_rejected:
        fs.faces = [f for f in fs.faces if id(f) not in moving]
        fs.rejected = fs.rejected + [f for f, *_ in plan]
    else:
        fs.rejected = [f for f in fs.rejected if id(f) not in moving]
        fs.faces = fs.faces + [f for f, *_ in plan]
    try:
        fs.save()
    except BaseException:
        # The index on disk is unchanged; put the in-memory set back to match it.
        for f, file, reason in old:
            f.file, f.reason = file, reason
        fs.faces, fs.rejected = old_faces, old_rejected
        raise

    for _f, src, _dst, _rel in plan:
        try:
            src.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s (%s); it is an unlisted extra copy", src, exc)
    return len(plan)


def _unique_by_file(faces: list[Face], pool: list[Face]) -> list[tuple[Face, int]]:
    """Map faces (possibly from another FaceSet object) to pool records by file, once each."""
    index = {f.file: i for i, f in enumerate(pool)}
    seen: set[int] = set()
    out = []
    for pos, f in enumerate(faces):
        i = index.get(f.file)
        if i is not None and i not in seen:
            seen.add(i)
            out.append((pool[i], pos))
    return out


def move_to_rejected(fs: FaceSet, flagged: list[tuple[Face, str]]) -> int:
    """Move flagged faces to rejected/ with their reasons; saves the index. Faces that are not
    (or no longer) in fs.faces are ignored. Returns how many were moved."""
    picked = _unique_by_file([f for f, _ in flagged], fs.faces)
    records = [rec for rec, _ in picked]
    reasons: list[str | None] = [flagged[pos][1] for _, pos in picked]
    n = _move(fs, records, REJECTED_DIR, reasons, to_rejected=True)
    if n:
        log.info("moved %d faces to %s/", n, REJECTED_DIR)
    return n


def _name_keys(f: Face) -> tuple[str, str]:
    p = PurePosixPath(f.file)
    return p.stem, p.name


def _lookup(name: str) -> str:
    # Accept a path too ("faces/x.png"): users paste what a file browser shows.
    return PurePath(name.replace("\\", "/")).name


def restore(fs: FaceSet, names: list[str] | None) -> int:
    """Move rejected faces back into faces/ (names: stems or file names; None = all) and
    clear their reasons; saves the index. Returns how many were restored."""
    if names is None:
        records = list(fs.rejected)
    else:
        by_name: dict[str, Face] = {}
        for f in fs.rejected:
            for key in _name_keys(f):
                by_name.setdefault(key, f)
        active = {key for f in fs.faces for key in _name_keys(f)}
        records, seen = [], set()
        for name in names:
            f = by_name.get(_lookup(name))
            if f is None:
                where = "is not rejected" if _lookup(name) in active else "is not in this face set"
                raise BadInput(f"face {name!r} {where}")
            if id(f) not in seen:
                seen.add(id(f))
                records.append(f)
    n = _move(fs, records, FACES_DIR, [None] * len(records), to_rejected=False)
    if n:
        log.info("restored %d faces to %s/", n, FACES_DIR)
    return n


def select(fs: FaceSet, names: list[str]) -> list[Face]:
    """The faces in fs.faces with these names (stems or file names), in the given order."""
    by_name: dict[str, Face] = {}
    for f in fs.faces:
        for key in _name_keys(f):
            by_name.setdefault(key, f)
    rejected = {key for f in fs.rejected for key in _name_keys(f)}
    out: list[Face] = []
    seen: set[int] = set()
    for name in names:
        f = by_name.get(_lookup(name))
        if f is None:
            where = (
                "is already rejected" if _lookup(name) in rejected else "is not in this face set"
            )
            raise BadInput(f"face {name!r} {where}")
        if id(f) not in seen:
            seen.add(id(f))
            out.append(f)
    return out
