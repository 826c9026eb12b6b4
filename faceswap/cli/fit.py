"""`faceswap fit`: adapt a trained run to a new identity or to the faces of one clip."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from faceswap.cli.common import Command, emit, progress_bar
from faceswap.errors import BadInput

log = logging.getLogger("faceswap")

FIT_EXAMPLES = """examples:
  faceswap fit --from runs/alice2bob -B faces/carol -o runs/alice2carol
      (a new identity B: keep A's data and every weight, train on Carol for 1000 steps)
  faceswap fit --from runs/alice2bob --replace A -A faces/clip7 -o runs/clip7 --steps 500
      (fit to the one clip to convert: its faces replace A's)
  faceswap fit --from runs/ab --checkpoint latest -B faces/carol -o runs/ac --freeze encoder:200
  faceswap fit --from runs/ab -B faces/carol -o runs/ac --reset-decoder --lr 1e-4
  faceswap fit --resume -o runs/alice2carol --steps 2000
      (continue a fit run; `faceswap train -A .. -B .. -o runs/alice2carol --resume` also works)
"""


def _add_fit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", help="the trained run (or a checkpoint folder)")
    p.add_argument("--replace", choices=["A", "B", "a", "b"],
                   help="side whose face set is replaced (default: the one of -A/-B given)")  # fmt: skip
    p.add_argument("-A", dest="faceset_a", help="face set for side A")
    p.add_argument("-B", dest="faceset_b", help="face set for side B")
    p.add_argument("-o", "--output", required=True, help="the new run folder")
    p.add_argument("--config", help="YAML fit config (FitConfig: steps, lr, warmup, freeze, ...)")
    p.add_argument("--steps", type=int, help="fit-training steps (1000); with --resume: until")
    p.add_argument("--checkpoint", help="source checkpoint: best (default), latest, a step "
                                        "number or a checkpoint folder")  # fmt: skip
    p.add_argument("--lr", type=float, help="peak learning rate (default: half the source's)")
    p.add_argument("--freeze", help="freeze parts for the first STEPS, e.g. encoder:200 "
                                    "(no :STEPS: the whole fit)")  # fmt: skip
    p.add_argument("--reset-decoder", action="store_true",
                   help="start the replaced side's decoder from scratch (default: keep it)")  # fmt: skip
    p.add_argument("--flip", action="store_true", help="keep horizontal flips (off in a fit)")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue the fit run in -o")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _side(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """(replaced side, its face set, the kept side's face set if given)."""
    given = {s: v for s, v in (("a", args.faceset_a), ("b", args.faceset_b)) if v}
    replace = args.replace.lower() if args.replace else None
    if not given:
        raise BadInput("give the new face set with -A or -B (the side it replaces)")
    if replace is None:
        if len(given) == 2:
            raise BadInput("-A and -B both given: say which one is new with --replace A|B")
        replace = next(iter(given))
    if replace not in given:
        raise BadInput(f"--replace {replace.upper()}: give the new face set with "
                       f"-{replace.upper()}")  # fmt: skip
    kept = "b" if replace == "a" else "a"
    return replace, given[replace], given.get(kept)


def _fit_config(args: argparse.Namespace):
    from faceswap.config import from_dict, load_yaml
    from faceswap.train.fit import FitConfig
    from faceswap.train.weight_import import parse_freeze

    data = load_yaml(args.config) if args.config else {}
    for key, value in (("steps", args.steps), ("checkpoint", args.checkpoint), ("lr", args.lr)):
        if value is not None:
            data[key] = value
    if args.freeze is not None:
        data["freeze"] = parse_freeze(args.freeze)
    if args.reset_decoder:
        data["reset_decoder"] = True
    if args.flip:
        data["flip"] = True
    return from_dict(FitConfig, data, args.config or "options")


def _run_fit(args: argparse.Namespace) -> int:
    from faceswap.train import distributed as dd
    from faceswap.train.fit import plan_fit, resume_fit, start_fit

    run_dir = Path(args.output)
    report = None
    if args.resume:
        for flag, value in (("--from", args.source), ("--replace", args.replace),
                            ("--checkpoint", args.checkpoint), ("--lr", args.lr),
                            ("--freeze", args.freeze), ("--config", args.config),
                            ("--reset-decoder", args.reset_decoder), ("--flip", args.flip),
                            ("--device", args.device)):  # fmt: skip
            if value not in (None, False):
                raise BadInput(f"{flag}: not with --resume (the run keeps its own settings)")
        moved = {s: v for s, v in (("a", args.faceset_a), ("b", args.faceset_b)) if v}
        trainer = resume_fit(run_dir, args.steps, moved)
    else:
        if not args.source:
            raise BadInput("--from: name the trained run to fit (or --resume a fit run)")
        side, new, kept = _side(args)
        plan = plan_fit(args.source, side, new, _fit_config(args), keep_faceset=kept,
                        device=args.device)  # fmt: skip
        trainer, report = start_fit(plan, run_dir, dd.SINGLE)
        if not args.json:
            print(f"weights from {plan.checkpoint}:")
            print(report.table())
    cfg = trainer.cfg
    bar = progress_bar(cfg.steps - trainer.step, "fit", unit="step")

    def progress(step: int, d: dict) -> None:
        bar.update(1)
        bar.set_postfix(step=step, loss=f"{d['loss']:.4f}", lr=f"{d['lr']:.2e}", refresh=False)

    try:
        s = trainer.train(progress, tensorboard=not args.no_tensorboard)
    finally:
        bar.close()
    lin = s.lineage
    start = lin.get("start_val") or {}
    data = dataclasses.asdict(s)
    data["change"] = {
        side: (s.val_loss[side] / start[side] - 1.0) if start.get(side) and s.val_loss else None
        for side in ("a", "b")
    }  # fmt: skip
    if report is not None:
        data["import"] = report.to_dict()
    # roles of the sides in a fit; a run that is not a fit (fit --resume of any run) has none
    replaced = lin.get("replaced", "").lower() if lin.get("kind") == "fit" else ""
    roles = {"a": "", "b": ""} if not replaced else {
        replaced: " (new)", "b" if replaced == "a" else "a": " (kept)"}  # fmt: skip

    def human() -> None:
        if replaced:
            print(f"fit {s.run}: {replaced.upper()} replaced by {lin['faceset']['path']}, from "
                  f"{lin['source_checkpoint']} (step {lin['source_step']})")  # fmt: skip
        else:
            print(f"trained {s.run}:")
        print(f"  steps {s.start_step} -> {s.step} ({s.stopped}) on {s.device} {s.precision}, "
              f"{s.samples_per_second:.1f} samples/s")  # fmt: skip
        for side in sorted(roles, key=lambda x: roles[x] != " (kept)"):  # the kept side first
            if s.val_loss and start.get(side):
                print(f"  validation {side.upper()}{roles[side]}: {start[side]:.4f} -> "
                      f"{s.val_loss[side]:.4f} ({data['change'][side]:+.1%})")  # fmt: skip
        for e in s.events:
            print(f"  {e}")
        print(f"  preview {Path(s.run) / 'preview.png'}; continue with: faceswap fit --resume "
              f"-o {s.run} --steps N")  # fmt: skip

    emit(args, data, human)
    return 0


FIT = Command(
    "fit-train a trained run to a new identity or one clip's faces (a new run folder)",
    FIT_EXAMPLES,
    _add_fit,
    _run_fit,
)
