"""Temporal smoothing of face landmarks: a centred Savitzky-Golay fit per face track.

Landmarks from any detector wobble by a pixel or two from frame to frame even when the head is
still; put back into the video, that wobble shows as a face that shimmers against its
surroundings. A causal low-pass filter (One-Euro, Kalman) removes it only by trailing behind a
moving head. Convert has the whole clip, so it can look ahead instead: each frame's landmarks
are replaced by the value at that frame of a least-squares polynomial (order 2) fitted to the
track's landmarks from `k` frames before to `k` frames after (Savitzky and Golay, 1964). That
is exact for motion that is constant, linear or accelerating over the window, so there is no
lag at any speed, and it averages the noise of 2k + 1 frames. Near the ends of a track the fit
uses the frames there are (a shorter, one-sided window).

On a generated clip with dlib-sized noise (3% of the eye distance per point) and k = 6 at 24
fps, frame-to-frame jitter of the crop corners falls ~9x and their error against the true
motion ~2.5x; a One-Euro filter tuned for the same clip got ~2x less jitter and a larger error,
from lag (tests/test_convert_geometry.py measures both properties).

The alignment matrix is recomputed from the smoothed landmarks (the umeyama fit of 51 points
averages what noise is left), so matrix and landmark masks agree. Output trails input by `k`
frames: `push` returns the frames that are final, `flush` the rest at the end.

Faces are linked between frames by the nearest landmark centroid (within one eye distance of
where the face was); a face not seen for more than `max_gap` frames starts a new track, so a
cut never smooths one face into another.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EYES = (slice(36, 42), slice(42, 48))


def eye_distance(landmarks: np.ndarray) -> float:
    """Distance between the eye centres of iBUG-68 landmarks (68, 2), at least 1 px."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return max(1.0, float(np.linalg.norm(lm[EYES[0]].mean(0) - lm[EYES[1]].mean(0))))


def polyfit_at(times: np.ndarray, values: np.ndarray, order: int) -> np.ndarray:
    """Value at t = 0 of the least-squares polynomial of `order` through (times, values).

    times: (m,) frame offsets; values: (m, ...) samples. The order drops to m - 1 when there
    are fewer samples than coefficients.
    """
    t = np.asarray(times, dtype=np.float64)
    p = min(order, len(t) - 1)
    a = np.vander(t, p + 1, increasing=True)  # (m, p + 1): 1, t, t^2, ...
    weights = np.linalg.pinv(a)[0]  # (m,): the constant coefficient is a weighted sum
    return np.tensordot(weights, np.asarray(values, dtype=np.float64), axes=1)


def savgol(series: np.ndarray, half_window: int, order: int = 2) -> np.ndarray:
    """Smooth a whole (N, ...) series at once (what the streaming smoother does per track)."""
    n = len(series)
    out = np.empty(np.shape(series), dtype=np.float64)
    for i in range(n):
        lo, hi = max(0, i - half_window), min(n, i + half_window + 1)
        out[i] = polyfit_at(np.arange(lo, hi) - i, series[lo:hi], order)
    return out


@dataclass
class _Track:
    id: int
    last_frame: int
    centroid: np.ndarray
    size: float  # eye distance, px
    samples: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> (68, 2) raw


@dataclass
class _Pending:
    frame: int
    item: Any
    faces: list[tuple[_Track, np.ndarray]]  # (track, raw landmarks) in input order


class TrackSmoother:
    """Links faces across frames and smooths each track's landmarks.

    push(frame, item, faces): `faces` are the (68, 2) landmarks of every face in that frame
    (frames in increasing order); returns [(frame, item, [(track id, smoothed landmarks)])]
    for the frames that are now final, oldest first. half_window 0 smooths nothing (no
    delay) but still gives track ids.
    """

    def __init__(self, half_window: int, order: int = 2, max_gap: int = 2) -> None:
        self.k, self.order, self.max_gap = half_window, order, max_gap
        self.tracks: list[_Track] = []
        self.next_id = 0
        self.pending: deque[_Pending] = deque()

    def _link(self, frame: int, lms: list[np.ndarray]) -> list[_Track]:
        live = [t for t in self.tracks if 0 < frame - t.last_frame <= self.max_gap]
        pairs = []
        for i, lm in enumerate(lms):
            c = lm.mean(0)
            for t in live:
                d = float(np.linalg.norm(c - t.centroid))
                if d < t.size:
                    pairs.append((d, i, t.id))
        out: list[_Track | None] = [None] * len(lms)
        by_id = {t.id: t for t in live}
        used: set[int] = set()
        for _, i, tid in sorted(pairs):  # greedy, nearest first
            if out[i] is None and tid not in used:
                out[i] = by_id[tid]
                used.add(tid)
        for i, lm in enumerate(lms):
            if out[i] is None:
                out[i] = _Track(self.next_id, frame, lm.mean(0), eye_distance(lm))
                self.next_id += 1
        return out  # type: ignore[return-value]

    def push(self, frame: int, item: Any, faces: list[np.ndarray]) -> list:
        lms = [np.asarray(f, dtype=np.float64) for f in faces]
        linked = self._link(frame, lms)
        for trk, lm in zip(linked, lms):
            trk.last_frame, trk.centroid, trk.size = frame, lm.mean(0), eye_distance(lm)
            trk.samples[frame] = lm
        seen = {t.id for t in linked}
        # a track stays linkable for max_gap frames and is kept while it has samples that a
        # pending frame may still need
        self.tracks = linked + [t for t in self.tracks if t.id not in seen and
                                frame - t.last_frame <= self.max_gap + 2 * self.k]  # fmt: skip
        self.pending.append(_Pending(frame, item, list(zip(linked, lms))))
        done = []
        while self.pending and self.pending[0].frame <= frame - self.k:
            done.append(self._finish(self.pending.popleft()))
        return done

    def flush(self) -> list:
        done = [self._finish(p) for p in self.pending]
        self.pending.clear()
        return done

    def _finish(self, p: _Pending) -> tuple[int, Any, list[tuple[int, np.ndarray]]]:
        out = []
        for trk, lm in p.faces:
            if self.k == 0:
                out.append((trk.id, lm))
                continue
            near = sorted(g for g in trk.samples if abs(g - p.frame) <= self.k)
            values = np.stack([trk.samples[g] for g in near])  # (m, 68, 2)
            out.append((trk.id, polyfit_at(np.asarray(near) - p.frame, values, self.order)))
            for g in [g for g in trk.samples if g < p.frame - self.k]:
                del trk.samples[g]  # no later frame needs it
        return p.frame, p.item, out
