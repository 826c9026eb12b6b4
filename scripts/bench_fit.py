#!/usr/bin/env python
"""Benchmark fit-training against training from scratch on a third identity (CPU, minutes).

    base     A + B from a random init, --steps steps              (the "converged" model)
    scratch  A + C from a random init, --steps steps              (what fit-training saves)
    fit      from the base's best checkpoint, C replaces B, --fit-steps steps (fit defaults:
             half the base's peak LR, 5% warmup, cosine to 0.1, no flips)

Face sets are generated (faceswap.synthetic): A is the astronaut portrait, B a recoloured copy,
C another colouring of the portrait with a wider, shorter face (an anisotropic stretch about the
face centre), each a clip with its own head motion, extracted at 64 px and cached in the temp
dir. Every side of every run is validated on all its validation faces (no augmentation, so the
numbers are exact functions of the weights); the split is seeded, so A's validation faces are
the same in all three runs.

Reported (and written with --json):
  * target: the validation loss of C that the scratch run has at its end;
  * steps to reach it: scratch (its first evaluation at or below the target) vs fit, and the
    ratio (goal: fit <= 1/3 of scratch);
  * the unchanged identity A: its validation loss in the base model (the fit's step 0) and at
    the fit's end, and the change (goal: <= +10%); and the highest it reached during the fit;
  * the machine load during each run (a shared machine makes the times, not the steps, noisy).

All identities come from one portrait, so the new identity is closer to the old ones than two
real people are: the ratio measured here is a best case for fit-training.

Examples:
  .venv/bin/python scripts/bench_fit.py                      # defaults, ~10 min on 2 cores
  .venv/bin/python scripts/bench_fit.py --steps 300 --fit-steps 100 --json /tmp/fit.json
  .venv/bin/python scripts/bench_fit.py --work /tmp/bf                # keep the runs
  .venv/bin/python scripts/bench_fit.py --work /tmp/bf --freeze encoder:30 --fit-lr 2e-4
      (reuses the base and scratch runs kept in /tmp/bf: only the fit runs again)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import LoadMeter  # noqa: E402 (a sibling script, not a package)

CACHE_VERSION = 1
SIZE = 64


# ---- face sets -----------------------------------------------------------------------------


def _identities() -> dict[str, Any]:
    """name -> (portrait RGB uint8, motion seed)."""
    import cv2
    import numpy as np

    from faceswap.synthetic import ASTRONAUT_FACE_CENTER, astronaut, recolor_identity

    base = astronaut()
    # C's face shape: 12% wider, 5% shorter about the face centre (the centre stays put, so
    # render_clip's default face centre still holds)
    cx, cy = ASTRONAUT_FACE_CENTER
    sx, sy = 1.12, 0.95
    m = np.array([[sx, 0, cx * (1 - sx)], [0, sy, cy * (1 - sy)]], np.float64)
    wide = cv2.warpAffine(base, m, base.shape[1::-1], flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    return {
        "a": (base, 1),
        "b": (recolor_identity(base), 2),
        "c": (recolor_identity(wide, hue_shift=-12, saturation=0.8, skin_tone=1.1, seed=5), 3),
    }


def make_facesets(frames: int, cache: Path) -> dict[str, Path]:
    """Three extracted face sets, `frames` frames each at 64 px, made once and cached."""
    from faceswap.synthetic import cached_faceset

    root = cache / f"v{CACHE_VERSION}-f{frames}"
    return {name: cached_faceset(root / name, frames, SIZE, seed=seed, face_rgb=face)
            for name, (face, seed) in _identities().items()}  # fmt: skip


# ---- runs ----------------------------------------------------------------------------------


def train_config(args: argparse.Namespace, steps: int):
    from faceswap.config import from_dict
    from faceswap.train.config import TrainConfig

    every = max(1, steps // args.evaluations)
    return from_dict(TrainConfig, {
        "steps": steps, "batch_size": args.batch_size, "seed": args.seed, "val_fraction": 0.1,
        "val_every": every, "val_batches": 0, "save_every": steps, "preview_every": steps,
        "keep_last": 1, "device": "cpu", "precision": "fp32",
        "model": {"arch": "sae", "resolution": SIZE, "encoder_dims": args.encoder_dims,
                  "decoder_dims": args.decoder_dims, "bottleneck": args.bottleneck},
        "schedule": {"name": "cosine", "lr": args.lr, "warmup_steps": max(1, steps // 20),
                     "total_steps": steps, "min_lr_ratio": 0.1},
    }, "bench")  # fmt: skip


def curve(run: Path) -> list[dict[str, float]]:
    """metrics.jsonl: one dict per validation (step, val_a, val_b, ...)."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def first_reaching(rows: list[dict[str, float]], key: str, target: float) -> int | None:
    """The first validation step at which rows[key] <= target (None: never)."""
    return next((int(r["step"]) for r in rows if r[key] <= target), None)


def timed(label: str, fn) -> tuple[Any, dict[str, Any]]:
    print(f"{label} ...", file=sys.stderr)
    t0 = time.perf_counter()
    with LoadMeter() as meter:
        out = fn()
    return out, {"seconds": time.perf_counter() - t0, "load": meter.result}


def _reusable(run_dir: Path, cfg: Any) -> bool:
    """A finished run of exactly this config (kept with --work)."""
    from faceswap.config import to_dict
    from faceswap.train import checkpoint as ck
    from faceswap.train.trainer import read_run_config

    if not (run_dir / "config.yaml").is_file() or not (run_dir / "metrics.jsonl").is_file():
        return False
    latest = ck.latest_checkpoint(run_dir)
    same = to_dict(read_run_config(run_dir)) == to_dict(cfg)
    return same and latest is not None and ck.read_state(latest)["step"] == cfg.steps


def run(args: argparse.Namespace) -> dict[str, Any]:
    from faceswap import faceset as fsmod
    from faceswap.train.fit import FitConfig, plan_fit, start_fit
    from faceswap.train.trainer import Trainer, open_run
    from faceswap.train.weight_import import parse_freeze

    torch.set_num_threads(args.threads)
    sets = make_facesets(args.frames, Path(args.cache))
    fs = {k: fsmod.load(v) for k, v in sets.items()}
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-fit-"))
    try:
        runs = {}
        for name, (x, y) in (("base", ("a", "b")), ("scratch", ("a", "c"))):
            cfg = train_config(args, args.steps)
            if _reusable(work / name, cfg):
                print(f"{name}: reusing {work / name}", file=sys.stderr)
                runs[name] = {"seconds": None, "reused": str(work / name)}
                continue
            shutil.rmtree(work / name, ignore_errors=True)
            trainer = Trainer(open_run(work / name, cfg, resume=False), fs[x], fs[y], work / name)
            _, runs[name] = timed(f"{name}: {args.steps} steps on {x.upper()}+{y.upper()}",
                                  lambda t=trainer: t.train(tensorboard=False))  # fmt: skip
        fit_cfg = FitConfig(
            steps=args.fit_steps, lr=args.fit_lr, warmup=args.fit_warmup,
            evaluations=args.evaluations, reset_decoder=args.reset_decoder,
            freeze=parse_freeze(args.freeze) if args.freeze else {},
        )  # fmt: skip
        shutil.rmtree(work / "fit", ignore_errors=True)
        trainer, _ = start_fit(plan_fit(work / "base", "b", sets["c"], fit_cfg), work / "fit")
        _, runs["fit"] = timed(f"fit: {args.fit_steps} steps, C replaces B",
                               lambda: trainer.train(tensorboard=False))  # fmt: skip
        rows = {name: curve(work / name) for name in runs}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    target = rows["scratch"][-1]["val_b"]
    scratch_steps = first_reaching(rows["scratch"], "val_b", target)
    fit_steps = first_reaching(rows["fit"], "val_b", target)
    a_before, a_after = rows["fit"][0]["val_a"], rows["fit"][-1]["val_a"]
    a_peak = max(r["val_a"] for r in rows["fit"])
    assert rows["fit"][0]["step"] == 0  # the fit's baseline validation
    ratio = fit_steps / scratch_steps if fit_steps is not None and scratch_steps else None
    a_change = a_after / a_before - 1.0
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
        },  # fmt: skip
        "target_val_c": target,
        "steps_to_target": {"scratch": scratch_steps, "fit": fit_steps},
        "fit_over_scratch": ratio,
        "goal_steps_met": ratio is not None and ratio <= 1 / 3,
        "unchanged_a": {
            "before": a_before,
            "after": a_after,
            "change": a_change,
            "peak": a_peak,
            "peak_change": a_peak / a_before - 1.0,
            "base_end": rows["base"][-1]["val_a"],
        },  # fmt: skip
        "goal_unchanged_met": a_change <= 0.10,
        "new_c": {
            "scratch_first": [rows["scratch"][0]["step"], rows["scratch"][0]["val_b"]],
            "scratch_end": target,
            "fit_start": rows["fit"][0]["val_b"],
            "fit_end": rows["fit"][-1]["val_b"],
        },
        "curves": {
            name: [{k: r[k] for k in ("step", "val_a", "val_b")} for r in rs]
            for name, rs in rows.items()
        },  # fmt: skip
        "runs": runs,
    }


def _fmt_load(r: dict[str, Any]) -> str:
    ld = r["load"]
    others = ld.get("cores_busy_others")
    return (f"{r['seconds']:.0f} s, this process {ld['cores_busy_self']:.1f} cores, others "
            f"{'?' if others is None else f'{others:.1f}'} of {ld['cpus']}, loadavg "
            f"{ld['loadavg_1min']:.1f}")  # fmt: skip


def print_table(r: dict[str, Any]) -> None:
    s, st = r["settings"], r["steps_to_target"]
    a, c = r["unchanged_a"], r["new_c"]
    ratio = r["fit_over_scratch"]
    print(f"model sae {SIZE}px E{s['encoder_dims']} D{s['decoder_dims']} B{s['bottleneck']}, "
          f"batch {s['batch_size']}, lr {s['lr']:g}; {s['frames']} frames per identity; "
          f"validation every {max(1, s['steps'] // s['evaluations'])} (scratch) / "
          f"{max(1, s['fit_steps'] // s['evaluations'])} (fit) steps")  # fmt: skip
    rows = [
        ("", "scratch (A+C)", "fit (base A+B, C replaces B)"),
        ("steps run", f"{s['steps']}", f"{s['fit_steps']}"),
        ("val loss C: first eval -> end",
         f"{c['scratch_first'][1]:.4f} (step {c['scratch_first'][0]}) -> {c['scratch_end']:.4f}",
         f"{c['fit_start']:.4f} (step 0) -> {c['fit_end']:.4f}"),
        (f"steps to val C <= {r['target_val_c']:.4f}", f"{st['scratch']}",
         f"{st['fit'] if st['fit'] is not None else 'not reached'}"
         + (f" ({ratio:.2f} x scratch; goal <= 0.33)" if ratio is not None else "")),
        ("val loss A (unchanged)", "", f"{a['before']:.4f} -> {a['after']:.4f} "
         f"({a['change']:+.1%}; goal <= +10%)"),
        ("  highest during the fit", "", f"{a['peak']:.4f} ({a['peak_change']:+.1%})"),
    ]  # fmt: skip
    w0 = max(len(x[0]) for x in rows)
    w1 = max(len(x[1]) for x in rows)
    for x in rows:
        print(f"  {x[0]:<{w0}}  {x[1]:<{w1}}  {x[2]}")
    for name, t in r["runs"].items():
        print(f"  {name:<8} {_fmt_load(t) if t.get('seconds') else 'reused ' + t['reused']}")
    met = [("fit <= 1/3 of the steps", r["goal_steps_met"]),
           ("unchanged identity +<= 10%", r["goal_unchanged_met"])]  # fmt: skip
    print("  goals: " + "; ".join(f"{g}: {'met' if ok else 'MISSED'}" for g, ok in met))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("Examples:")[1].join(["examples:", ""]))  # fmt: skip
    p.add_argument("--steps", type=int, default=600, help="base and scratch steps (600)")
    p.add_argument("--fit-steps", type=int, default=200, help="fit steps (200)")
    p.add_argument("--evaluations", type=int, default=20, help="validations per run (20)")
    p.add_argument("--frames", type=int, default=240, help="frames per identity (240)")
    p.add_argument("--batch-size", type=int, default=8, help="faces per side per step (8)")
    p.add_argument("--lr", type=float, default=5e-4, help="base/scratch peak LR (5e-4)")
    p.add_argument("--fit-lr", type=float, help="fit peak LR (default: the fit default, half "
                                                "the base's)")  # fmt: skip
    p.add_argument("--fit-warmup", type=float, default=0.05,
                   help="share of the fit warming up (0.05, the fit default)")  # fmt: skip
    p.add_argument("--freeze", help="fit --freeze spec, e.g. encoder:30")
    p.add_argument("--reset-decoder", action="store_true", help="fit with a fresh decoder B")
    p.add_argument("--encoder-dims", type=int, default=16, help="sae E (16)")
    p.add_argument("--decoder-dims", type=int, default=8, help="sae D (8)")
    p.add_argument("--bottleneck", type=int, default=64, help="sae bottleneck (64)")
    p.add_argument("--seed", type=int, default=0, help="seed of split, order, init (0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "faceswap-bench-fit"),
                   help="where the generated face sets are kept")  # fmt: skip
    p.add_argument("--work", help="keep the runs here; base and scratch runs of the same "
                                  "config are reused (to try fit settings)")  # fmt: skip
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.fit_steps < 1 or args.steps < args.evaluations:
        p.error("--fit-steps must be >= 1 and --steps >= --evaluations")
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    r = run(args)
    print_table(r)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
        print(f"  wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
