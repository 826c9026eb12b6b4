"""Learning-rate range test (Smith 2015, "Cyclical Learning Rates"), independent of the model.

`run_lr_find` calls a `step_fn(lr) -> loss` (one training step at that LR) over exponentially
spaced LRs, stopping once the loss diverges; `suggest_lr` reads the curve; `plot_lr_find`
draws it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["lr_range", "plot_lr_find", "run_lr_find", "smooth_losses", "suggest_lr"]

log = logging.getLogger(__name__)

BETA = 0.98
DIVERGE_FACTOR = 4.0


def lr_range(min_lr: float, max_lr: float, steps: int) -> list[float]:
    """`steps` LRs spaced evenly in log scale from min_lr to max_lr (both included)."""
    if not (0 < min_lr < max_lr) or not math.isfinite(max_lr):
        raise ValueError(f"need 0 < min_lr < max_lr, got {min_lr} and {max_lr}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    return [float(x) for x in np.geomspace(min_lr, max_lr, steps)]


def smooth_losses(losses: Sequence[float], beta: float = BETA) -> list[float]:
    """Exponential moving average with bias correction (the first value is the first loss)."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * float(loss)
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def _divergence_index(smoothed: Sequence[float]) -> int | None:
    """First index whose smoothed loss is non-finite or > DIVERGE_FACTOR x the minimum so far."""
    best = math.inf
    for i, s in enumerate(smoothed):
        if not math.isfinite(s) or s > DIVERGE_FACTOR * best:
            return i
        best = min(best, s)
    return None


def suggest_lr(lrs: Sequence[float], losses: Sequence[float], beta: float = BETA) -> dict[str, Any]:
    """Read an LR-finder curve.

    The losses are smoothed (EMA `beta`, bias-corrected) and cut where they diverge (smoothed loss
    above 4x its minimum so far, or non-finite). Returns
    {"suggested": the LR at the steepest descent of the smoothed loss against log(LR),
     "steepest": the same LR, "min_loss_lr": a tenth of the LR at the smoothed minimum,
     "diverged_at": the LR where the loss diverged or None, "smoothed": the smoothed losses}.
    When the curve never descends "suggested" falls back to min_loss_lr; with fewer than 3
    usable points every LR is None. The EMA lags: with beta 0.98 over ~14 points per decade the
    smoothed curve runs a few tenths of a decade behind the raw one, which moves the suggestion
    towards larger LRs; run more steps per decade (or lower beta) for a sharper read.
    """
    if len(lrs) != len(losses):
        raise ValueError(f"{len(lrs)} learning rates but {len(losses)} losses")
    smoothed = smooth_losses(losses, beta)
    cut = _divergence_index(smoothed)
    diverged_at = float(lrs[cut]) if cut is not None else None
    n = len(lrs) if cut is None else cut
    result: dict[str, Any] = {
        "suggested": None,
        "steepest": None,
        "min_loss_lr": None,
        "diverged_at": diverged_at,
        "smoothed": smoothed,
    }
    if n < 3:
        log.warning("LR finder: only %d usable points, no suggestion", n)
        return result
    x = np.log10(np.asarray(lrs[:n], dtype=np.float64))
    y = np.asarray(smoothed[:n], dtype=np.float64)
    slope = np.gradient(y, x)  # d loss / d log10(lr), (n,)
    i_steep = int(np.argmin(slope))
    i_min = int(np.argmin(y))
    min_loss_lr = float(lrs[i_min]) / 10
    steepest = float(lrs[i_steep]) if slope[i_steep] < 0 else None
    result.update(
        steepest=steepest,
        min_loss_lr=min_loss_lr,
        suggested=steepest if steepest is not None else min_loss_lr,
    )
    return result


def plot_lr_find(
    lrs: Sequence[float],
    losses: Sequence[float],
    suggestion: float | dict[str, Any] | None,
    path: str | os.PathLike,
) -> None:
    """Save a PNG of loss against LR (log x axis): raw and smoothed loss, suggestion marked."""
    # The Agg canvas directly, not pyplot: no display needed, no global backend switch and no
    # global figure state left behind.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    info = suggestion if isinstance(suggestion, dict) else {"suggested": suggestion}
    smoothed = info.get("smoothed") or smooth_losses(losses)
    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(lrs, losses, color="0.75", linewidth=1, label="loss")
    ax.plot(lrs, smoothed, color="C0", linewidth=2, label="smoothed loss")
    finite = [s for s in smoothed if math.isfinite(s)]
    if finite:
        # Keep the divergence from squashing the interesting part of the curve.
        lo, hi = min(finite), min(max(finite), DIVERGE_FACTOR * min(finite) + 1e-12)
        pad = 0.05 * (hi - lo) if hi > lo else 0.05 * abs(lo) + 1e-3
        ax.set_ylim(lo - pad, hi + pad)
    marks = (("suggested", "C3", "-"), ("min_loss_lr", "C2", ":"), ("diverged_at", "0.4", "--"))
    for key, color, style in marks:
        v = info.get(key)
        if v is not None:
            ax.axvline(v, color=color, linestyle=style, label=f"{key.replace('_', ' ')} {v:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("LR range test")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")


def run_lr_find(
    step_fn: Callable[[float], float],
    min_lr: float = 1e-7,
    max_lr: float = 1e-1,
    steps: int = 100,
) -> tuple[list[float], list[float]]:
    """Call step_fn(lr) -> loss for exponentially rising LRs; return the LRs tried and losses.

    Stops early after the first step whose smoothed loss exceeds 4x its minimum (that point is
    kept, so suggest_lr sees the divergence) or whose loss is not finite (that point is dropped).
    """
    tried: list[float] = []
    losses: list[float] = []
    avg, best = 0.0, math.inf
    for i, lr in enumerate(lr_range(min_lr, max_lr, steps)):
        loss = float(step_fn(lr))
        if not math.isfinite(loss):
            log.info("LR finder: loss is %s at lr %.3g, stopping", loss, lr)
            break
        tried.append(lr)
        losses.append(loss)
        avg = BETA * avg + (1 - BETA) * loss
        smoothed = avg / (1 - BETA ** (i + 1))
        if smoothed > DIVERGE_FACTOR * best:
            log.info("LR finder: loss diverged at lr %.3g, stopping", lr)
            break
        best = min(best, smoothed)
    return tried, losses
