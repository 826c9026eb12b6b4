"""Train/validation split that keeps near-duplicate neighbouring frames on one side.

Consecutive video frames are near-copies of each other, so a per-face random split would put
the twin of almost every validation face into training and make the validation loss a training
loss. Instead faces are grouped into blocks of consecutive frames of one source (a block ends at
a break of more than `gap` frames or after `block` frames, about 2 s of video); whole blocks go
to validation, and training faces within `gap` frames of a validation face of the same source
are dropped (a guard band), so no training face is a near-copy of a validation face.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from faceswap.data.facepool import FacePool
from faceswap.errors import BadInput
from faceswap.faceset import FaceSet

logger = logging.getLogger(__name__)

DEFAULT_GAP = 12  # frames: half a second at 24 fps, where a face still looks nearly the same
DEFAULT_BLOCK_SECONDS = 2.0
_FALLBACK_FPS = 24.0  # for videos whose frame rate is unknown
# the fewest faces a small set's validation holds (two batches of the CPU default's 4)
MIN_VAL_FACES = 8


def blocks_of(fs: FaceSet, gap: int = DEFAULT_GAP, block: int | None = None) -> list[list[int]]:
    """Face indices grouped into blocks of consecutive frames of one source, in a fixed order
    (sources by key, blocks by frame). Each still image is one block. `block` is the longest
    block in frames (None: 2 s at the source's frame rate)."""
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(fs.faces):
        by_source[f.source].append(i)
    out: list[list[int]] = []
    for key in sorted(by_source):
        idx = by_source[key]
        src = fs.sources.get(key)
        if src is None or src.kind == "image":
            out.append(sorted(idx))
            continue
        idx.sort(key=lambda i: (fs.faces[i].frame, i))
        length = (
            block
            if block is not None
            else round(DEFAULT_BLOCK_SECONDS * (src.fps or _FALLBACK_FPS))
        )
        length = max(1, length)
        cur = [idx[0]]
        start = prev = fs.faces[idx[0]].frame
        for i in idx[1:]:
            frame = fs.faces[i].frame
            if frame - prev > gap or frame - start >= length:
                out.append(cur)
                cur, start = [], frame
            cur.append(i)
            prev = frame
        out.append(cur)
    return out


def _near(fs: FaceSet, candidates: list[int], others: list[int], gap: int) -> list[bool]:
    """For each candidate face: is a face of `others` from the same source within `gap` frames?"""
    frames: dict[str, list[int]] = defaultdict(list)
    for i in others:
        frames[fs.faces[i].source].append(fs.faces[i].frame)
    sorted_frames = {k: np.sort(np.asarray(v)) for k, v in frames.items()}
    out = []
    for i in candidates:
        f = fs.faces[i]
        arr = sorted_frames.get(f.source)
        if arr is None:
            out.append(False)
            continue
        j = int(np.searchsorted(arr, f.frame))
        near = (j < len(arr) and arr[j] - f.frame <= gap) or (j > 0 and f.frame - arr[j - 1] <= gap)
        out.append(bool(near))
    return out


def train_around(fs: FaceSet, val: list[int], gap: int = DEFAULT_GAP) -> list[int]:
    """The training faces that go with validation faces `val`: every other face, less those
    within `gap` frames of a validation face of the same source (the guard band)."""
    in_val = set(val)
    rest = [i for i in range(len(fs.faces)) if i not in in_val]
    return [i for i, near in zip(rest, _near(fs, rest, list(val), gap)) if not near]


def leak_report(fs: FaceSet, train: list[int], val: list[int], gap: int = DEFAULT_GAP) -> int:
    """Number of training faces within `gap` frames of a validation face of the same source
    (0 for `split_train_val` with the same gap)."""
    return sum(_near(fs, list(train), list(val), gap))


def split_train_val(
    fs: FaceSet,
    val_fraction: float = 0.05,
    seed: int = 0,
    gap: int = DEFAULT_GAP,
    block: int | None = None,
) -> tuple[list[int], list[int]]:
    """(train, val) indices into fs.faces, sorted. Whole blocks of consecutive frames (see
    `blocks_of`) are drawn into validation in a seeded order until about `val_fraction` of the
    faces; training faces within `gap` frames of a validation face of the same source are left
    out of both sides. A small set, whose blocks are all more than twice its share, holds out
    the first or last MIN_VAL_FACES faces of one clip instead (see `_clip_end`). val_fraction 0
    gives every face to training.

    Raises BadInput when the set has fewer than two blocks (nothing can be held out without
    leaking) or when the guard band would leave no training face.
    """
    if not 0.0 <= val_fraction <= 0.5:
        raise ValueError(f"val_fraction must be between 0 and 0.5, not {val_fraction}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, not {gap}")
    if isinstance(fs, FacePool):
        return _split_pool(fs, val_fraction, seed, gap, block)
    n = len(fs.faces)
    if val_fraction == 0.0:
        return list(range(n)), []
    blocks = blocks_of(fs, gap, block)
    too_small = (
        f"face set {fs.root} is too small to hold out validation: {n} faces in {len(blocks)} "
        f"block(s) of consecutive frames; add footage: validation holds out whole blocks "
        f"(~2 s of video, or one photo each) and needs at least 2"
    )
    if len(blocks) < 2:
        raise BadInput(too_small)
    target = val_fraction * n
    order = np.random.default_rng(seed).permutation(len(blocks))
    chosen: list[int] = []
    count = 0
    for b in order:
        if count >= target:
            break
        size = len(blocks[b])
        # take a block only if it brings the count closer to the target, so one long block
        # cannot swallow the validation share of a small set
        if abs(count + size - target) < abs(count - target):
            chosen.append(int(b))
            count += size
    if chosen:
        val = sorted(i for b in chosen for i in blocks[b])
    else:  # every block is more than twice the target: a small set
        val = _clip_end(fs, blocks, order, target)
    train = train_around(fs, val, gap)
    if not train:
        raise BadInput(too_small)
    logger.info(
        "split %d faces: %d train, %d validation in %d of %d blocks, %d left out as a guard band",
        n, len(train), len(val), max(len(chosen), 1), len(blocks), n - len(train) - len(val),
    )  # fmt: skip
    return train, val


def _clip_end(fs: FaceSet, blocks: list[list[int]], order: np.ndarray, target: float) -> list[int]:
    """Validation for a set whose blocks are all more than twice its share: the first or the
    last MIN_VAL_FACES (or the share, if larger) faces of one clip, so the guard band costs one
    gap, not two, and the rest of the block trains. Holding out a whole 2-second block here
    cost a 125-face clip 25 faces plus 12 of guard band (30% of the set); its end costs 8 + 12.
    A set of stills holds out its smallest photo."""
    k = max(MIN_VAL_FACES, int(np.ceil(target)))
    source = [fs.faces[block[0]].source for block in blocks]  # a clip's blocks are adjacent
    tail: dict[int, bool] = {}  # a clip's first or last block -> hold out from its tail?
    for b, key in enumerate(source):
        src = fs.sources.get(key)
        if src is None or src.kind == "image":
            continue
        first, last = b == 0 or source[b - 1] != key, b + 1 == len(blocks) or source[b + 1] != key
        if first or last:
            tail[b] = last
    ends = [int(b) for b in order if int(b) in tail]  # in the seeded block order
    if not ends:
        return sorted(min((blocks[int(b)] for b in order), key=len))
    block = blocks[ends[0]]
    return sorted(block[-k:] if tail[ends[0]] else block[:k])


def _split_pool(
    fs: FacePool, val_fraction: float, seed: int, gap: int, block: int | None
) -> tuple[list[int], list[int]]:
    """A pool is split member by member with the same seed, so every identity keeps its
    share of validation and a member's split is the one it gets when trained alone. A member
    too small to hold out validation trains on all its faces (a warning), as long as another
    member validates."""
    train: list[int] = []
    val: list[int] = []
    small: list[str] = []
    for m, off in zip(fs.members, fs.offsets, strict=True):
        try:
            t, v = split_train_val(m, val_fraction, seed, gap, block)
        except BadInput:
            if val_fraction == 0.0:
                raise
            t, v = list(range(len(m.faces))), []
            small.append(str(m.root))
        train += [off + i for i in t]
        val += [off + i for i in v]
    if small and not val:
        raise BadInput(f"face pool {fs.label}: no member is large enough to hold out "
                       "validation (each needs 2 blocks of ~2 s of video or 2 photos)")  # fmt: skip
    if small:
        logger.warning("%s: too small to hold out validation; all its faces train (the pool "
                       "validates on its other members)", ", ".join(small))  # fmt: skip
    return train, val
