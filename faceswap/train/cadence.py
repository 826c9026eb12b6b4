"""When the training loop previews, validates and saves: every N steps or every M minutes,
whichever comes first.

Step counts suit a fast GPU (a preview every 250 steps is a few seconds); on a CPU at ~7 s a
step the same 250 steps are half an hour without a sign of life, and a crash loses everything
since the last save. Time-based intervals (like DeepFaceLab's autosave) give the same feedback
on any machine. Both kinds are honoured: a task is due when either interval has passed.

Pure functions of (step, time, last run): the loop keeps one `Due` per task and asks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Due:
    """One periodic task: every `steps` steps and/or every `seconds` (0 = that kind is off),
    last run at (`last_step`, `last_time`)."""

    steps: int
    seconds: float
    last_step: int = 0
    last_time: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.seconds < 0:
            raise ValueError(f"intervals must be >= 0, got {self.steps} steps, {self.seconds} s")


def is_due(d: Due, step: int, now: float) -> bool:
    """True when the step count crossed a multiple of `steps` (so step-based runs keep their
    fixed steps, 250, 500, ..., across resumes) or `seconds` have passed since the task last
    ran; never twice at one step."""
    if step <= d.last_step:
        return False
    by_steps = d.steps > 0 and step // d.steps > d.last_step // d.steps
    by_time = d.seconds > 0 and now - d.last_time >= d.seconds
    return by_steps or by_time


def mark(d: Due, step: int, now: float) -> None:
    """The task ran at (step, now): both intervals restart from here."""
    d.last_step, d.last_time = step, now
