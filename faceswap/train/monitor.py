"""Overfitting monitor: tracks train/validation loss per evaluation. Pure and serializable.
Also `flat_output`, the check for a decoder that collapsed to one flat colour.

`monitor_update` returns a new state and a list of events, each a string "<kind>: <message>":

- "best: ..."         validation loss reached a new minimum.
- "overfitting: ..."  validation loss rose k evaluations in a row while the training loss fell
                      over the same evaluations; reported once per rising streak.

Early stopping is the caller's decision, e.g. `state.rising >= patience`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SATURATED",
    "SATURATED_SHARE",
    "MonitorState",
    "event_kind",
    "flat_output",
    "generalization_gap",
    "generalization_ratio",
    "monitor_update",
]


@dataclass(frozen=True)
class MonitorState:
    """history: (step, train_loss, val_loss) per evaluation; rising: evaluations in a row whose
    validation loss rose above the previous one; warned: the current streak was reported."""

    history: tuple[tuple[int, float, float], ...] = field(default_factory=tuple)
    best_val: float = math.inf
    best_step: int = -1
    rising: int = 0
    warned: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (an infinite best_val is None)."""
        return {
            "history": [list(h) for h in self.history],
            "best_val": self.best_val if math.isfinite(self.best_val) else None,
            "best_step": self.best_step,
            "rising": self.rising,
            "warned": self.warned,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MonitorState:
        best = d.get("best_val")
        return cls(
            history=tuple((int(s), float(t), float(v)) for s, t, v in d.get("history", [])),
            best_val=math.inf if best is None else float(best),
            best_step=int(d.get("best_step", -1)),
            rising=int(d.get("rising", 0)),
            warned=bool(d.get("warned", False)),
        )


def event_kind(event: str) -> str:
    """ "best", "overfitting", ... of an event string."""
    return event.partition(":")[0]


def monitor_update(
    state: MonitorState, step: int, train_loss: float, val_loss: float, k: int
) -> tuple[MonitorState, list[str]]:
    """Add one evaluation; return the new state and the events it raised (see module doc)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    train_loss, val_loss = float(train_loss), float(val_loss)
    events: list[str] = []
    history = (*state.history, (int(step), train_loss, val_loss))
    best_val, best_step = state.best_val, state.best_step
    if val_loss < best_val:
        best_val, best_step = val_loss, int(step)
        events.append(f"best: validation loss {val_loss:.4g} at step {step}")
    prev = state.history[-1] if state.history else None
    rose = prev is not None and val_loss > prev[2]
    rising = state.rising + 1 if rose else 0
    warned = state.warned and rose
    if rising >= k and not warned:
        s0, t0, v0 = history[-(k + 1)]
        if train_loss < t0:
            warned = True
            events.append(
                f"overfitting: validation loss rose {k} evaluations in a row "
                f"({v0:.4g} -> {val_loss:.4g}, steps {s0} -> {step}) while training loss fell "
                f"({t0:.4g} -> {train_loss:.4g}): the model is memorising the training faces"
            )
    new = MonitorState(
        history=history, best_val=best_val, best_step=best_step, rising=rising, warned=warned
    )
    return new, events


def generalization_gap(train_loss: float, val_loss: float) -> float:
    """val - train: how much worse the model does on faces it has not trained on."""
    return float(val_loss) - float(train_loss)


def generalization_ratio(train_loss: float, val_loss: float) -> float:
    """val / train (inf when the training loss is 0 and validation loss is not)."""
    train_loss, val_loss = float(train_loss), float(val_loss)
    if train_loss <= 0:
        return 1.0 if val_loss <= 0 else math.inf
    return val_loss / train_loss


# A value within this of 0 or 1 is a saturated sigmoid's. A face drawn in such values almost
# everywhere is one flat colour (a few stray pixels aside): no real face is, and an untrained
# decoder draws a near-flat grey (sigmoid(0) = 0.5), a start, not a collapse.
SATURATED = 0.02
SATURATED_SHARE = 0.98


def flat_output(rgb: Any) -> bool:
    """True when every face of a (B, 3, R, R) batch of decoded faces is drawn in saturated
    values (0 or 1) for at least SATURATED_SHARE of its pixels and channels. A decoder whose
    sigmoids saturated draws that, a flat colour (a `lightweight-128` run at LR 8e-4 did: its
    latent reached ~10^5, docs/quality.md); no gradient comes back through a saturated
    sigmoid, so the loss stops moving while the run goes on."""
    v = rgb.float().flatten(1)  # (B, 3 * R * R)
    pinned = ((v < SATURATED) | (v > 1 - SATURATED)).float().mean(dim=1)  # (B,)
    return bool((pinned >= SATURATED_SHARE).all())
