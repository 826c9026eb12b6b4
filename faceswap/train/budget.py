"""A training run bounded by time instead of steps (`faceswap train --budget 10m`).

A user knows how long they can train, not how many steps their machine does in that time. The
run measures its own pace and lays its LR schedule over the steps the budget is estimated to
hold, so the LR has decayed when the time is up (a cosine over a fixed step count left a CPU
user in warmup or at full LR when they stopped):

    steps 0 .. CALIBRATE     provisional schedule (warmup only: the LR starts at 0 anyway)
    at CALIBRATE and at RE_ESTIMATE of the budget: total = step + remaining / pace
    stop when the clock has spent the budget, or at the estimated total, with a final save

The clock is wall time by default; `cpu` counts the process's CPU time (all threads), which a
benchmark on a shared machine needs: it does not grow while other processes hold the cores.
The spent time is saved in the checkpoint, so a resumed run goes on with what is left.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

CLOCKS = ("wall", "cpu")
CALIBRATE = 8  # steps measured before the first estimate (the first one is slow: allocation)
RE_ESTIMATE = 0.25  # share of the budget at which the pace is measured again
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """'90s', '10m', '1h30m', '8h', '1.5h' or plain seconds -> seconds (> 0).

    ValueError with the accepted forms for anything else."""
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        value = float(s)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", s)
        if not parts or "".join(n + u for n, u in parts) != s:
            raise ValueError(f"{text!r} is not a duration (e.g. 90s, 10m, 1h30m, 8h)")
        value = sum(float(n) * _UNITS[u] for n, u in parts)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{text!r}: a budget must be longer than 0 s")
    return value


def read_clock(clock: str) -> float:
    """Seconds on the named clock (only differences mean anything)."""
    return time.process_time() if clock == "cpu" else time.perf_counter()


def estimate_total(step: int, spent: float, budget: float, pace: float) -> int:
    """Steps the run will have taken when the budget is spent: `step` now, `spent` of
    `budget` seconds used, `pace` seconds a step. Pure."""
    if pace <= 0 or not math.isfinite(pace):
        return step + 1
    return step + max(1, int((budget - spent) / pace))


@dataclass
class BudgetClock:
    """The run's spending of its budget; `spent` is saved in checkpoints."""

    seconds: float
    clock: str = "wall"
    spent: float = 0.0  # before this process started (from the checkpoint)

    def __post_init__(self) -> None:
        self._t0 = read_clock(self.clock)
        self._base = self.spent
        self._mark: tuple[int, float] | None = None  # (step, spent) where pace is measured from

    def now(self) -> float:
        """Budget seconds spent so far, over every session of the run."""
        return self._base + read_clock(self.clock) - self._t0

    def done(self) -> bool:
        return self.now() >= self.seconds

    def start_pace(self, step: int) -> None:
        """Measure the pace from here (after the slow first steps)."""
        self._mark = (step, self.now())

    def pace(self, step: int) -> float | None:
        """Seconds a step since start_pace (None before it, or with no step since)."""
        if self._mark is None or step <= self._mark[0]:
            return None
        return (self.now() - self._mark[1]) / (step - self._mark[0])
