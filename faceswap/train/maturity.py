"""Is a model far from trained? The warning `convert` and `evaluate` give before they use one.

Two signs, either is enough:
- the run is under REFERENCE_STEPS for its architecture: the steps after which its swaps
  usually show the identity's details at the default batch size (a run born from another
  run's weights, a fit, counts the steps it inherited too);
- its validation loss is still falling steeply: more than FALLING over the last
  `FALLING_EVALS` validations, so more training would still change the result a lot.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Steps (one batch of A and one of B) after which swaps usually show identity details, per
# architecture at batch 16; documented in docs/train.md. DeepFaceLab's guides speak of
# 100k+ iterations for its SAE/H128 models; these are the lower ends.
REFERENCE_STEPS = {"lightweight": 10_000, "original": 20_000, "dfl-h128": 40_000, "sae": 40_000}
FALLING = 0.05  # relative drop of the validation loss over the last evaluations
FALLING_EVALS = 3


def _metrics(run_dir: Path) -> list[float]:
    path = run_dir / "metrics.jsonl"
    out: dict[int, float] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            row = json.loads(line)
            v = (float(row["val_a"]) + float(row["val_b"])) / 2
            out[int(row["step"])] = v
        except (ValueError, KeyError, TypeError):
            continue
    return [out[s] for s in sorted(out) if math.isfinite(out[s])]


def maturity(checkpoint: Path) -> dict[str, Any]:
    """What is known about how far the checkpoint's run has trained, and the warnings: {"step",
    "arch", "reference_steps", "inherited_steps", "recent_drop", "warnings": [str, ...]}."""
    state = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
    step = int(state.get("step", 0))
    arch = str(((state.get("config") or {}).get("model") or {}).get("arch", ""))
    # a run started from another's weights (init-from, fit) inherits its steps, recursively
    inherited, lineage, depth = 0, state.get("lineage"), 0
    while isinstance(lineage, dict) and depth < 32:
        if isinstance(lineage.get("source_step"), int):
            inherited += int(lineage["source_step"])
        lineage, depth = lineage.get("parent"), depth + 1
    ref = REFERENCE_STEPS.get(arch)
    warnings = []
    total = step + inherited
    if ref is not None and total < ref:
        warnings.append(f"the model is far from trained: {total} steps, under the {ref} after "
                        f"which {arch} swaps usually show identity detail (docs/train.md)")  # fmt: skip
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint
    vals = _metrics(run_dir)
    drop = None
    if len(vals) > FALLING_EVALS:
        before, now = vals[-1 - FALLING_EVALS], vals[-1]
        drop = (before - now) / before if before > 0 else None
        if drop is not None and drop > FALLING:
            warnings.append(f"the validation loss is still falling steeply ({100 * drop:.0f}% "
                            f"over the last {FALLING_EVALS} validations): more training will "
                            "still change the result a lot")  # fmt: skip
    return {"step": step, "arch": arch, "reference_steps": ref, "inherited_steps": inherited,
            "recent_drop": drop, "warnings": warnings}  # fmt: skip


def warn_if_untrained(model: str | Path) -> list[str]:
    """Log the warnings for a run or checkpoint path; returns them. Never raises: a model
    whose state cannot be read is the loader's error to report."""
    from faceswap.train.checkpoint import resolve_checkpoint

    try:
        found = maturity(resolve_checkpoint(model))
    except Exception as exc:  # noqa: BLE001 - only advice; the real load reports real errors
        log.debug("no training-state check for %s: %s", model, exc)
        return []
    for w in found["warnings"]:
        log.warning("%s: %s", model, w)
    return found["warnings"]
