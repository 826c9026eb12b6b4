"""A training (or fit) run as the Train page shows it: curves, events, preview, checkpoints.

Validation comes from the run's metrics.jsonl; the training loss and the learning rate of every
step from the job's progress lines; the overfitting warning is found by replaying the validation
rows through faceswap.train.monitor (the trainer's own rule), so it is drawn at its step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from faceswap.train.monitor import MonitorState, event_kind, monitor_update

# the curves keep at most this many training points (evenly thinned): a long run stays light
MAX_POINTS = 2000


def _float(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def validation_rows(run_dir: Path) -> list[dict[str, float]]:
    rows = []
    try:
        text = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append({k: row[k] for k in ("step", "train", "val_a", "val_b", "gap")
                         if _float(row.get(k)) is not None or k == "step"})  # fmt: skip
    return rows


def overfit_k(run_dir: Path) -> int:
    from faceswap.train.trainer import read_run_config

    try:
        return read_run_config(run_dir).overfit_evals
    except Exception:  # a run folder not (yet) readable: the default rule
        return 3


def events(rows: list[dict[str, float]], k: int) -> list[dict[str, Any]]:
    state, out = MonitorState(), []
    for r in rows:
        if not all(key in r for key in ("train", "val_a", "val_b")):
            continue
        state, evs = monitor_update(state, r["step"], r["train"], (r["val_a"] + r["val_b"]) / 2, k)
        out += [{"step": r["step"], "kind": event_kind(e), "text": e} for e in evs
                if event_kind(e) != "best"]  # fmt: skip
    return out


def train_points(history: list[dict[str, Any]]) -> list[dict[str, float]]:
    pts = []
    for row in history:
        post = row.get("postfix") or {}
        step, loss, lr = _float(post.get("step")), _float(post.get("loss")), _float(post.get("lr"))
        if step is not None and loss is not None:
            pts.append({"step": int(step), "loss": loss, "lr": lr})
    if len(pts) > MAX_POINTS:
        every = math.ceil(len(pts) / MAX_POINTS)
        pts = pts[::every] + [pts[-1]]
    return pts


def latest_step(run_dir: Path) -> int | None:
    folder = run_dir / "checkpoints"
    steps = []
    if folder.is_dir():
        for p in folder.glob("step-*"):
            try:
                steps.append(int(p.name[5:]))
            except ValueError:
                continue
    return max(steps) if steps else None


def run_state(run_dir: Path, history: list[dict[str, Any]]) -> dict[str, Any]:
    rows = validation_rows(run_dir)
    preview = run_dir / "preview.png"
    return {
        "exists": (run_dir / "config.yaml").is_file() or (run_dir / "checkpoints").is_dir(),
        "checkpoint": latest_step(run_dir),
        "preview": preview.stat().st_mtime_ns if preview.is_file() else None,
        "validation": rows,
        "train": train_points(history),
        "events": events(rows, overfit_k(run_dir)),
    }
