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
from faceswap.faceset import FACES_DIR, REJECTED_DIR, Face, FaceSet, FaceSetError

log = logging.getLogger(__name__)

SORT_KEYS = ("blur", "yaw", "pitch", "roll", "identity", "residual", "jitter", "score", "frame")
STAT_KEYS = ("yaw", "pitch", "roll", "blur", "residual", "jitter", "score")
YAW_BIN = 15
DUPLICATE_THRESHOLD = 6

# 1.4826 * MAD estimates the standard deviation of normally distributed data, so
# `strictness` reads as "how many sigmas from typical".
_MAD_TO_SIGMA = 1.4826
# MAD floors, in each metric's own unit: with a (near-)uniform set the MAD is 0 and the
# threshold would sit on the median, flagging any face a hair worse than typical.
_MAD_FLOOR = {"log_blur": 0.05, "residual": 0.002, "jitter": 0.002}
# Share of the embeddings closest to the median that form the robust identity centroid.
_CENTROID_KEEP = 0.8
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
    }


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


@dataclass
class FilterRule:
    """Thresholds that flag a face; a field left at None is not checked."""

    blur_below: float | None = None
    residual_above: float | None = None
    jitter_above: float | None = None
    identity_above: float | None = None
    yaw_beyond: float | None = None  # |yaw| > value
    pitch_beyond: float | None = None  # |pitch| > value
    score_below: float | None = None


def _median_mad(values: np.ndarray, floor: float) -> tuple[float, float]:
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med)))
    return med, max(mad, floor)


def auto_rule(fs: FaceSet, strictness: float = 3.0) -> FilterRule:
    """Robust outlier thresholds from the set itself: `strictness` robust sigmas (1.4826 *
    MAD) from the median. Pose and score are left unset: wide poses are wanted, not outliers.
    """
    if not math.isfinite(strictness) or strictness <= 0:
        raise BadInput(f"strictness must be a positive number, got {strictness}")
    rule = FilterRule()
    if not fs.faces:
        return rule
    k = strictness * _MAD_TO_SIGMA
    # Blur scores (Laplacian variance) span orders of magnitude between sharp close-ups and
    # soft wide shots, and their spread grows with their level. In log space they are roughly
    # symmetric, so "k sigmas below typical" becomes a ratio instead of a difference that would
    # go negative (flagging nothing) for a set with a few very sharp faces.
    log_blur = np.log(np.maximum(np.asarray([f.blur for f in fs.faces], np.float64), 1e-6))
    med, mad = _median_mad(log_blur, _MAD_FLOOR["log_blur"])
    rule.blur_below = float(math.exp(med - k * mad))
    for key in ("residual", "jitter"):
        med, mad = _median_mad(
            np.asarray([getattr(f, key) for f in fs.faces], np.float64), _MAD_FLOOR[key]
        )
        setattr(rule, f"{key}_above", med + k * mad)
    if any(f.embedding is not None for f in fs.faces):
        rule.identity_above = SAME_PERSON
    return rule


def find_outliers(
    fs: FaceSet, rule: FilterRule, refs: np.ndarray | None = None
) -> list[tuple[Face, str]]:
    """Each face that a rule flags, with the reason from the first rule that fires (order:
    blur, residual, jitter, identity, yaw, pitch, score)."""
    ident = identity_distances(fs, refs) if rule.identity_above is not None else None
    out: list[tuple[Face, str]] = []
    for i, f in enumerate(fs.faces):
        reason = None
        if rule.blur_below is not None and f.blur < rule.blur_below:
            reason = f"blurry (blur {f.blur:.1f} < {rule.blur_below:.1f})"
        elif rule.residual_above is not None and f.residual > rule.residual_above:
            reason = f"misaligned (residual {f.residual:.3f} > {rule.residual_above:.3f})"
        elif rule.jitter_above is not None and f.jitter > rule.jitter_above:
            reason = f"unstable landmarks (jitter {f.jitter:.3f} > {rule.jitter_above:.3f})"
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


def _dhash(img_bgr: np.ndarray) -> np.uint64:
    """64-bit difference hash: 9x8 grayscale, 1 where a pixel is brighter than its left
    neighbour. Robust to small brightness, compression and blur changes, cheap to compare."""
    gray = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA)
    bits = small[:, 1:] > small[:, :-1]
    return np.packbits(bits.ravel()).view(np.uint64)[0]


def face_hashes(fs: FaceSet, faces: list[Face] | None = None) -> np.ndarray:
    """(N,) uint64 dHashes of the faces' aligned images (default: all of fs.faces)."""
    faces = fs.faces if faces is None else faces
    if not faces:
        return np.zeros(0, np.uint64)
    # Decoding dominates; OpenCV releases the GIL, so threads scale it across cores.
    workers = max(1, min(16, os.cpu_count() or 1, len(faces)))
    with ThreadPoolExecutor(workers) as pool:
        hashes = list(pool.map(lambda f: _dhash(fs.load_image(f)), faces, chunksize=64))
    return np.asarray(hashes, np.uint64)


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) bit distances between uint64 hashes."""
    x = np.bitwise_xor(a[:, None], b[None, :])
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0: hardware popcount
        return np.bitwise_count(x)
    return _POPCOUNT8[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.uint8)


def _cluster(hashes: np.ndarray, threshold: int) -> np.ndarray:
    """Greedy anchors in order: each hash joins the nearest earlier anchor within `threshold`,
    or becomes an anchor itself. Returns each hash's anchor index.

    Comparing against anchors only (not against every member) avoids chaining a slow pan into
    one huge cluster. Work is in blocks: one vectorized block x earlier-anchors comparison,
    then a sequential pass inside the block (vectorized over the block) for new anchors.
    """
    n = len(hashes)
    anchor_of = np.empty(n, np.int64)
    anchors = np.zeros(0, np.int64)
    anchor_hashes = np.zeros(0, np.uint64)
    for start in range(0, n, _BLOCK):
        block = hashes[start : start + _BLOCK]
        best = np.full(len(block), 65, np.int64)
        best_anchor = np.full(len(block), -1, np.int64)
        for a0 in range(0, len(anchor_hashes), 4 * _BLOCK):
            d = _hamming(block, anchor_hashes[a0 : a0 + 4 * _BLOCK])
            j = d.argmin(axis=1)  # first minimum: ties go to the earliest anchor
            dj = d[np.arange(len(block)), j]
            better = dj < best
            best[better] = dj[better]
            best_anchor[better] = anchors[a0 + j[better]]
        # Then in order within the block: a face still unmatched becomes an anchor, and the
        # later faces of the block compare against it too (exactly the sequential greedy).
        d_block = _hamming(block, block)
        added: list[int] = []
        for u in range(len(block)):
            if best[u] <= threshold:
                continue
            best_anchor[u] = start + u
            added.append(start + u)
            du = d_block[u, u + 1 :]
            better = du < best[u + 1 :]
            best[u + 1 :][better] = du[better]
            best_anchor[u + 1 :][better] = start + u
        anchor_of[start : start + len(block)] = best_anchor
        if added:
            anchors = np.concatenate([anchors, np.asarray(added, np.int64)])
            anchor_hashes = hashes[anchors]
    return anchor_of


def find_duplicates(fs: FaceSet, threshold: int = DUPLICATE_THRESHOLD) -> list[tuple[Face, Face]]:
    """Near-duplicate faces as (duplicate_to_reject, kept_face) pairs.

    Faces are hashed (64-bit dHash of the aligned image) and grouped greedily in (source,
    frame) order: a face within `threshold` bits of the first face of an earlier group joins
    the nearest such group. Each group keeps its sharpest face (highest blur; earliest on a tie).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= 64:
        raise BadInput(f"duplicate threshold must be an integer from 0 to 64, got {threshold!r}")
    if len(fs.faces) < 2:
        return []
    order = sorted(range(len(fs.faces)), key=lambda i: (fs.faces[i].source, fs.faces[i].frame))
    faces = [fs.faces[i] for i in order]
    anchor_of = _cluster(face_hashes(fs, faces), threshold)
    kept: dict[int, int] = {}
    for i, a in enumerate(anchor_of.tolist()):
        k = kept.get(a)
        if k is None or faces[i].blur > faces[k].blur:
            kept[a] = i
    pairs = [(faces[i], faces[kept[a]]) for i, a in enumerate(anchor_of.tolist()) if kept[a] != i]
    log.info("%d near-duplicates among %d faces (threshold %d)", len(pairs), len(faces), threshold)
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
