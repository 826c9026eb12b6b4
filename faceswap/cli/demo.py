"""`faceswap demo`: the whole pipeline on generated sample clips, offline."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path

from faceswap.cli.common import Command, emit

DEMO_EXAMPLES = """examples:
  faceswap demo                      # into ./faceswap-demo, CPU or CUDA profile
  faceswap demo -o /tmp/demo --overwrite
  faceswap demo --profile quick      # a one-minute run with a tiny model (what the tests run)
"""


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="faceswap-demo", help="demo folder (faceswap-demo)")
    p.add_argument("--profile", default="auto",
                   help="auto (cuda when available, else cpu), cpu, cuda or quick")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace a previous demo in -o")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _run_demo(args: argparse.Namespace) -> int:
    from faceswap.demo.run import run_demo

    if args.json:  # the stages' own summaries go to stderr; stdout carries only the JSON
        with contextlib.redirect_stdout(sys.stderr):
            r = run_demo(Path(args.output), args.profile, args.overwrite)
    else:
        r = run_demo(Path(args.output), args.profile, args.overwrite)

    def human() -> None:
        ev = r.evaluation.get("identity") or {}
        print(f"\nfaceswap demo done in {r.seconds['total']:.0f} s ({r.profile} profile)")
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

    emit(args, dataclasses.asdict(r), human)
    return 0


DEMO = Command(
    "run the whole pipeline on generated sample clips: extract, train, fit, convert, report",
    DEMO_EXAMPLES,
    _add_demo,
    _run_demo,
)
