"""`faceswap demo`: the whole pipeline on generated sample clips, offline."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path

from faceswap.cli.common import Command, emit
from faceswap.errors import BadInput

DEMO_EXAMPLES = """examples:
  faceswap demo                      # into ./faceswap-demo, CPU or CUDA profile
  faceswap demo -o /tmp/demo --overwrite
  faceswap demo --budget 15m         # a longer wall-clock budget (more training steps)
  faceswap demo --profile quick      # a one-minute run with a tiny model (what the tests run)
"""


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="faceswap-demo", help="demo folder (faceswap-demo)")
    p.add_argument("--profile", default="auto",
                   help="auto (cuda when available, else cpu), cpu, cuda or quick")  # fmt: skip
    p.add_argument("--budget", metavar="DURATION",
                   help="wall-clock budget of the whole demo (8m, 15m, 1h; default: the "
                        "profile's, 8 minutes on cpu and cuda): training gets what the other "
                        "stages leave")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace a previous demo in -o")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _run_demo(args: argparse.Namespace) -> int:
    from faceswap.demo.run import run_demo

    minutes = None
    if args.budget is not None:
        from faceswap.train.budget import parse_duration

        try:
            minutes = parse_duration(args.budget) / 60.0
        except ValueError as exc:
            raise BadInput(f"--budget: {exc}") from None
    demo = (Path(args.output), args.profile, args.overwrite, minutes)
    if args.json:  # the stages' own summaries go to stderr; stdout carries only the JSON
        with contextlib.redirect_stdout(sys.stderr):
            r = run_demo(*demo)
    else:
        r = run_demo(*demo)

    def human() -> None:
        ev = r.evaluation.get("identity") or {}
        of = f", budget {r.budget['budget_minutes']:g} min" if r.budget else ""
        print(f"\nfaceswap demo done in {r.seconds['total']:.0f} s ({r.profile} profile{of})")
        print(f"  swapped video      {r.video}")
        print(f"  provenance label   {r.provenance}")
        print(f"  before/after       {r.preview}")
        print(f"  training preview   {r.training_preview}  (A, A->A, A->B, B, B->B, B->A)")
        print(f"  report             {r.report}  (open in a browser)")
        print(f"  TensorBoard        {r.tensorboard}")
        print(f"  identity B vs A    {r.identity_distance:.2f} (dlib embedding distance; "
              "> 0.6 = different people)")  # fmt: skip
        if ev:
            print(f"  evaluation         {Path(r.run) / 'evaluation.json'}")
        print("  stages (s)         " + ", ".join(f"{k} {v:.0f}" for k, v in r.seconds.items()))
        if r.budget:
            print(f"  budget             {_budget_words(r.budget, r.seconds)}")

    emit(args, dataclasses.asdict(r), human)
    return 0


def _budget_words(b: dict, seconds: dict) -> str:
    """What the budget did: the steps it allowed at the measured step time, what it cut, and
    whether the demo kept to it."""
    p = b["planned"]
    steps = f"training {p['steps']} -> {b['steps']} steps, fit {p['fit_steps']} -> {b['fit_steps']}"
    if (b["steps"], b["fit_steps"]) == (p["steps"], p["fit_steps"]):
        steps = f"training {b['steps']} and fit {b['fit_steps']} steps as planned"
    words = f"{steps} at {b.get('pace_seconds', b['step_seconds']):.2f} s a step"
    if b["floor"]:
        words += " (the floor: the swap must still show B)"
    if b["skipped"]:
        words += f"; cut: {', '.join(b['skipped'])}"
    over = seconds["total"] - 60.0 * b["budget_minutes"]
    if over > 0:
        rest = seconds["total"] - seconds.get("train", 0.0) - seconds.get("fit", 0.0)
        words += (f"; over the budget by {over:.0f} s: the stages other than training and fit "
                  f"took {rest:.0f} s on this machine now")  # fmt: skip
    return words


DEMO = Command(
    "run the whole pipeline on generated sample clips: extract, train, fit, convert, report",
    DEMO_EXAMPLES,
    _add_demo,
    _run_demo,
)
