"""The training loop: one shared encoder, two decoders, two face sets.

    for step in range(start, cfg.steps):
        a, b = next(stream_a), next(stream_b)             # (B, 3, R, R) each, augmented
        z = model.encode(cat(a.input, b.input))           # one encoder pass for both sides
        loss = FaceLoss(decode(z_a, "a"), a) + FaceLoss(decode(z_b, "b"), b)
        step the optimizer at lr_at(schedule, step)       # pure function of the step
        every val_every steps or val_minutes: validation loss per side -> monitor, plateau
        every save_every steps or save_minutes: checkpoint (weights, optimizer, data, RNG)

Frozen parts (cfg.freeze, a pure function of the step like the LR) have requires_grad off: no
gradient is computed for them, so AdamW skips them (no moments, no weight decay) until they thaw.

Everything that decides what happens at step t (LR, data order, augmentation, RNG) is either a
pure function of t or saved in the checkpoint, so a resumed run is the uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from faceswap import __version__
from faceswap import faceset as fsmod
from faceswap.config import from_dict, to_dict
from faceswap.data import BatchStream, FaceDataset, leak_report
from faceswap.data.facepool import describe, paths_of, record_of
from faceswap.data.loader import balance_weights
from faceswap.errors import BadInput
from faceswap.models import Autoencoder, build_model, count_parameters
from faceswap.models.measure import cached_flops_per_sample
from faceswap.train import cadence
from faceswap.train import checkpoint as ck
from faceswap.train import distributed as dd
from faceswap.train.budget import CALIBRATE, RE_ESTIMATE, BudgetClock, estimate_total
from faceswap.train.config import TrainConfig
from faceswap.train.discriminator import GanTerm
from faceswap.train.losses import FaceLoss
from faceswap.train.monitor import MonitorState, event_kind, flat_output, monitor_update
from faceswap.train.runlock import locked_run
from faceswap.train.runtime import cpu_has_native_bf16, keep_freed_memory_in_heap
from faceswap.train.schedules import PlateauState, ScheduleConfig, lr_at, plateau_update
from faceswap.train.schedules import resolve as resolve_schedule
from faceswap.train.split_record import read_split, run_split, write_split
from faceswap.train.weight_import import describe_freeze, frozen_parts

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
# (step, {"loss": .., "lr": .., "samples_per_s": ..}) after each step
Progress = Callable[[int, dict[str, float]], None]


@dataclass
class TrainSummary:
    run: str
    start_step: int
    step: int
    seconds: float
    samples_per_second: float
    parameters: int
    flops_per_sample: int
    device: str
    precision: str
    train_loss: float | None = None
    val_loss: dict[str, float] = field(default_factory=dict)
    best_val: float | None = None
    best_step: int | None = None
    events: list[str] = field(default_factory=list)
    stopped: str = "finished"
    lineage: dict[str, Any] = field(default_factory=dict)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput("--device cuda: torch sees no CUDA GPU")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = fp32). `auto`: bf16 on a CUDA GPU that has it (else fp16), and
    on a CPU with native bf16 (runtime.cpu_has_native_bf16); fp32 on other CPUs, where bf16 is
    emulated and slow."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def check_facesets(fs_a: fsmod.FaceSet, fs_b: fsmod.FaceSet, cfg: TrainConfig) -> None:
    """Refuse face sets the model cannot train on, with one line naming the set."""
    for name, fs in (("A", fs_a), ("B", fs_b)):
        if not fs.faces:
            raise BadInput(f"face set {name} ({describe(fs)}) has no faces")
    if (fs_a.size, fs_a.centering) != (fs_b.size, fs_b.centering):
        raise BadInput(
            f"face sets differ: A ({describe(fs_a)}) is {fs_a.size}px {fs_a.centering}, B "
            f"({describe(fs_b)}) is {fs_b.size}px {fs_b.centering}; extract both with the same "
            "--size and --centering"
        )
    if cfg.model.resolution > fs_a.size:
        log.warning("model resolution %d is larger than the faces (%d px): faces are upscaled",
                    cfg.model.resolution, fs_a.size)  # fmt: skip


class PairStep(torch.nn.Module):
    """The training forward: one encoder pass over A and B stacked, each half decoded by its
    own decoder. A module of its own so DistributedDataParallel (which syncs gradients only
    through forward()) can wrap the whole step."""

    def __init__(self, model: Autoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, n: int):
        z = self.model.encode(x)
        return self.model.decode(z[:n], "a"), self.model.decode(z[n:], "b")


class Trainer:
    """Owns the model, optimizer, data streams and run folder of one training run.

    dist (from distributed.init_from_env): with several ranks each trains on its slice of the
    global batch (batch_size per side per rank) under DistributedDataParallel; losses and
    validation are averaged over the ranks, and only rank 0 writes to the run folder."""

    def __init__(
        self,
        cfg: TrainConfig,
        fs_a: fsmod.FaceSet,
        fs_b: fsmod.FaceSet,
        run_dir: str | Path,
        *,
        lineage: dict[str, Any] | None = None,
        dist: dd.DistInfo = dd.SINGLE,
    ) -> None:
        self.cfg = cfg
        self.dist = dist
        self.is_main = dd.is_main(dist)
        self.run_dir = Path(run_dir)
        self.fs = {"a": fs_a, "b": fs_b}
        self.lineage = lineage or {}
        check_facesets(fs_a, fs_b, cfg)
        self.device = dist.device if dist.device is not None else pick_device(cfg.device)
        self.amp_dtype = pick_precision(cfg.precision, self.device)
        if cfg.precision == "auto" and self.device.type == "cpu" and self.amp_dtype is not None:
            log.info("precision auto: bf16 autocast (this CPU has native bf16; --precision fp32 "
                     "to keep fp32)")  # fmt: skip
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)

        # data: a per-identity split that keeps neighbouring frames on one side
        res = cfg.model.resolution
        self.train_sets: dict[str, FaceDataset] = {}
        self.val_sets: dict[str, FaceDataset] = {}
        self.streams: dict[str, BatchStream] = {}
        on_gpu = self.device.type == "cuda"
        if not on_gpu and cfg.cpu_heap and keep_freed_memory_in_heap():
            log.debug("glibc heap kept: no mmap/munmap of activations every step")
        recorded = read_split(self.run_dir)  # a resume keeps the faces its run held out
        self.val_idx: dict[str, list[int]] = {}
        for side, fs in self.fs.items():
            train_idx, val_idx = run_split(fs, side, recorded, cfg.val_fraction, cfg.seed)
            self.val_idx[side] = val_idx
            if leak_report(fs, train_idx, val_idx):
                raise RuntimeError("train/val split leaked neighbouring frames")  # a bug, not input
            if len(train_idx) < cfg.batch_size * dist.world_size:
                raise BadInput(
                    f"face set {side.upper()} ({describe(fs)}) has {len(train_idx)} training "
                    f"faces, fewer than a batch ({cfg.batch_size * dist.world_size}); lower "
                    "--batch-size or add faces"
                )
            self.train_sets[side] = FaceDataset(fs, train_idx, res, cfg.augment, cfg.seed)
            self.val_sets[side] = FaceDataset(fs, val_idx, res, None, cfg.seed)
            weights = None
            if cfg.balance_yaw:
                weights = balance_weights(np.array([fs.faces[i].yaw for i in train_idx]))
            self.streams[side] = BatchStream(
                self.train_sets[side], cfg.batch_size, seed=cfg.seed + (0 if side == "a" else 1),
                num_workers=cfg.num_workers, device_augment=on_gpu, device=self.device,
                rank=dist.rank, world_size=dist.world_size, weights=weights,
            )  # fmt: skip

        self.model: Autoencoder = build_model(cfg.model).to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.parameters = count_parameters(self.model)
        self.flops = cached_flops_per_sample(cfg.model, res)["forward_backward"]
        self.loss_fn = FaceLoss(cfg.loss)
        # every parameter, frozen or not: a part that thaws later is updated from then on, and
        # the optimizer's parameter numbering (which its checkpoint uses) never changes
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=cfg.schedule.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay,
            fused=True,  # one kernel for all tensors, on CPU too: +9% samples per CPU-second
        )  # fmt: skip
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=on_gpu and self.amp_dtype == torch.float16
        )
        self.step = 0
        # The schedule with its automatic fields filled in: laid over --steps, or, under a
        # budget, over the steps the budget is estimated to hold (re-laid once measured).
        self.budget = BudgetClock(cfg.budget, cfg.budget_clock) if cfg.budget else None
        self.schedule: ScheduleConfig = resolve_schedule(
            cfg.schedule, cfg.steps if self.budget is None else 10**6
        )
        self.estimates = 0  # budget estimates made (the schedule is re-laid at each)
        self.monitor = MonitorState()
        self.plateau = PlateauState()
        self.lr_scale = 1.0  # lowered by NaN rollbacks
        self.nan_streak = 0
        self.events: list[str] = []
        self.flat: set[str] = set()  # sides whose decoder draws one flat colour (warned once)
        # weights and optimizer state of the last validation whose decoders drew faces: what a
        # collapse rolls back to (in memory: the first checkpoint may come after the collapse)
        self.healthy: tuple[int, dict[str, torch.Tensor], dict[str, Any]] | None = None
        self.train_losses: list[float] = []  # since the last validation
        self.gan_losses: list[tuple[float, float]] = []  # (G's term, D's loss) since then
        self.writer = None
        self.restored = False  # restore() ran: this run continues a checkpoint
        self.frozen: tuple[str, ...] = ()
        self._apply_freeze(log_thaw=False, rewrap=False)
        self.step_model: torch.nn.Module
        self._wrap()
        # the patch-GAN term: no discriminator at all when it is off (the run and its
        # checkpoints are then exactly those of a faceswap without it)
        self.gan: GanTerm | None = None
        if cfg.loss.gan_power > 0:
            self.gan = GanTerm(cfg.loss, self.device, cfg.seed, (cfg.beta1, cfg.beta2))

    def _wrap(self) -> None:
        """(Re)build the module the step runs through. DistributedDataParallel registers the
        parameters that require grad when it is built, so it is rebuilt when a part thaws."""
        step: torch.nn.Module = PairStep(self.model)
        if self.dist.enabled:
            step = torch.nn.parallel.DistributedDataParallel(
                step, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.step_model = torch.compile(step) if self.cfg.compile else step

    def _apply_freeze(self, log_thaw: bool = True, rewrap: bool = True) -> None:
        """Set requires_grad per part for the coming step (torch.compile guards on it and
        recompiles by itself; DistributedDataParallel must be rebuilt)."""
        frozen = frozen_parts(self.cfg.freeze, self.step)
        if frozen == self.frozen:
            return
        for part, module in self.model.parts().items():
            module.requires_grad_(part not in frozen)
        thawed = [p for p in self.frozen if p not in frozen]
        self.frozen = frozen
        if rewrap and self.dist.enabled:
            self._wrap()
        if thawed and log_thaw:
            msg = f"step {self.step}: {', '.join(thawed)} unfrozen"
            log.info(msg)
            self.events.append(msg)

    # ---- run folder ------------------------------------------------------------------------
    def _metadata(self) -> dict[str, Any]:
        return {
            "tool": f"faceswap {__version__}",
            "config": to_dict(self.cfg),
            # path (or a pool's paths), so a resume from elsewhere finds them
            "facesets": {side: record_of(fs) for side, fs in self.fs.items()},
            "lineage": self.lineage,
            "streams": {side: s.state_dict() for side, s in self.streams.items()},
            "monitor": self.monitor.to_dict(),
            "plateau": self.plateau.to_dict(),
            "lr_scale": self.lr_scale,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "freeze": {"spec": dict(self.cfg.freeze), "frozen": list(self.frozen)},
            "schedule": to_dict(self.schedule),
            "budget": None if self.budget is None else {
                "seconds": self.budget.seconds, "clock": self.budget.clock,
                "spent": self.budget.now(), "estimates": self.estimates,
            },
        }  # fmt: skip

    def _restore_schedule(self, st: dict[str, Any]) -> None:
        """A budget run goes on with its saved schedule and the time it has left; a step run's
        schedule is laid over --steps again (the same, unless the resume extends the run: then
        the cosine restarts over the new length, a warm restart)."""
        saved = st.get("budget")
        if self.budget is None or not saved:
            return
        if st.get("schedule"):
            self.schedule = from_dict(ScheduleConfig, dict(st["schedule"]), "checkpoint schedule")
        self.budget = BudgetClock(self.cfg.budget, self.cfg.budget_clock,
                                  spent=float(saved["spent"]))  # fmt: skip
        self.estimates = int(saved.get("estimates", 0))

    def _apply_augment(self) -> None:
        """The augmentation for this share of the run (the warps end at augment.warp_until);
        like the LR, a function of the step, so a resume augments as the run did."""
        aug = self.cfg.augment.at(self.step / self.schedule.total_steps)
        for side, ds in self.train_sets.items():
            if ds.augment != aug:
                ds.augment = aug
                self.streams[side].close()  # loader workers hold a copy of the data set
                if side == "a":
                    log.info("step %d: input warps off (augment.warp_until)", self.step)

    def _pace_budget(self, start: int) -> None:
        """Measure the pace and lay the schedule over the steps the budget holds: after the
        first CALIBRATE steps, and again at RE_ESTIMATE of the budget (with validation and
        preview costs in the pace by then)."""
        b = self.budget
        if b is None:
            return
        if self.step == start + 2:  # the first two steps allocate: not the pace
            b.start_pace(self.step)
            return
        due = (self.estimates == 0 and self.step >= start + 2 + CALIBRATE) or (
            self.estimates == 1 and b.now() >= RE_ESTIMATE * b.seconds
        )
        pace = b.pace(self.step)
        if not due or pace is None:
            return
        total = min(estimate_total(self.step, b.now(), b.seconds, pace), self.cfg.steps)
        self.schedule = resolve_schedule(self.cfg.schedule, total)
        self.estimates += 1
        log.info("budget %.0f s (%s clock): %.3f s a step, about %d steps; the schedule runs "
                 "over %d", b.seconds, b.clock, pace, total, self.schedule.total_steps)  # fmt: skip

    def _every(self, minutes: float, per_budget: int) -> float:
        """Seconds between runs of a periodic task: `minutes`, and under a budget at least
        `per_budget` times over it (a 5-minute budget still gets ten previews)."""
        seconds = 60.0 * minutes
        if self.cfg.budget:
            share = self.cfg.budget / per_budget
            seconds = min(seconds, share) if seconds > 0 else share
        return seconds

    def finished(self) -> bool:
        """The run is at its end: --steps reached, or the budget spent (or its estimated
        steps taken: the LR has reached its floor)."""
        if self.step >= self.cfg.steps:
            return True
        if self.budget is None:
            return False
        return self.budget.done() or (self.estimates > 0 and self.step >= self.schedule.total_steps)

    def save(self, best: bool = False) -> Path:
        return ck.save_checkpoint(
            self.run_dir, self.step, self.model.state_dict(), self.optimizer.state_dict(),
            self._metadata(), keep_last=self.cfg.keep_last, best=best,
            discriminator=None if self.gan is None else self.gan.state(),
        )  # fmt: skip

    def restore(self, path: Path) -> None:
        """Load a checkpoint of this run: weights, optimizer, data positions, RNG, monitor."""
        data = ck.load_checkpoint(path)
        ours = self.model.state_dict()
        for k, v in data["model"].items():
            if k in ours and v.dtype != ours[k].dtype:  # load_state_dict would cast it silently
                raise ck.CheckpointError(f"{path}: tensor {k} is {v.dtype}, the model holds "
                                         f"{ours[k].dtype}")  # fmt: skip
        try:
            self.model.load_state_dict(data["model"])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0][:200]
            raise BadInput(f"{path}: checkpoint does not fit this model ({first})") from None
        st = data["state"]
        try:  # state.json is data from a file: any field may be missing or of the wrong kind
            ck.load_optimizer_state(self.optimizer, data["optimizer"])
            self.step = int(st["step"])
            for side, s in self.streams.items():
                s.load_state_dict(st["streams"][side])
            self.monitor = MonitorState.from_dict(st.get("monitor", {}))
            self.plateau = PlateauState.from_dict(st.get("plateau", {}))
            self.lr_scale = float(st.get("lr_scale", 1.0))
            if st.get("scaler") and self.scaler.is_enabled():
                self.scaler.load_state_dict(st["scaler"])
            ck.set_rng_state(*data["rng"])
            self._restore_schedule(st)
            self._restore_gan(path, data.get("discriminator"))
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise ck.CheckpointError(f"{path}: state does not fit this run "
                                     f"({exc.__class__.__name__}: {str(exc)[:200]})") from None  # fmt: skip
        self.lineage = st.get("lineage") or {}
        # the checkpoint's freeze spec is the one this run trains with, whatever the config says
        spec = (st.get("freeze") or {}).get("spec")
        if spec is not None and spec != self.cfg.freeze:
            log.warning("%s: the run froze %s, the config says %s; keeping the run's", path,
                        describe_freeze(spec) or "nothing",
                        describe_freeze(self.cfg.freeze) or "nothing")  # fmt: skip
            self.cfg.freeze = dict(spec)
        self._apply_freeze(log_thaw=False)
        self.restored = True
        for side, fs in self.fs.items():
            record = st.get("facesets", {}).get(side, {})
            saved, given = paths_of(record), paths_of(record_of(fs))
            if (len(saved) > 1 or len(given) > 1) and saved != given:
                log.warning("face set %s: the run trained on %s, this resume gives %s: the "
                            "data differ from the original run", side.upper(),
                            " + ".join(saved) or "(none recorded)", " + ".join(given))  # fmt: skip
                continue
            saved = record.get("fingerprint")
            if saved and saved != fs.fingerprint():
                log.warning("face set %s changed since this checkpoint (curated?): the split "
                            "and data order differ from the original run", side.upper())  # fmt: skip

    def _restore_gan(self, path: Path, saved: dict[str, Any] | None) -> None:
        """The discriminator of the checkpoint when it has one; a checkpoint without one
        (written before the GAN term existed) leaves this run's fresh one. A checkpoint's
        discriminator is ignored when the GAN term is off."""
        if self.gan is None:
            if saved is not None:
                log.info("%s: has a discriminator; loss.gan_power is 0, so it is unused", path)
            return
        if saved is None:
            log.warning("%s: no discriminator saved; the GAN term starts a fresh one", path)
            return
        self.gan.load(saved["model"], saved["optimizer"])

    # ---- one step --------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _prep(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fmt = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        return {k: v.to(self.device, non_blocking=True).contiguous(memory_format=fmt)
                if v.dim() == 4 else v for k, v in batch.items()}  # fmt: skip

    def losses(self, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
               preds: dict[str, torch.Tensor] | None = None):  # fmt: skip
        """Total loss and per-side parts for a pair of batches (one fused encoder pass).
        `preds`, when given, receives each side's prediction as the loss saw it (for the GAN
        term)."""
        n = a["input"].shape[0]
        with self._autocast():
            out_a, out_b = self.step_model(torch.cat([a["input"], b["input"]]), n)
        out = {"a": out_a, "b": out_b}
        parts = {}
        total = 0.0
        for side, batch in (("a", a), ("b", b)):
            rgb, mask = outside_frame_as_target(*out[side], batch)
            if preds is not None:
                preds[side] = rgb
            loss, p = self.loss_fn(rgb, mask, batch["target"], batch["mask"], batch["eyes"],
                                   batch["mouth"])  # fmt: skip
            total = total + loss
            parts[side] = p["total"]
        return total, parts

    def train_step(self, lr: float | None = None) -> dict[str, float]:
        """One optimizer step on a batch of A and a batch of B (lr: override the schedule,
        for the LR range test)."""
        cfg = self.cfg
        if lr is None:
            lr = lr_at(self.schedule, self.step, self.plateau.scale) * self.lr_scale
        self._apply_freeze()
        self._apply_augment()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        a = self._prep(next(self.streams["a"]))
        b = self._prep(next(self.streams["b"]))
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        gan = self.gan is not None and self.gan.active(self.step, self.schedule.total_steps)
        preds: dict[str, torch.Tensor] = {}
        loss, parts = self.losses(a, b, preds) if gan else self.losses(a, b)
        recon = float(loss.detach())
        fake = real = None
        gan_g = 0.0
        if gan:
            batches = {"a": a, "b": b}
            pairs = [self.gan.judged(preds[s], batches[s]) for s in self.gan.sides()]
            fake = torch.cat([f for f, _ in pairs])  # (n_sides * B, 3, R, R) fp32
            real = torch.cat([r for _, r in pairs])
            g_term = self.gan.generator_loss(fake)
            gan_g = float(g_term.detach())
            loss = loss + g_term
        # the mean over ranks: every rank logs, monitors and skips (or not) alike; "loss" is the
        # reconstruction loss (what validation measures), the GAN term is logged on its own
        value, part_a, part_b, gan_g = dd.all_reduce_mean(
            [recon, parts["a"], parts["b"], gan_g], self.dist, self.device
        )
        if not (math.isfinite(value) and math.isfinite(gan_g)):
            self._non_finite()
            return {"loss": float("nan"), "lr": lr, "skipped": 1.0}
        self.nan_streak = 0
        self.scaler.scale(loss).backward()
        grad_norm = float("nan")
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        out = {"loss": value, "loss_a": part_a, "loss_b": part_b, "lr": lr,
               "grad_norm": grad_norm}  # fmt: skip
        if gan:
            # D learns on this step's predictions (detached), after the model's step
            hook = self._average_grads if self.dist.enabled else None
            gan_d = self.gan.discriminator_step(real, fake, lr, hook)
            out["gan_g"] = gan_g
            out["gan_d"] = dd.all_reduce_mean([gan_d], self.dist, self.device)[0]
            self.gan_losses.append((out["gan_g"], out["gan_d"]))
        self.step += 1
        self.train_losses.append(value)
        return out

    def _average_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Average the discriminator's gradients over the ranks (it is not wrapped in
        DistributedDataParallel), so every rank's copy takes the same step."""
        import torch.distributed as tdist

        for p in params:
            tdist.all_reduce(p.grad)
            p.grad /= self.dist.world_size

    def _non_finite(self) -> None:
        """Skip the step; after nan_patience in a row, roll back and lower the LR."""
        self.nan_streak += 1
        self.step += 1  # the batch is consumed; the step counts so the schedule moves on
        log.warning("non-finite loss at step %d (%d in a row): step skipped", self.step,
                    self.nan_streak)  # fmt: skip
        if self.nan_streak < self.cfg.nan_patience:
            return
        latest = ck.latest_checkpoint(self.run_dir)
        scale = self.lr_scale * self.cfg.nan_lr_factor
        if latest is not None:
            self.restore(latest)
        self.lr_scale = scale
        self.nan_streak = 0
        msg = (f"rollback: {self.cfg.nan_patience} non-finite losses in a row; back to "
               f"{latest.name if latest else 'the current weights'} with the LR x{scale:g}")  # fmt: skip
        log.warning(msg)
        self.events.append(msg)

    # ---- validation and previews -------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        out = {}
        for side, ds in self.val_sets.items():
            n = len(ds) if self.cfg.val_batches == 0 else min(
                len(ds), self.cfg.val_batches * self.cfg.batch_size)  # fmt: skip
            total, count = 0.0, 0
            starts = range(0, n, self.cfg.batch_size)[self.dist.rank :: self.dist.world_size]
            for start in starts:
                items = [ds[i] for i in range(start, min(n, start + self.cfg.batch_size))]
                batch = self._prep({k: torch.stack([it[k] for it in items])
                                    for k in ("input", "target", "mask", "eyes", "mouth", "valid")})  # fmt: skip
                with self._autocast():
                    rgb, mask = outside_frame_as_target(*self.model(batch["input"], side), batch)
                loss, _ = self.loss_fn(rgb, mask, batch["target"], batch["mask"], batch["eyes"],
                                       batch["mouth"])  # fmt: skip
                total += float(loss) * len(items)
                count += len(items)
            total, count = dd.all_reduce_sum([total, count], self.dist, self.device)
            out[side] = total / max(count, 1)
        return out

    def preview_faces(self, side: str, n: int) -> list[tuple[str, int]]:
        """`n` faces of a side that differ most in pose and expression, as ("val" | "train",
        position) pairs: farthest-point sampling on the aligned landmarks of all its faces
        (a validation split is a few short blocks of frames, too alike on a short clip), from
        the face nearest the mean. A pure function of the split, so every preview of a run
        (and of its resumes) shows the same faces and progress is comparable."""
        sets = [("val", self.val_sets[side]), ("train", self.train_sets[side])]
        keys = [(name, i) for name, ds in sets for i in range(len(ds))]
        lms = np.concatenate([ds.landmarks.reshape(len(ds), -1) for _, ds in sets]).astype(
            np.float64
        )
        if len(keys) <= n:
            return keys
        picked = [int(np.argmin(np.linalg.norm(lms - lms.mean(0), axis=1)))]
        dist = np.linalg.norm(lms - lms[picked[0]], axis=1)
        while len(picked) < n:
            picked.append(int(np.argmax(dist)))
            dist = np.minimum(dist, np.linalg.norm(lms - lms[picked[-1]], axis=1))
        return [keys[i] for i in picked]

    def _clean_face(self, side: str, key: tuple[str, int]) -> torch.Tensor:
        """(3, R, R) float RGB in [0, 1], without augmentation."""
        name, i = key
        if name == "val":
            return self.val_sets[side][i]["target"]
        img = self.train_sets[side].images[i]  # (R, R, 3) uint8 RGB
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0

    @torch.no_grad()
    def preview(self, n: int = 4) -> np.ndarray:
        """Grid rows of (A, A->A, A->B, B, B->B, B->A) on the faces preview_faces picks, under a
        header naming the columns: uint8 (H, W, 3) RGB."""
        self.model.eval()
        cells = []
        for side, other in (("a", "b"), ("b", "a")):
            x = torch.stack([self._clean_face(side, k) for k in self.preview_faces(side, n)])
            x = self._prep({"x": x})["x"]
            with self._autocast():
                z = self.model.encode(x)
                same, _ = self.model.decode(z, side)
                swap, _ = self.model.decode(z, other)
            cells.append(torch.cat([x, same.float(), swap.float()], dim=3))  # side by side
        rows = torch.cat([torch.cat([cells[0][i], cells[1][i]], dim=2)
                          for i in range(min(len(cells[0]), len(cells[1])))], dim=1)  # fmt: skip
        grid = (rows.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        return np.concatenate([preview_header(grid.shape[1] // 6), grid], axis=0)

    def _save_preview(self) -> Path:
        import cv2

        grid = self.preview()
        folder = self.run_dir / "previews"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step-{self.step:08d}.png"
        ok, buf = cv2.imencode(".png", grid[:, :, ::-1])
        if ok:
            fsmod.atomic_write_bytes(path, buf.tobytes())
            fsmod.atomic_write_bytes(self.run_dir / "preview.png", buf.tobytes())
        if self.writer is not None:
            self.writer.add_image("preview", grid, self.step, dataformats="HWC")
        return path

    @torch.no_grad()
    def flat_sides(self, n: int = 4) -> set[str]:
        """The sides whose decoder draws one flat colour on each of `n` preview faces
        (monitor.flat_output): a collapsed decoder."""
        self.model.eval()
        flat = set()
        for side in ("a", "b"):
            x = torch.stack([self._clean_face(side, k) for k in self.preview_faces(side, n)])
            with self._autocast():
                rgb, _ = self.model(self._prep({"x": x})["x"], side)
            if flat_output(rgb):
                flat.add(side)
        return flat

    def _check_collapse(self) -> None:
        """A decoder that collapses to a flat colour rarely comes back (its saturated sigmoid
        passes little gradient): roll back to the last validation that drew faces, with the LR
        lowered. Said once when rollback is off (validation alone reads as a plateau)."""
        flat = self.flat_sides()
        if self.dist.enabled:  # rank 0 decides for all, so every rank rolls back alike
            agreed = self._agree({side: side in flat for side in ("a", "b")})
            flat = {side for side, is_flat in agreed.items() if is_flat}
        if not flat:
            self._keep_healthy()
        elif flat - self.flat and self.cfg.collapse_rollback and self.healthy is not None:
            self._roll_back_collapse(flat)
            return
        for side in sorted(flat - self.flat):
            e = (f"collapsed: decoder {side.upper()} draws one flat colour for every face (its "
                 "outputs saturated, so little gradient comes back and the loss stops moving); "
                 "if the preview stays flat, resume from an earlier checkpoint with a lower "
                 "--lr")  # fmt: skip
            log.warning(e)
            self.events.append(f"step {self.step}: {e}")
        for side in sorted(self.flat - flat):
            log.info("decoder %s draws faces again at step %d", side.upper(), self.step)
        self.flat = flat

    def _keep_healthy(self) -> None:
        """Keep this step's weights and optimizer state as the collapse rollback's target (a
        copy in memory: ~3x the weights' size, made once per validation)."""
        if not self.cfg.collapse_rollback:
            return
        # in host memory: on a GPU the copy would double the weights' and moments' footprint
        self.healthy = (self.step, cpu_copy(self.model.state_dict()),
                        cpu_copy(self.optimizer.state_dict()))  # fmt: skip

    def _roll_back_collapse(self, flat: set[str]) -> None:
        """Weights and optimizer state back to the last healthy validation's, the LR times
        nan_lr_factor from here on; the step count, schedule and data go on (under a budget
        the clock does not rewind, so neither does the schedule laid over it)."""
        step, weights, optimizer = self.healthy  # type: ignore[misc]
        self.model.load_state_dict(weights)
        # loading moves the moments to the parameters' device
        ck.load_optimizer_state(self.optimizer, cpu_copy(optimizer))
        self.lr_scale *= self.cfg.nan_lr_factor
        sides = " and ".join(side.upper() for side in sorted(flat))
        e = (f"rollback: decoder {sides} collapsed to one flat colour at step {self.step}; "
             f"weights back to step {step}'s (the last validation that drew faces) with the "
             f"LR x{self.lr_scale:g}")  # fmt: skip
        log.warning(e)
        self.events.append(e)

    def _evaluate(self) -> tuple[dict[str, float], bool, bool]:
        """Validation + monitor + plateau + the flat-colour check. Returns (val losses, is
        best, stop early)."""
        self._check_collapse()  # first: a rollback's weights are the ones validated
        val = self.validate()
        val_mean = (val["a"] + val["b"]) / 2
        train_mean = float(np.mean(self.train_losses)) / 2 if self.train_losses else val_mean
        self.train_losses = []
        self.monitor, events = monitor_update(self.monitor, self.step, train_mean, val_mean,
                                              self.cfg.overfit_evals)  # fmt: skip
        if self.schedule.name == "plateau":
            self.plateau = plateau_update(self.schedule, self.plateau, val_mean)
        best = any(event_kind(e) == "best" for e in events)
        for e in events:
            if event_kind(e) != "best":
                log.warning(e)
                self.events.append(f"step {self.step}: {e}")
        if self.writer is not None:
            for side in ("a", "b"):
                self.writer.add_scalar(f"val/loss_{side}", val[side], self.step)
            self.writer.add_scalar("val/loss", val_mean, self.step)
            self.writer.add_scalar("val/gap", val_mean - train_mean, self.step)
        if self.is_main:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                row = {"step": self.step, "train": train_mean, "val_a": val["a"],
                       "val_b": val["b"], "gap": val_mean - train_mean,
                       "lr": lr_at(self.schedule, max(self.step - 1, 0), self.plateau.scale)
                       * self.lr_scale}  # fmt: skip
                if self.gan_losses:  # the patch-GAN's two sides, means since the last row
                    g, d = np.mean(self.gan_losses, axis=0)
                    row.update(gan_g=float(g), gan_d=float(d))
                fh.write(json.dumps(row) + "\n")
        self.gan_losses = []
        # counted in evaluations, not steps: validation may run by the clock
        since_best = sum(1 for s, _, _ in self.monitor.history if s > self.monitor.best_step)
        stop = bool(self.cfg.early_stop) and since_best >= self.cfg.early_stop
        return val, best, stop

    def _agree(self, flags: dict[str, bool]) -> dict[str, bool]:
        """Rank 0's decisions for every rank (time-based cadence reads a clock per process)."""
        if not self.dist.enabled:
            return flags
        mine = [float(v) if self.is_main else 0.0 for v in flags.values()]
        summed = dd.all_reduce_sum(mine, self.dist, self.device)
        return {k: v > 0 for k, v in zip(flags, summed)}

    # ---- the loop ------------------------------------------------------------------------------
    @locked_run  # one trainer per run folder; a second one fails naming the first
    def train(self, progress: Progress | None = None, tensorboard: bool = True) -> TrainSummary:
        cfg = self.cfg
        if self.is_main:
            write_run_config(self.run_dir, cfg)
            write_split(self.run_dir, self.fs, self.val_idx)
            trim_metrics(self.run_dir, self.step)
        if tensorboard and self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "logs"), purge_step=self.step)
        start = self.step
        faces_per_step = 2 * cfg.batch_size * self.dist.world_size  # A and B, all ranks
        t0 = time.perf_counter()
        last = {"loss": math.nan}
        stopped = "finished"
        val: dict[str, float] = {}
        if start == 0 and self.lineage and not self.restored:
            # A run born from imported weights: validate them before any step (the baseline a
            # fit is judged by: how much the kept identity loses, how fast the new one forms)
            # and keep them as step 0, so a resume never falls back to a random init.
            val, is_best, _ = self._evaluate()
            self.lineage["start_val"] = dict(val)
            if self.is_main:
                self.save(best=is_best)
        if self.cfg.collapse_rollback and self.healthy is None:
            self._check_collapse()  # the start's weights: a collapse before the 1st validation
        now = time.monotonic()
        due = {
            "val": cadence.Due(cfg.val_every, self._every(cfg.val_minutes, 10), self.step, now),
            "preview": cadence.Due(
                cfg.preview_every, self._every(cfg.preview_minutes, 10), self.step, now
            ),  # fmt: skip
            "save": cadence.Due(cfg.save_every, self._every(cfg.save_minutes, 4), self.step, now),
        }
        try:
            with _stop_on_signals() as signalled:
                # `end` is decided once a step, in the step that then validates and saves: a
                # second look at a budget's clock in the loop's test could find it spent after
                # this step's checks and leave the run without its final save
                end = self.finished()
                while not end:
                    t_step = time.perf_counter()
                    last = self.train_step()
                    self._pace_budget(start)
                    rate = faces_per_step / max(time.perf_counter() - t_step, 1e-9)
                    last["samples_per_s"] = rate
                    if self.writer is not None and self.step % cfg.log_every == 0:
                        for k, v in last.items():
                            if math.isfinite(v):
                                self.writer.add_scalar(f"train/{k}", v, self.step)
                    if progress:
                        progress(self.step, last)
                    now, end = time.monotonic(), self.finished()
                    # ranks must agree: the clock of rank 0 decides for all, the end included
                    run = self._agree({"end": end, **{k: end or cadence.is_due(d, self.step, now)
                                                      for k, d in due.items()}})  # fmt: skip
                    end = run["end"]
                    is_best = early = False
                    if run["val"]:
                        val, is_best, early = self._evaluate()
                        cadence.mark(due["val"], self.step, now)
                    # only rank 0 writes previews and checkpoints
                    if run["preview"]:
                        if self.is_main:
                            self._save_preview()
                        cadence.mark(due["preview"], self.step, now)
                    if run["save"] or is_best:
                        if self.is_main:
                            self.save(best=is_best)
                        cadence.mark(due["save"], self.step, now)
                    if early:
                        stopped = (
                            f"early stop: no better validation loss for {cfg.early_stop} "
                            "evaluations"
                        )
                        log.warning(stopped)
                        if self.is_main:
                            self.save()
                        break
                    if signalled:
                        # SIGTERM/SIGHUP: finish the step, then leave exactly like Ctrl-C
                        log.warning("%s received at step %d", signalled[0], self.step)
                        raise KeyboardInterrupt(signalled[0])
        except KeyboardInterrupt:
            if self.step > start and self.is_main:
                self.save()
            raise
        except OSError as exc:  # a preview or metrics write (checkpoints say so themselves)
            latest = ck.latest_checkpoint(self.run_dir)
            kept = f"the last checkpoint {latest} is intact" if latest else "no checkpoint yet"
            what = "disk full" if exc.errno == errno.ENOSPC else "cannot write"
            raise BadInput(f"{self.run_dir}: {what} at step {self.step} ({exc.strerror or exc}); "
                           f"{kept}") from None  # fmt: skip
        finally:
            if self.writer is not None:
                self.writer.close()
        seconds = time.perf_counter() - t0
        return TrainSummary(
            run=str(self.run_dir), start_step=start, step=self.step, seconds=seconds,
            samples_per_second=faces_per_step * (self.step - start) / max(seconds, 1e-9),
            parameters=self.parameters, flops_per_sample=self.flops, device=str(self.device),
            precision=str(self.amp_dtype or "fp32").replace("torch.", ""),
            train_loss=last.get("loss"), val_loss=val,
            best_val=self.monitor.best_val if math.isfinite(self.monitor.best_val) else None,
            best_step=self.monitor.best_step if self.monitor.best_step >= 0 else None,
            events=self.events, stopped=stopped, lineage=self.lineage,
        )  # fmt: skip


def cpu_copy(obj: Any) -> Any:
    """A deep copy of a state dict (nested dicts and lists) with every tensor in host memory."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [cpu_copy(v) for v in obj]
    return copy.deepcopy(obj)


def outside_frame_as_target(rgb: torch.Tensor, mask: torch.Tensor | None, batch: dict):
    """The prediction with the crop's padded part (past the source frame's edge, batch
    "valid" 0) replaced by the target: no loss and no gradient there, for every loss term.
    rgb (B, 3, R, R), mask (B, 1, R, R) or None, valid (B, 1, R, R) in [0, 1]."""
    valid = batch.get("valid")
    if valid is None:
        return rgb, mask
    valid = valid.to(rgb.dtype)
    rgb = rgb * valid + batch["target"].to(rgb.dtype) * (1 - valid)
    if mask is not None:
        mask = mask * valid + batch["mask"].to(mask.dtype) * (1 - valid)
    return rgb, mask


PREVIEW_COLUMNS = ("A", "A->A", "A->B", "B", "B->B", "B->A")


def preview_header(cell: int) -> np.ndarray:
    """(h, 6 * cell, 3) uint8 strip with the preview's column names: the input face, its
    reconstruction by its own decoder, and its swap by the other decoder, for A then B."""
    import cv2

    h = max(14, cell // 6)
    strip = np.full((h, 6 * cell, 3), 32, np.uint8)
    scale = h / 30.0
    for k, name in enumerate(PREVIEW_COLUMNS):
        (w, th), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        org = (k * cell + max(0, (cell - w) // 2), (h + th) // 2)
        cv2.putText(strip, name, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)  # fmt: skip
    return strip


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM and SIGHUP (a closed terminal, `kill`, a scheduler ending the job) stop training
    like Ctrl-C: the loop sees the name in the yielded list after its step, saves and exits.
    Only in the main thread (signal handlers cannot be set elsewhere); old handlers come back."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    old = {}

    def handler(signum, _frame) -> None:
        received.append(signal.Signals(signum).name)

    for n in names:
        old[n] = signal.signal(getattr(signal, n), handler)
    try:
        yield received
    finally:
        for n, h in old.items():
            signal.signal(getattr(signal, n), h)


# ---- run folders -------------------------------------------------------------------------------


def trim_metrics(run_dir: Path, step: int) -> None:
    """Keep the metrics lines of validations up to `step`, where this run starts: a killed run
    wrote lines past its last checkpoint that the resumed run writes again (and maybe a torn
    last line)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = yaml.safe_load(line)  # JSON, or the YAML flow lines of older runs
        except yaml.YAMLError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            keep.append(json.dumps(row) + "\n")
    fsmod.atomic_write_text(path, "".join(keep))


def write_run_config(run_dir: Path, cfg: TrainConfig) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fsmod.atomic_write_text(
            run_dir / CONFIG_FILE, yaml.safe_dump(to_dict(cfg), sort_keys=False)
        )
    except OSError as exc:
        raise BadInput(f"{run_dir}: cannot write the run folder ({exc.strerror})") from None


def read_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise BadInput(f"{run_dir}: not a faceswap run (no {CONFIG_FILE})")
    from faceswap.config import load_yaml

    return from_dict(TrainConfig, load_yaml(path), str(path))


def open_run(run_dir: Path, cfg: TrainConfig | None, resume: bool) -> TrainConfig:
    """The config of a new run, or of the run being resumed (read back). Writes nothing:
    call write_run_config once the trainer has accepted the face sets."""
    exists = (run_dir / CONFIG_FILE).is_file()
    if resume:
        if not exists:
            raise BadInput(
                f"{run_dir}: nothing to resume (no {CONFIG_FILE}); start it without --resume"
            )
        saved = read_run_config(run_dir)
        if cfg is not None and to_dict(cfg.model) != to_dict(saved.model):
            raise BadInput(f"{run_dir}: the run was trained with another model "
                           f"({saved.model.arch} {saved.model.resolution}px); resume it with its own")  # fmt: skip
        if cfg is not None:
            saved.steps = cfg.steps  # extending a run is the one change a resume allows
        return saved
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInput(f"{run_dir}: is a file; the run folder must be a new name or a run")
    if exists or (run_dir.exists() and any(run_dir.iterdir())):
        raise BadInput(
            f"{run_dir}: run folder exists; continue it with --resume or choose another -o"
        )
    assert cfg is not None
    return cfg
