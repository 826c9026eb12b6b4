"""Learning-rate schedules as pure functions of the step.

`lr_at(cfg, step)` depends on nothing but its arguments, so resuming at step N gives exactly
the LR an uninterrupted run would have had; nothing about the schedule needs saving except, for
`plateau`, the small `PlateauState` (itself updated by the pure `plateau_update`).

Schedules (`step` is the 0-based index of the optimizer step about to be taken):

- constant: linear warmup from 0 (step 0) to `lr` (step `warmup_steps`), then `lr`.
- cosine:   warmup, then cosine decay from `lr` to `lr * min_lr_ratio` at `total_steps`; stays
            at the minimum after that.
- step:     warmup, then `lr * step_gamma ** (step // step_every)` (boundaries counted from
            step 0), never below `lr * min_lr_ratio`.
- onecycle: its own warmup (ignores `warmup_steps`): cosine rise from `lr / onecycle_div` at
            step 0 to `lr` at `onecycle_pct * total_steps`, cosine fall to
            `lr / (onecycle_div * onecycle_final_div)` at `total_steps` (PyTorch's OneCycleLR
            convention), constant after.
- plateau:  warmup, then `lr * plateau_scale`, the scale coming from `PlateauState`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from faceswap.config import option

__all__ = [
    "SCHEDULES", "PlateauState", "ScheduleConfig", "lr_at", "plateau_update", "resolve",
]  # fmt: skip

SCHEDULES = ("constant", "cosine", "step", "onecycle", "plateau")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule."""

    name: str = option("cosine", "schedule: constant, cosine, step, onecycle or plateau")
    lr: float = option(8e-4, "peak (base) learning rate (the CPU default's; on CUDA, without "
                       "a model named, 4e-4)")  # fmt: skip
    warmup_steps: int = option(
        -1, "steps of linear warmup from 0 to lr (-1 = auto: 3% of total_steps, at most 300)"
    )
    total_steps: int = option(
        0, "steps over which cosine and onecycle decay (0 = the run's: --steps or --budget)"
    )
    min_lr_ratio: float = option(0.01, "floor of cosine, step and plateau, as a fraction of lr")
    step_every: int = option(25_000, "step decay: steps between LR drops")
    step_gamma: float = option(0.5, "step decay: factor applied at each drop")
    onecycle_pct: float = option(0.3, "onecycle: fraction of total_steps spent rising to lr")
    onecycle_div: float = option(25.0, "onecycle: starting LR is lr / onecycle_div")
    onecycle_final_div: float = option(1e4, "onecycle: final LR is the starting LR / this")
    plateau_patience: int = option(
        3, "plateau: evaluations in a row without improvement that reduce the LR"
    )
    plateau_factor: float = option(0.5, "plateau: factor applied to the LR on a reduction")
    plateau_min_delta: float = option(
        1e-4, "plateau: validation loss must beat the best by this much to count as improving"
    )
    plateau_cooldown: int = option(
        0, "plateau: evaluations after a reduction during which no bad evaluations are counted"
    )

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.name!r} (valid schedules: {', '.join(SCHEDULES)})"
            )
        checks = [
            (math.isfinite(self.lr) and self.lr > 0, "lr must be > 0"),
            (self.warmup_steps >= -1, "warmup_steps must be >= 0 (or -1 for auto)"),
            (self.total_steps >= 0, "total_steps must be >= 1 (or 0 for the run's length)"),
            (
                self.name not in ("cosine",)
                or self.total_steps == 0
                or self.warmup_steps < self.total_steps,
                "warmup_steps must be smaller than total_steps",
            ),
            (0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio must be between 0 and 1"),
            (self.step_every >= 1, "step_every must be >= 1"),
            (0.0 < self.step_gamma <= 1.0, "step_gamma must be in (0, 1]"),
            (0.0 < self.onecycle_pct < 1.0, "onecycle_pct must be in (0, 1)"),
            (self.onecycle_div >= 1.0, "onecycle_div must be >= 1"),
            (self.onecycle_final_div >= 1.0, "onecycle_final_div must be >= 1"),
            (self.plateau_patience >= 1, "plateau_patience must be >= 1"),
            (0.0 < self.plateau_factor < 1.0, "plateau_factor must be in (0, 1)"),
            (self.plateau_min_delta >= 0.0, "plateau_min_delta must be >= 0"),
            (self.plateau_cooldown >= 0, "plateau_cooldown must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


AUTO_WARMUP_SHARE = 0.03  # of the run: long enough to tame AdamW's first steps, no longer
AUTO_WARMUP_MAX = 300


def resolve(cfg: ScheduleConfig, run_steps: int) -> ScheduleConfig:
    """The schedule with its automatic fields filled in for a run of `run_steps` steps:
    total_steps 0 -> run_steps, warmup_steps -1 -> 3% of the total (at most 300). Pure.

    A schedule follows the run it belongs to: a fixed 100,000-step cosine left a user who trains
    for 20 minutes in warmup the whole time."""
    total = cfg.total_steps or max(int(run_steps), 2)
    warmup = cfg.warmup_steps
    if warmup < 0:
        warmup = min(AUTO_WARMUP_MAX, int(AUTO_WARMUP_SHARE * total))
    warmup = min(warmup, total - 1)
    return replace(cfg, total_steps=total, warmup_steps=warmup)


def _cos_interp(start: float, end: float, t: float) -> float:
    """Cosine interpolation from start (t=0) to end (t=1)."""
    t = min(max(t, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def lr_at(cfg: ScheduleConfig, step: int, plateau_scale: float = 1.0) -> float:
    """The learning rate for optimizer step `step` (0-based). Pure: no state is read or kept.

    `plateau_scale` (from PlateauState.scale) is used by the plateau schedule only.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if cfg.total_steps == 0 or cfg.warmup_steps < 0:
        raise ValueError("resolve() the schedule's automatic fields before asking for a LR")
    lr = cfg.lr
    floor = lr * cfg.min_lr_ratio
    if cfg.name == "onecycle":
        start = lr / cfg.onecycle_div
        end = start / cfg.onecycle_final_div
        peak = cfg.onecycle_pct * cfg.total_steps
        if step <= peak:
            return _cos_interp(start, lr, step / peak)
        return _cos_interp(lr, end, (step - peak) / (cfg.total_steps - peak))
    if step < cfg.warmup_steps:
        return lr * step / cfg.warmup_steps
    if cfg.name == "constant":
        return lr
    if cfg.name == "cosine":
        t = (step - cfg.warmup_steps) / (cfg.total_steps - cfg.warmup_steps)
        return _cos_interp(lr, floor, t)
    if cfg.name == "step":
        return max(lr * cfg.step_gamma ** (step // cfg.step_every), floor)
    # plateau
    return lr * plateau_scale


@dataclass(frozen=True)
class PlateauState:
    """Reduce-on-plateau state; JSON-safe via to_dict/from_dict (an infinite best is None)."""

    best: float = math.inf
    bad_evals: int = 0
    scale: float = 1.0
    cooldown: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not math.isfinite(d["best"]):
            d["best"] = None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlateauState:
        best = d.get("best")
        return cls(
            best=math.inf if best is None else float(best),
            bad_evals=int(d.get("bad_evals", 0)),
            scale=float(d.get("scale", 1.0)),
            cooldown=int(d.get("cooldown", 0)),
        )


def plateau_update(cfg: ScheduleConfig, state: PlateauState, val_loss: float) -> PlateauState:
    """The state after one validation evaluation (the input state is not changed).

    An evaluation improves when val_loss < best - plateau_min_delta; otherwise it is bad (a NaN
    loss is bad). On the plateau_patience-th bad evaluation in a row the scale is multiplied by
    plateau_factor (never below min_lr_ratio) and a cooldown of plateau_cooldown evaluations
    starts, during which bad evaluations are not counted. (PyTorch's ReduceLROnPlateau reduces
    one evaluation later, on patience + 1.)
    """
    best, bad, scale, cooldown = state.best, state.bad_evals, state.scale, state.cooldown
    if val_loss < best - cfg.plateau_min_delta:
        best, bad = float(val_loss), 0
    else:
        bad += 1
    if cooldown > 0:
        cooldown -= 1
        bad = 0
    if bad >= cfg.plateau_patience:
        scale = max(scale * cfg.plateau_factor, cfg.min_lr_ratio)
        bad, cooldown = 0, cfg.plateau_cooldown
    return PlateauState(best=best, bad_evals=bad, scale=scale, cooldown=cooldown)
