"""`faceswap train` and `faceswap lr-find`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from faceswap.cli.common import Command, Interrupted, emit, load_facesets, progress_bar
from faceswap.errors import BadInput

log = logging.getLogger("faceswap")

TRAIN_EXAMPLES = """examples:
  faceswap train -A faces/alice -B faces/bob -o runs/alice2bob --budget 1h
      (an hour of training: the LR schedule is laid over the steps an hour holds)
  faceswap train -A faces/alice -B faces/bob -o runs/alice2bob --model original
  faceswap train -A faces/alice -B faces/bob -o runs/ab256 --model sae-256 --batch-size 32
  faceswap train -A faces/alice -B faces/bob -o runs/ab --config configs/train/cpu-small.yaml
  faceswap train -A faces/alice -B faces/bob -o runs/alice2bob --resume --steps 200000
  faceswap train -A faces/alice -B faces/bob -o runs/ab2 --model sae-128 --init-from runs/ab \
      --load encoder --freeze encoder:1000
      (start from another run's encoder, frozen for the first 1000 steps; see docs/fit.md)
  tensorboard --logdir runs/alice2bob/logs
  torchrun --nproc_per_node=2 -m faceswap train -A faces/alice -B faces/bob -o runs/ab2
      (data-parallel on 2 GPUs: --batch-size faces per side per GPU; rank 0 writes the run)
  faceswap train -A faces/p1 -A faces/p2 -A faces/p3 -B faces/q1,faces/q2 -o runs/base
      (a base over several identities a side, pooled; then fit it: see docs/train.md)
  faceswap train -A faces/alice -B faces/bob -o runs/ab --init-from runs/base
"""


POOL_HELP = (
    "face set of identity {0}; repeat -{0} (or join with commas) to pool several "
    "sets into side {0}, e.g. to train a base over many identities"
)


def _add_sides(p: argparse.ArgumentParser) -> None:
    p.add_argument("-A", dest="faceset_a", required=True, action="append",
                   metavar="FACESET", help=POOL_HELP.format("A"))  # fmt: skip
    p.add_argument("-B", dest="faceset_b", required=True, action="append",
                   metavar="FACESET", help=POOL_HELP.format("B"))  # fmt: skip


def _add_train(p: argparse.ArgumentParser) -> None:
    _add_sides(p)
    p.add_argument("-o", "--output", required=True, help="run folder (created, or resumed)")
    p.add_argument("--config", help="YAML train config (sections model, augment, loss, schedule)")
    p.add_argument("--model", help="model preset (lightweight, lightweight-128, original, "
                                   "sae-128-lite, liae-64, dfl-h128, sae-128, sae-256, "
                                   "liae-128; docs/models.md) or a model YAML file (default: "
                                   "lightweight-128 on a CPU, liae-128 on CUDA)")  # fmt: skip
    p.add_argument("--steps", type=int, help="train until this step")
    p.add_argument("--budget", metavar="DURATION",
                   help="train for this long (10m, 1h30m, 8h): the LR schedule fits the time, "
                        "the run ends with a final save; --steps becomes an upper bound")  # fmt: skip
    p.add_argument("--batch-size", type=int, help="faces per side per step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--schedule", help="constant, cosine, step, onecycle or plateau")
    p.add_argument("--precision", help="auto, fp32, bf16 or fp16")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, help="seed of split, order, augmentation, init")
    p.add_argument("--resume", action="store_true", help="continue the run in -o exactly")
    p.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT",
                   help="copy the weights whose name and shape match from this run's best "
                        "checkpoint (or this checkpoint folder)")  # fmt: skip
    p.add_argument("--load", help="parts to copy with --init-from (default: "
                                  "encoder,decoder_a,decoder_b)")  # fmt: skip
    p.add_argument("--freeze", help="freeze parts, e.g. encoder:1000 (the first 1000 steps) or "
                                    "encoder (the whole run)")  # fmt: skip
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _train_config(args: argparse.Namespace):
    from faceswap.config import load_yaml
    from faceswap.models import model_config_from
    from faceswap.train.config import apply_device_defaults, train_config_from

    data = load_yaml(args.config) if args.config else {}
    where = args.config or "options"
    budget = _budget(args)
    if budget is not None:
        data["budget"] = budget
        if args.steps is None and "steps" not in data:
            data["steps"] = BUDGET_STEP_CAP
    for key, value in (("steps", args.steps), ("batch_size", args.batch_size),
                       ("precision", args.precision), ("device", args.device),
                       ("seed", args.seed)):  # fmt: skip
        if value is not None:
            data[key] = value
    sched = dict(data.get("schedule") or {})
    if args.lr is not None:
        sched["lr"] = args.lr
    if args.schedule is not None:
        sched["name"] = args.schedule
    if sched:
        data["schedule"] = sched
    if getattr(args, "freeze", None) is not None:
        from faceswap.train.weight_import import parse_freeze

        data["freeze"] = parse_freeze(args.freeze)
    cfg = train_config_from(data, where)
    if args.model:
        cfg.model = model_config_from(args.model, {})
    elif name := apply_device_defaults(cfg, data):
        log.info("model: %s (the default on this device; --model to choose)", name)
    return cfg


BUDGET_STEP_CAP = 100_000_000  # under --budget without --steps: the time decides


def _budget(args: argparse.Namespace) -> float | None:
    """--budget DURATION in seconds (None when not given); bad text is BadInput."""
    if getattr(args, "budget", None) is None:
        return None
    from faceswap.train.budget import parse_duration

    try:
        return parse_duration(args.budget)
    except ValueError as exc:
        raise BadInput(f"--budget: {exc}") from None


def _run_train(args: argparse.Namespace) -> int:
    from faceswap.train import distributed as dd
    from faceswap.train.trainer import open_run

    run_dir = Path(args.output)
    if args.load is not None and args.init_from is None:
        raise BadInput("--load: only with --init-from (the run to copy the parts from)")
    if args.resume:
        for flag, value in (("--init-from", args.init_from), ("--freeze", args.freeze)):
            if value is not None:
                raise BadInput(f"{flag}: only when a run starts (a resumed run keeps its own)")
    if args.init_from is not None:  # checked before the face sets are decoded
        from faceswap.train.checkpoint import resolve_checkpoint
        from faceswap.train.weight_import import parse_parts

        args.load = parse_parts(args.load) if args.load is not None else None
        args.init_from = resolve_checkpoint(args.init_from)
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInput(f"-o {run_dir}: is a file; a run is a folder (a new name, or an existing "
                       "run with --resume)")  # fmt: skip
    fs_a, fs_b = load_facesets(args.faceset_a, "-A"), load_facesets(args.faceset_b, "-B")
    if args.resume:
        cfg = open_run(run_dir, _train_config(args) if args.model else None, resume=True)
        if args.steps is not None:
            cfg.steps = args.steps
        budget = _budget(args)
        if budget is not None:  # more time for the run (the spent part is in the checkpoint)
            cfg.budget = budget
    else:
        cfg = open_run(run_dir, _train_config(args), resume=False)
    dist = dd.init_from_env(cfg.device)  # one process unless started by torchrun
    try:
        if not dd.is_main(dist):
            log.setLevel(logging.ERROR)  # rank 0 speaks for the run
        dd.barrier(dist)  # every rank has read the run folder before rank 0 writes to it
        code = _train(args, cfg, fs_a, fs_b, run_dir, dist)
        # every rank leaves together, after rank 0's last save: a rank that exits first tears
        # its gloo threads down while its peer still talks to it (an abort at exit)
        dd.barrier(dist)
        return code
    finally:
        dd.cleanup()


def _train(args: argparse.Namespace, cfg, fs_a, fs_b, run_dir: Path, dist) -> int:
    from faceswap.train.trainer import Trainer

    main_rank = dist.rank == 0
    trainer = Trainer(cfg, fs_a, fs_b, run_dir, dist=dist)
    report = None
    if args.resume:
        from faceswap.train.checkpoint import latest_checkpoint

        latest = latest_checkpoint(run_dir)
        if latest is not None:
            trainer.restore(latest)
            if main_rank:
                log.info("resuming %s at step %d from %s (written %s ago)", run_dir,
                         trainer.step, latest, _ago(latest))  # fmt: skip
        elif main_rank:
            log.warning("%s: no checkpoint yet; starting again from step 0", run_dir)
    elif args.init_from is not None:
        from faceswap.train.weight_import import init_from

        parts = args.load or tuple(trainer.model.parts())  # default: every part it has
        report, trainer.lineage = init_from(trainer.model, args.init_from, parts)
        if main_rank and not args.json:
            print(f"weights from {report.source}:")
            print(report.table())
    log.info("model %s %dpx: %.1f M parameters, %.2f GFLOP per sample (forward+backward)",
             cfg.model.arch, cfg.model.resolution, trainer.parameters / 1e6,
             trainer.flops / 1e9)  # fmt: skip
    # a budget's steps are estimated; a resumed run's bar counts from its step, not from 0
    bar = progress_bar(None if cfg.budget else cfg.steps, "train", unit="step", show=main_rank)
    bar.update(trainer.step)

    def progress(step: int, d: dict) -> None:
        bar.update(1)
        bar.set_postfix(step=step, loss=f"{d['loss']:.4f}", lr=f"{d['lr']:.2e}",
                        sps=f"{d.get('samples_per_s', 0):.1f}", refresh=False)  # fmt: skip

    try:
        s = trainer.train(progress, tensorboard=not args.no_tensorboard)
    except KeyboardInterrupt as exc:
        from faceswap.train.checkpoint import latest_checkpoint

        latest = latest_checkpoint(run_dir)
        why = {"SIGTERM": ("terminated (SIGTERM)", 143), "SIGHUP": ("hung up (SIGHUP)", 129)}
        what, code = why.get(str(exc), ("interrupted", 130))
        saved = f"saved {latest}" if latest else "nothing saved yet (no step finished)"
        raise Interrupted(f"{what} at step {trainer.step}; {saved}; resume with: "
                          f"{_resume_command(args)}", code) from None  # fmt: skip
    finally:
        bar.close()

    def human() -> None:
        print(f"trained {s.run}: steps {s.start_step} -> {s.step} ({s.stopped}) on {s.device} "
              f"{s.precision}, {s.samples_per_second:.1f} samples/s")  # fmt: skip
        if s.val_loss:
            print(f"  validation loss A {s.val_loss['a']:.4f}, B {s.val_loss['b']:.4f}; best "
                  f"{s.best_val:.4f} at step {s.best_step}")  # fmt: skip
        for e in s.events:
            print(f"  {e}")
        print(
            f"  preview {Path(s.run) / 'preview.png'}; tensorboard --logdir {Path(s.run) / 'logs'}"
        )

    if main_rank:
        data = dataclasses.asdict(s)
        if report is not None:
            data["import"] = report.to_dict()
        emit(args, data, human)
    return 0


def _ago(path: Path) -> str:
    """How long ago a checkpoint was written, in words ("3 min", "2.5 h")."""
    import time

    try:
        secs = max(0.0, time.time() - (path / "state.json").stat().st_mtime)
    except OSError:
        return "an unknown time"
    if secs < 120:
        return f"{secs:.0f} s"
    if secs < 7200:
        return f"{secs / 60:.0f} min"
    return f"{secs / 3600:.1f} h" if secs < 172800 else f"{secs / 86400:.1f} days"


def _resume_command(args: argparse.Namespace) -> str:
    import shlex

    parts = ["faceswap", "train"]
    for flag, values in (("-A", args.faceset_a), ("-B", args.faceset_b)):
        for v in [values] if isinstance(values, str) else values:
            parts += [flag, v]
    parts += ["-o", args.output, "--resume"]
    if args.steps is not None:
        parts += ["--steps", str(args.steps)]
    return " ".join(shlex.quote(str(p)) for p in parts)


LR_FIND_EXAMPLES = """examples:
  faceswap lr-find -A faces/alice -B faces/bob -o runs/lr --model original
  faceswap lr-find -A faces/p1 -A faces/p2 -B faces/q1 -B faces/q2 -o runs/lr-base
  faceswap lr-find -A faces/alice -B faces/bob -o runs/lr --config configs/train/cpu-small.yaml --steps 200
"""


def _add_lr_find(p: argparse.ArgumentParser) -> None:
    _add_sides(p)
    p.add_argument("-o", "--output", required=True, help="folder for lr_find.png and .json")
    p.add_argument("--config", help="YAML train config (the model, loss and data it uses)")
    p.add_argument("--model", help="model preset or model YAML file")
    p.add_argument("--batch-size", type=int, help="faces per side per step")
    p.add_argument("--steps", type=int, default=100, help="LRs to try (100)")
    p.add_argument("--min-lr", type=float, default=1e-7, help="smallest LR (1e-7)")
    p.add_argument("--max-lr", type=float, default=1e-1, help="largest LR (0.1)")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    for name in ("lr", "schedule", "precision", "seed"):
        p.set_defaults(**{name: None})


def _run_lr_find(args: argparse.Namespace) -> int:
    from faceswap.train.lr_find import plot_lr_find, run_lr_find, suggest_lr
    from faceswap.train.trainer import Trainer

    if not 0 < args.min_lr < args.max_lr:
        raise BadInput("--min-lr must be positive and below --max-lr")
    if args.steps < 10:
        raise BadInput("--steps must be at least 10")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a folder")
    args.steps, n_steps = None, args.steps  # --steps means LRs here, not training steps
    cfg = _train_config(args)
    fs_a, fs_b = load_facesets(args.faceset_a, "-A"), load_facesets(args.faceset_b, "-B")
    trainer = Trainer(cfg, fs_a, fs_b, out)
    bar = progress_bar(n_steps, "lr-find", unit="lr")

    def step(lr: float) -> float:
        bar.update(1)
        return trainer.train_step(lr)["loss"]

    try:
        lrs, losses = run_lr_find(step, args.min_lr, args.max_lr, n_steps)
    finally:
        bar.close()
    suggestion = suggest_lr(lrs, losses)
    out.mkdir(parents=True, exist_ok=True)
    plot_lr_find(lrs, losses, suggestion, out / "lr_find.png")
    data = {k: v for k, v in suggestion.items() if k != "smoothed"}
    data.update(plot=str(out / "lr_find.png"), lrs=lrs, losses=losses)
    (out / "lr_find.json").write_text(json.dumps(data, indent=1))

    def human() -> None:
        sug = suggestion["suggested"]
        print(f"tried {len(lrs)} learning rates from {lrs[0]:.1e} to {lrs[-1]:.1e}")
        print(f"  suggested lr {sug:.2e}" if sug else "  no suggestion: the loss never fell")
        print(f"  plot {out / 'lr_find.png'}")

    emit(args, data, human)
    return 0


TRAIN = Command(
    "train the shared-encoder autoencoder on face sets A and B",
    TRAIN_EXAMPLES,
    _add_train,
    _run_train,
)


LR_FIND = Command(
    "LR range test: try rising learning rates, plot the loss, suggest one",
    LR_FIND_EXAMPLES,
    _add_lr_find,
    _run_lr_find,
)
