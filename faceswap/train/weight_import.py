"""Weight import (copy tensors by name and shape from a checkpoint) and per-part freezing.

    new model, built from its own config
        <- source checkpoint's model.safetensors, only the parts asked for (--load)
    every tensor of those parts is
        loaded      same name and shape in the source: copied
        skipped     the name is in only one of the two models: the new tensor keeps its init
        mismatched  same name, another shape (a wider decoder, ...): keeps its init
    tensors of the parts not asked for keep their fresh init and are not reported.

A part is the first component of a tensor name: "encoder.down.0.0.weight" -> "encoder".

Freezing: `freeze` maps a part to the step it thaws at (0 = frozen for the whole run). Which parts
are frozen at a step is a pure function of (freeze, step), like the LR, so a resumed run freezes
exactly what the uninterrupted run froze and nothing about it needs saving but the spec.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from faceswap.errors import BadInput
from faceswap.train import checkpoint as ck

log = logging.getLogger(__name__)

# The parts of a model's parts(): what --load, --freeze and --reset-decoder address. The df
# layout (original, lightweight, dfl-h128, sae) has a decoder per identity; LIAE one decoder
# and two intermediates (see faceswap/models/liae.py).
DF_PARTS = ("encoder", "decoder_a", "decoder_b")
LIAE_PARTS = ("encoder", "inter_ab", "inter_a", "decoder")
PARTS = DF_PARTS + LIAE_PARTS[1:]  # every name, in a fixed order


def model_parts(arch: str) -> tuple[str, ...]:
    """The parts a model of this architecture has."""
    return LIAE_PARTS if arch == "liae" else DF_PARTS


def part_of(name: str) -> str:
    """The part a tensor belongs to: "decoder_b.rgb.weight" -> "decoder_b"."""
    return name.partition(".")[0]


def _check_part(part: str, option: str) -> str:
    if part not in PARTS:
        raise BadInput(f"{option}: unknown part {part!r} (valid parts: {', '.join(PARTS)})")
    return part


def parse_parts(text: str, option: str = "--load") -> tuple[str, ...]:
    """Parts named like "encoder,decoder_b", in PARTS order; BadInput on an unknown or
    repeated part."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise BadInput(f"{option}: name at least one part ({', '.join(PARTS)})")
    for n in names:
        _check_part(n, option)
    if len(set(names)) != len(names):
        raise BadInput(f"{option}: a part is named twice ({text})")
    return tuple(p for p in PARTS if p in names)


def parse_freeze(text: str, option: str = "--freeze") -> dict[str, int]:
    """A --freeze spec: "encoder:500,decoder_a" -> {"encoder": 500, "decoder_a": 0}, a part
    frozen for its first STEPS steps, or (no STEPS) for the whole run, stored as 0."""
    out: dict[str, int] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        name, sep, steps = item.partition(":")
        part = _check_part(name.strip(), option)
        if part in out:
            raise BadInput(f"{option}: part {part} is named twice")
        if not sep:
            out[part] = 0
            continue
        try:
            n = int(steps)
        except ValueError:
            raise BadInput(f"{option}: {item!r}: expected PART or PART:STEPS, "
                           "e.g. encoder:500") from None  # fmt: skip
        if n < 1:
            raise BadInput(f"{option}: {item!r}: STEPS must be >= 1 (leave it out to freeze "
                           "the part for the whole run)")  # fmt: skip
        out[part] = n
    if not out:
        raise BadInput(f"{option}: name at least one part ({', '.join(PARTS)})")
    return out


def check_freeze(freeze: Mapping[str, int], arch: str | None = None) -> None:
    """ValueError unless `freeze` maps parts (of `arch`'s models, when given) to steps >= 0
    and leaves a part to train."""
    valid = PARTS if arch is None else model_parts(arch)
    for part, steps in freeze.items():
        if part not in valid:
            raise ValueError(f"freeze: unknown part {part!r} (valid parts: {', '.join(valid)})")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise ValueError(f"freeze: {part} must map to steps >= 0 (0 = the whole run)")
    if set(valid) <= set(freeze):
        raise ValueError("freeze: every part frozen at step 0 leaves nothing to train")


def frozen_parts(freeze: Mapping[str, int], step: int) -> tuple[str, ...]:
    """Parts frozen for optimizer step `step` (0-based): those frozen for the whole run (0) and
    those whose STEPS have not passed yet. Pure."""
    return tuple(p for p in PARTS if p in freeze and (freeze[p] == 0 or step < freeze[p]))


def describe_freeze(freeze: Mapping[str, int]) -> str:
    """{"encoder": 500} -> "encoder:500" (the --freeze syntax)."""
    return ",".join(p if freeze[p] == 0 else f"{p}:{freeze[p]}" for p in PARTS if p in freeze)


# ---- import -------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What weight import did, per tensor of the parts it was asked to load."""

    source: str  # the checkpoint folder read
    parts: list[str]  # the parts asked for
    loaded: list[str] = field(default_factory=list)
    # (name, why): "not in the source" (kept its init) or "not in this model" (source unused)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # (name, source shape, model shape)
    mismatched: list[tuple[str, list[int], list[int]]] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return bool(self.skipped or self.mismatched)

    def counts(self) -> dict[str, dict[str, int]]:
        """part -> {"loaded", "skipped", "mismatched"} for the parts asked for."""
        out = {p: {"loaded": 0, "skipped": 0, "mismatched": 0} for p in self.parts}
        for name in self.loaded:
            out[part_of(name)]["loaded"] += 1
        for name, _ in self.skipped:
            out[part_of(name)]["skipped"] += 1
        for name, _, _ in self.mismatched:
            out[part_of(name)]["mismatched"] += 1
        return out

    def table(self) -> str:
        """Per-part counts, then every skipped and mismatched tensor by name."""
        rows = [f"{'part':<10} {'loaded':>7} {'skipped':>8} {'mismatched':>11}"]
        for part, c in self.counts().items():
            rows.append(f"{part:<10} {c['loaded']:>7} {c['skipped']:>8} {c['mismatched']:>11}")
        for name, why in self.skipped:
            rows.append(f"  skipped     {name}: {why}")
        for name, src, dst in self.mismatched:
            rows.append(f"  mismatched  {name}: source {tuple(src)}, model {tuple(dst)}")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "parts": self.parts,
            "counts": self.counts(),
            "loaded": self.loaded,
            "skipped": [{"name": n, "why": w} for n, w in self.skipped],
            "mismatched": [{"name": n, "source": s, "model": d} for n, s, d in self.mismatched],
        }


@torch.no_grad()
def import_weights(
    model: nn.Module,
    tensors: Mapping[str, torch.Tensor],
    parts: Iterable[str],
    source: str = "",
) -> ImportReport:
    """Copy into `model` every tensor of `parts` whose name and shape match one in `tensors`.
    Raises BadInput when nothing at all matches; logs a warning listing a partial load."""
    parts = [_check_part(p, "--load") for p in parts]
    own_parts = model.parts() if hasattr(model, "parts") else {}
    lacking = [p for p in parts if own_parts and p not in own_parts]
    if lacking:
        raise BadInput(f"--load: this model has no {', '.join(lacking)} (its parts: "
                       f"{', '.join(own_parts)})")  # fmt: skip
    report = ImportReport(source=source, parts=parts)
    own = model.state_dict()
    for name, dst in own.items():
        if part_of(name) not in parts:
            continue
        src = tensors.get(name)
        if src is None:
            report.skipped.append((name, "not in the source"))
        elif tuple(src.shape) != tuple(dst.shape):
            report.mismatched.append((name, list(src.shape), list(dst.shape)))
        else:
            # state_dict tensors share storage with the parameters: copy_ writes the model
            # (and keeps its device, dtype and memory format)
            dst.copy_(src)
            report.loaded.append(name)
    for name in tensors:
        if part_of(name) in parts and name not in own:
            report.skipped.append((name, "not in this model"))
    where = source or "the source"
    if not report.loaded:
        raise BadInput(
            f"{where}: no tensor of {', '.join(parts)} matches this model by name and shape "
            f"({len(report.mismatched)} of another shape, {len(report.skipped)} not in both); "
            "is it the same kind of model?"
        )
    if report.partial:
        names = [n for n, _ in report.skipped] + [n for n, _, _ in report.mismatched]
        log.warning("partial weight import from %s: %d tensors loaded, %d skipped, %d of another "
                    "shape (kept their fresh init): %s", where, len(report.loaded),
                    len(report.skipped), len(report.mismatched), ", ".join(names))  # fmt: skip
    else:
        log.info("imported %d tensors of %s from %s", len(report.loaded), ", ".join(parts), where)
    return report


def init_from(
    model: nn.Module, source: str | os.PathLike, parts: Iterable[str], which: str = "best"
) -> tuple[ImportReport, dict[str, Any]]:
    """Import `parts` from a run (its best checkpoint, else its latest) or a checkpoint folder.
    Returns the report and the lineage to record in the new run's checkpoints."""
    path = ck.resolve_checkpoint(source, which)
    tensors, state = ck.load_model_weights(path)
    report = import_weights(model, tensors, parts, str(path))
    lineage = {
        "kind": "init",
        "source_run": str(run_of(path)),
        "source_checkpoint": str(path.resolve()),
        "source_step": state.get("step"),
        "parts": report.parts,
        "loaded": len(report.loaded),
        "skipped": len(report.skipped),
        "mismatched": len(report.mismatched),
        "parent": state.get("lineage") or None,
    }
    return report, lineage


def run_of(checkpoint: Path) -> Path:
    """RUN of RUN/checkpoints/NAME; the folder itself for a checkpoint kept elsewhere."""
    checkpoint = checkpoint.resolve()
    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent
    return checkpoint
