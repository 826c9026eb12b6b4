"""Fit-training: adapt a trained model to a new identity (or to the faces of one clip).

    source run (never written)            new run (a normal run folder)
      checkpoint (best, latest, step N) --> all weights (the replaced side's decoder too,
      config (model, loss, seed, ...)       unless reset_decoder) copied into the same model
      face set of the kept side ----------> kept side's data, same seed, so the same
                                            validation faces as the source run
      face set of the replaced side         replaced by the new face set
                                            fit schedule: half the source's peak LR, warmup
                                            from 0, short cosine; no flips

The new run validates both sides before its first step (kept in its lineage as `start_val`)
and at every evaluation after, so the user sees how much the kept identity loses while the new
one forms. Its step counter starts at 0; its checkpoints carry the lineage (source run,
checkpoint, step, which side was replaced by which face set).
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from faceswap import faceset as fsmod
from faceswap.config import check, from_dict, option
from faceswap.data.facepool import describe, load_sets, paths_of, record_of
from faceswap.errors import BadInput
from faceswap.train import checkpoint as ck
from faceswap.train import distributed as dd
from faceswap.train.config import TrainConfig
from faceswap.train.schedules import ScheduleConfig
from faceswap.train.trainer import Trainer, open_run
from faceswap.train.weight_import import (
    ImportReport,
    check_freeze,
    import_weights,
    model_parts,
    run_of,
)

log = logging.getLogger(__name__)

SIDES = ("a", "b")


@dataclass
class FitConfig:
    """Settings of `faceswap fit`: what changes from the source run's config."""

    steps: int = option(1000, "fit-training steps (the new run counts from 0)")
    checkpoint: str = option("best", "source checkpoint: best, latest, a step number or a folder")
    lr: float | None = option(None, "peak learning rate (None: lr_ratio x the source's peak)")
    lr_ratio: float = option(0.5, "peak LR as a share of the source run's peak, when lr is None")
    warmup: float = option(0.05, "share of the steps warming up linearly from LR 0")
    min_lr_ratio: float = option(0.1, "the cosine decays to lr * this at the last step")
    flip: bool = option(False, "horizontal flips (off: a clip's face is not symmetric)")
    freeze: dict[str, int] = option({}, "parts frozen for their first N steps, 0 = the whole fit")
    reset_decoder: bool = option(False, "start the replaced side's decoder from a fresh init")
    evaluations: int = option(20, "validations over the fit (at most the source's rate)")

    def __post_init__(self) -> None:
        check(self.steps >= 1, "steps must be >= 1")
        check(bool(self.checkpoint), "checkpoint must not be empty")
        check(self.lr is None or self.lr > 0, "lr must be > 0")
        check(0.0 < self.lr_ratio <= 10.0, "lr_ratio must be in (0, 10]")
        check(0.0 <= self.warmup < 1.0, "warmup must be in [0, 1)")
        check(0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio must be between 0 and 1")
        check(self.evaluations >= 1, "evaluations must be >= 1")
        check_freeze(self.freeze)  # the source's arch is checked when the fit is planned


def fit_train_config(src: TrainConfig, fit: FitConfig) -> TrainConfig:
    """The new run's config: the source's (model, loss, seed, batch, ...) with the fit schedule,
    flips off, the fit's freeze and evaluation rates scaled to its length. Pure."""
    cfg = copy.deepcopy(src)
    cfg.steps = fit.steps
    warmup = min(fit.steps - 1, round(fit.warmup * fit.steps))
    cfg.schedule = ScheduleConfig(
        name="cosine", lr=fit.lr or fit.lr_ratio * src.schedule.lr, warmup_steps=warmup,
        total_steps=fit.steps, min_lr_ratio=fit.min_lr_ratio,
    )  # fmt: skip
    if not fit.flip:
        cfg.augment.flip = 0.0
    cfg.freeze = dict(fit.freeze)
    every = max(1, fit.steps // fit.evaluations)
    cfg.val_every = min(src.val_every, every)
    cfg.preview_every = min(src.preview_every, every)
    cfg.save_every = min(src.save_every, max(every, fit.steps // 4))
    cfg.early_stop = 0  # the mean over both sides starts high: a fit runs its steps
    cfg.budget = 0.0  # the source's time budget was the source's: a fit runs its own steps
    return cfg


def pick_checkpoint(source: str | os.PathLike, which: str) -> Path:
    """The source checkpoint: `which` is best (else latest), latest, a step number of the run,
    or a checkpoint folder."""
    src = Path(source)
    if not src.exists():
        raise ck.CheckpointError(f"{src}: no such run or checkpoint")
    if which in ("best", "latest"):
        return ck.resolve_checkpoint(src, which)
    if which.isdigit():
        path = src / "checkpoints" / f"{ck.PREFIX}{int(which):08d}"
        if not path.is_dir():
            have = ", ".join(p.name[len(ck.PREFIX) :].lstrip("0") or "0"
                             for p in ck.list_checkpoints(src)) or "none"  # fmt: skip
            raise BadInput(f"--checkpoint {which}: {src} has no checkpoint of that step "
                           f"(steps kept: {have})")  # fmt: skip
        return path
    return ck.resolve_checkpoint(which, "best")


@dataclass
class FitPlan:
    """A checked fit, before anything is written: what start_fit needs."""

    checkpoint: Path  # the source checkpoint folder
    tensors: dict[str, torch.Tensor]  # its weights
    side: str  # "a" or "b": the side whose face set is replaced
    cfg: TrainConfig  # the new run's config
    facesets: dict[str, fsmod.FaceSet]  # "a", "b": what the new run trains on
    parts: tuple[str, ...]  # the parts copied from the source
    lineage: dict[str, Any]


def _faceset_record(fs: fsmod.FaceSet) -> dict[str, Any]:
    """path (or a pool's paths and members), fingerprint and face count."""
    return {k: v for k, v in record_of(fs).items() if k not in ("size", "centering")}


def _load_recorded(paths: list[str], side: str, flag: str) -> fsmod.FaceSet:
    """The face set (or pool) a run recorded for `side`; a member that is gone is one line
    naming it and the flag that gives its new place."""
    if not paths:
        raise BadInput(f"the source run records no face set {side.upper()}; give it with {flag}")
    for p in paths:
        if not fsmod.is_faceset(p):
            raise BadInput(f"{p}: the run's face set {side.upper()} is gone; give its new "
                           f"place with {flag}")  # fmt: skip
    return load_sets(paths)


def plan_fit(
    source: str | os.PathLike,
    side: str,
    faceset: str | os.PathLike,
    fit: FitConfig,
    *,
    keep_faceset: str | os.PathLike | list[str | os.PathLike] | None = None,
    device: str | None = None,
) -> FitPlan:
    """Check everything a fit needs and read the source; writes nothing. `side` ("a"/"b") is
    replaced by `faceset`; the other side trains on the source run's face set, or the pool of
    face sets it recorded (or `keep_faceset`, one folder or a list to pool, for ones that
    moved)."""
    side = side.lower()
    if side not in SIDES:
        raise BadInput(f"--replace {side!r}: expected A or B")
    kept = "b" if side == "a" else "a"
    path = pick_checkpoint(source, fit.checkpoint)
    tensors, state = ck.load_model_weights(path)
    where = str(path / "state.json")
    if not isinstance(state.get("config"), dict):
        raise ck.CheckpointError(f"{where}: no training config recorded; not a run's checkpoint")
    src_cfg = from_dict(TrainConfig, state["config"], where)
    records = state.get("facesets") or {}
    if not all(isinstance(records.get(s), dict) for s in SIDES):
        raise ck.CheckpointError(f"{where}: the face sets of the run are not recorded")

    new = fsmod.load(faceset)
    want = (records[kept].get("size"), records[kept].get("centering"))
    if (new.size, new.centering) != want:
        raise BadInput(
            f"{new.root}: faces are {new.size}px {new.centering}, the model in {path} was "
            f"trained on {want[0]}px {want[1]} faces; extract them with --size {want[0]} "
            f"--centering {want[1]}"
        )
    if keep_faceset is None:
        kept_paths = paths_of(records[kept])
    elif isinstance(keep_faceset, (list, tuple)):
        kept_paths = [str(p) for p in keep_faceset]
    else:
        kept_paths = [str(keep_faceset)]
    old = _load_recorded(kept_paths, kept, f"-{kept.upper()}")
    if (old.size, old.centering) != want:
        raise BadInput(f"{describe(old)}: faces are {old.size}px {old.centering}, the model "
                       f"in {path} was trained on {want[0]}px {want[1]} faces")  # fmt: skip
    if records[kept].get("fingerprint") not in (None, old.fingerprint()):
        log.warning("face set %s (%s) changed since the source run: its validation faces "
                    "differ, so its loss is not comparable to the source's", kept.upper(),
                    describe(old))  # fmt: skip

    cfg = fit_train_config(src_cfg, fit)
    if device is not None:
        cfg.device = device
    if fit.reset_decoder and cfg.model.arch == "liae":
        raise BadInput("--reset-decoder: a liae model has one decoder for both identities; "
                       "fit it without the flag")  # fmt: skip
    parts = tuple(p for p in model_parts(cfg.model.arch)
                  if not (fit.reset_decoder and p == f"decoder_{side}"))  # fmt: skip
    lineage = {
        "kind": "fit",
        "source_run": str(run_of(path)),
        "source_checkpoint": str(path.resolve()),
        "source_step": state.get("step"),
        "replaced": side.upper(),
        "faceset": _faceset_record(new),
        "replaced_faceset": records[side],
        "kept_faceset": _faceset_record(old),
        "reset_decoder": fit.reset_decoder,
        "parts": list(parts),
        "parent": state.get("lineage") or None,
    }
    facesets = {side: new, kept: old}
    return FitPlan(path, tensors, side, cfg, facesets, parts, lineage)


def start_fit(
    plan: FitPlan, run_dir: str | os.PathLike, dist: dd.DistInfo = dd.SINGLE
) -> tuple[Trainer, ImportReport]:
    """A trainer for the new run with the source weights in place. Writes nothing: the run
    folder appears when training starts (config, then the step-0 checkpoint)."""
    run_dir = Path(run_dir)
    source = run_of(plan.checkpoint)
    if run_dir.resolve().is_relative_to(source):
        raise BadInput(f"-o {run_dir}: inside the source run {source}, which a fit never "
                       "writes to; choose a new folder")  # fmt: skip
    cfg = open_run(run_dir, plan.cfg, resume=False)
    trainer = Trainer(cfg, plan.facesets["a"], plan.facesets["b"], run_dir, dist=dist)
    report = import_weights(trainer.model, plan.tensors, plan.parts, str(plan.checkpoint))
    trainer.lineage = dict(plan.lineage, loaded=len(report.loaded))
    return trainer, report


def resume_fit(
    run_dir: str | os.PathLike,
    steps: int | None = None,
    facesets: dict[str, str | os.PathLike] | None = None,
    dist: dd.DistInfo = dd.SINGLE,
) -> Trainer:
    """A trainer that continues a run from its latest checkpoint, on the face sets that
    checkpoint records (or `facesets`, side -> path, for ones that moved). Writes nothing."""
    run_dir = Path(run_dir)
    cfg = open_run(run_dir, None, resume=True)
    if steps is not None:
        cfg.steps = steps
    latest = ck.latest_checkpoint(run_dir)
    if latest is None:
        raise BadInput(f"{run_dir}: no checkpoint to resume from; start the fit again")
    records = ck.read_state(latest).get("facesets") or {}
    given = facesets or {}
    loaded = {}
    for side in SIDES:
        moved = given.get(side)
        paths = [str(moved)] if moved else paths_of(records.get(side))  # a pool: every member
        loaded[side] = _load_recorded(paths, side, f"-{side.upper()}")
    trainer = Trainer(cfg, loaded["a"], loaded["b"], run_dir, dist=dist)
    trainer.restore(latest)
    return trainer
