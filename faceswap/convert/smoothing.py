"""Temporal smoothing of face landmarks: a One-Euro filter per face track.

Landmarks from any detector wobble by a pixel or two from frame to frame even when the head is
still; put back into the video, that wobble shows as a face that shimmers against its
surroundings. A fixed low-pass filter would remove it but make the swapped face trail behind a
moving head. The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) raises its cutoff with the
speed of the signal: strong smoothing at rest, almost none during fast motion.

Speed is measured in eye distances per second (the RMS over the 68 points of the low-passed
velocity), so one `beta` works for small and large faces alike. The alignment matrix is then
recomputed from the smoothed landmarks (the umeyama fit of 51 points averages what noise is
left), so matrix and landmark masks stay consistent with each other.

Faces are linked between consecutive frames by the nearest landmark centroid; a face that was
not seen for more than `max_gap` frames starts a new track (a cut, or a face re-entering).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EYES = (slice(36, 42), slice(42, 48))


def eye_distance(landmarks: np.ndarray) -> float:
    """Distance between the eye centres of iBUG-68 landmarks (68, 2), at least 1 px."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return max(1.0, float(np.linalg.norm(lm[EYES[0]].mean(0) - lm[EYES[1]].mean(0))))


def _alpha(cutoff: float, dt: float) -> float:
    """Smoothing factor of a first-order low-pass at `cutoff` Hz for a step of `dt` seconds."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """One-Euro filter over an array signal (any shape), with one shared adaptive cutoff.

    min_cutoff: cutoff at rest (Hz); beta: how fast the cutoff rises with speed (Hz per
    eye distance per second); d_cutoff: cutoff of the speed estimate itself (Hz).
    """

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t = 0.0

    def __call__(self, x: np.ndarray, t: float, unit: float = 1.0) -> np.ndarray:
        """Filtered value of `x` at time `t` (s); `unit` scales the speed (eye distance, px)."""
        x = np.asarray(x, dtype=np.float64)
        if self.x is None or t <= self.t:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t
        dx = (x - self.x) / dt
        self.dx = self.dx + _alpha(self.d_cutoff, dt) * (dx - self.dx)
        # one speed for the whole face: RMS of the per-point speeds, (N, 2) -> scalar
        speed = float(np.sqrt((self.dx**2).sum(-1).mean())) / unit
        cutoff = self.min_cutoff + self.beta * speed
        self.x = self.x + _alpha(cutoff, dt) * (x - self.x)
        self.t = t
        return self.x.copy()


@dataclass
class _Track:
    id: int
    filter: OneEuro
    last_frame: int
    centroid: np.ndarray
    size: float


class LandmarkSmoother:
    """Links faces across frames and smooths each track's landmarks.

    `update(frame, fps, faces)` takes the (68, 2) landmarks of every face in one frame (frames
    in increasing order) and returns (track id, smoothed landmarks) for each, in input order.
    With min_cutoff 0 nothing is smoothed, but faces still get track ids.
    """

    def __init__(self, min_cutoff: float, beta: float, max_gap: int = 2) -> None:
        self.min_cutoff, self.beta, self.max_gap = min_cutoff, beta, max_gap
        self.tracks: list[_Track] = []
        self.next_id = 0

    def _link(self, frame: int, lms: list[np.ndarray]) -> list[_Track | None]:
        live = [t for t in self.tracks if 0 < frame - t.last_frame <= self.max_gap]
        pairs = []
        for i, lm in enumerate(lms):
            c = lm.mean(0)
            for t in live:
                d = float(np.linalg.norm(c - t.centroid))
                if d < t.size:  # within one eye distance of where the face was
                    pairs.append((d, i, t.id))
        out: list[_Track | None] = [None] * len(lms)
        used: set[int] = set()
        by_id = {t.id: t for t in live}
        for _, i, tid in sorted(pairs):  # greedy, nearest first
            if out[i] is None and tid not in used:
                out[i] = by_id[tid]
                used.add(tid)
        return out

    def update(
        self, frame: int, fps: float, faces: list[np.ndarray]
    ) -> list[tuple[int, np.ndarray]]:
        lms = [np.asarray(f, dtype=np.float64) for f in faces]
        linked = self._link(frame, lms)
        t = frame / fps
        result = []
        keep: list[_Track] = []
        for lm, trk in zip(lms, linked):
            if trk is None:
                trk = _Track(self.next_id, OneEuro(self.min_cutoff, self.beta), frame, lm, 1.0)
                self.next_id += 1
            size = eye_distance(lm)
            smooth = trk.filter(lm, t, size) if self.min_cutoff > 0 else lm.copy()
            trk.last_frame, trk.centroid, trk.size = frame, lm.mean(0), size
            keep.append(trk)
            result.append((trk.id, smooth))
        # tracks not seen in this frame stay linkable for max_gap frames
        seen = {t.id for t in keep}
        self.tracks = keep + [t for t in self.tracks if t.id not in seen
                              and frame - t.last_frame <= self.max_gap]  # fmt: skip
        return result
