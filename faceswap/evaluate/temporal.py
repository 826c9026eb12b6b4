"""Temporal stability: does the swapped face shake more than the face it replaced?

Input: two landmark sequences of the same frames, (T, 68, 2) in frame pixels, one from the
source clip and one from the converted (swapped) clip, e.g. both extracted with `faceswap
extract`. All values are in inter-ocular distances (IOD) of the source face, so clips of any
size compare:

- jitter: the second difference |L[t+1] - 2 L[t] + L[t-1]| averaged over the 68 points. Smooth
  head motion has almost none; landmark noise and a flickering swap have a lot. Independent
  noise of sigma px per coordinate gives sigma * sqrt(3 pi) / IOD.
- added jitter: the frame-to-frame change of the offset between swap and source landmarks,
  |(S - R)[t+1] - (S - R)[t]|. A swap that follows the source exactly (even if shifted) has
  0; independent noise of sigma px gives sigma * sqrt(pi) / IOD.
"""

from __future__ import annotations

import numpy as np

from faceswap.evaluate.metrics import summarize
from faceswap.evaluate.pose import LEFT_EYE, RIGHT_EYE
from faceswap.faceset import FaceSet


def interocular(lms: np.ndarray) -> np.ndarray:
    """(T, 68, 2) -> (T,) distance between the eye centres."""
    lms = np.asarray(lms, np.float64)
    return np.linalg.norm(lms[:, RIGHT_EYE].mean(1) - lms[:, LEFT_EYE].mean(1), axis=1)


def _stride(frames: np.ndarray) -> int:
    """The frame step between neighbouring samples (the extraction's every-nth)."""
    d = np.diff(frames)
    d = d[d > 0]
    return int(d.min()) if d.size else 1


def jitter(lms: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(K,) second-difference jitter (IOD units) at each frame whose two neighbours are one
    stride away on both sides; gaps in the sequence are skipped, not bridged."""
    lms, frames = np.asarray(lms, np.float64), np.asarray(frames)
    if len(frames) < 3:
        return np.zeros(0)
    step = _stride(frames)
    ok = (frames[1:-1] - frames[:-2] == step) & (frames[2:] - frames[1:-1] == step)
    acc = lms[2:] - 2 * lms[1:-1] + lms[:-2]  # (T-2, 68, 2)
    iod = np.maximum(interocular(lms)[1:-1], 1e-9)
    return (np.linalg.norm(acc, axis=-1).mean(1) / iod)[ok]


def added_jitter(source: np.ndarray, swap: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(K,) change of the swap-minus-source landmark offset between neighbouring frames (IOD
    units of the source face)."""
    src, swp, frames = (np.asarray(source, np.float64), np.asarray(swap, np.float64),
                        np.asarray(frames))  # fmt: skip
    if len(frames) < 2:
        return np.zeros(0)
    ok = np.diff(frames) == _stride(frames)
    off = swp - src  # (T, 68, 2)
    iod = np.maximum(interocular(src)[:-1], 1e-9)
    return (np.linalg.norm(np.diff(off, axis=0), axis=-1).mean(1) / iod)[ok]


def temporal_stability(source: np.ndarray, swap: np.ndarray, frames: np.ndarray) -> dict:
    """Jitter of source and swap, their ratio, and the added jitter (module doc), for landmark
    sequences (T, 68, 2) of the same frames (T,) in increasing order."""
    source, swap, frames = np.asarray(source), np.asarray(swap), np.asarray(frames)
    if source.shape != swap.shape or source.shape[0] != len(frames):
        raise ValueError("source, swap and frames must describe the same frames")
    if len(frames) > 1 and np.any(np.diff(frames) <= 0):
        raise ValueError("frames must be strictly increasing")
    js, jw = jitter(source, frames), jitter(swap, frames)
    added = added_jitter(source, swap, frames)
    # a source without jitter (rounding only) has no ratio worth reporting
    ratio = float(jw.mean() / js.mean()) if js.size and js.mean() > 1e-6 else None
    return {
        "frames": int(len(frames)),
        "source_jitter": summarize(js),
        "swap_jitter": summarize(jw),
        "jitter_ratio": None if ratio is None else round(ratio, 5),
        "added_jitter": summarize(added),
    }


def match_clip(source: FaceSet, clip: FaceSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair the faces of a converted clip's face set with the source face set's faces of the
    same frames: same frame index, box centres within half a box width; from the source's
    video with the most such pairs. Returns (frames (T,), source (T, 68, 2), swap (T, 68, 2))
    sorted by frame, one face per frame (the first pair found in a frame)."""
    by_key: dict[str, dict[int, list]] = {}
    for f in source.faces:
        by_key.setdefault(f.source, {}).setdefault(f.frame, []).append(f)
    best: list[tuple[int, np.ndarray, np.ndarray]] = []
    for frames in by_key.values():
        pairs = {}
        for g in sorted(clip.faces, key=lambda f: f.frame):
            if g.frame in pairs:
                continue
            gc = np.add(g.box[:2], g.box[2:]) / 2
            for f in frames.get(g.frame, []):
                fc = np.add(f.box[:2], f.box[2:]) / 2
                if np.linalg.norm(fc - gc) < 0.5 * (f.box[2] - f.box[0]):
                    pairs[g.frame] = (f.landmarks_array(), g.landmarks_array())
                    break
        if len(pairs) > len(best):
            best = [(k, *v) for k, v in sorted(pairs.items())]
    if not best:
        return np.zeros(0, int), np.zeros((0, 68, 2)), np.zeros((0, 68, 2))
    frames_out = np.array([b[0] for b in best])
    return frames_out, np.stack([b[1] for b in best]), np.stack([b[2] for b in best])
