"""A causal landmark smoother for live video: the One-Euro filter (Casiez, Roussel and Vogel,
CHI 2012).

Live cannot look ahead, so convert's centred Savitzky-Golay fit is out: any filter here only
sees the past. A fixed low-pass removes jitter but makes a moving head's face trail behind it.
The One-Euro filter is a first-order low-pass whose cutoff rises with speed:

    cutoff = min_cutoff + beta * |speed|        alpha = 1 / (1 + 1 / (2 pi cutoff dt))

At rest (speed ~ 0) the cutoff is `min_cutoff` Hz: heavy smoothing of the pixel-level wobble.
When the head moves, the cutoff climbs and the filter follows the motion with little lag. The
speed itself is low-passed at `d_cutoff` Hz so that noise does not open the filter. Time steps
come from the frames' capture times, so dropped frames are handled (a larger dt, a larger
alpha). All points of a face are filtered at once, each with its own speed.
"""

from __future__ import annotations

import math

import numpy as np


def smoothing_factor(dt: float, cutoff: np.ndarray | float) -> np.ndarray | float:
    """alpha of an exponential smoother equivalent to a first-order low-pass at `cutoff` Hz."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters (P, 2) point arrays in time; `reset()` forgets the past (a new face track)."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("min_cutoff and d_cutoff must be > 0, beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self.x: np.ndarray | None = None  # (P, 2) last filtered points
        self.dx: np.ndarray | None = None  # (P, 2) last filtered velocity, px/s
        self.t: float | None = None

    def __call__(self, points: np.ndarray, t: float) -> np.ndarray:
        """The filtered points for raw `points` (P, 2) observed at time `t` seconds."""
        x = np.asarray(points, dtype=np.float64)
        if self.x is None or self.t is None or self.x.shape != x.shape or t <= self.t:
            # first sample (or a clock that did not advance): nothing to filter against
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t
        dx = (x - self.x) / dt
        a_d = smoothing_factor(dt, self.d_cutoff)
        self.dx = self.dx + a_d * (dx - self.dx)
        speed = np.linalg.norm(self.dx, axis=1, keepdims=True)  # (P, 1) px/s
        a = smoothing_factor(dt, self.min_cutoff + self.beta * speed)
        self.x = self.x + a * (x - self.x)
        self.t = t
        return self.x.copy()
