#!/usr/bin/env python
"""Swap quality on real faces against training compute: the project's headline benchmark.

For each pair of real clips (A's face is replaced by B's):

    extract A's and B's clips (cached in --work)
    train A + B with a budget of the last mark on the CPU-time clock (or GPU wall time),
        copying the checkpoint at every mark (default 300, 600, 1200 CPU-seconds of training)
    at each mark: convert A's whole clip to B (faces from A's face set, sharpening off)
        and judge the converted clip frame by frame with dlib (faceswap.evaluate.swap_quality)

`--pairs demo` adds the demo's own pair (two identities `faceswap demo` renders from photos).

Figures per mark (one table each, JSON with --json):
  verified   share of swapped frames dlib verifies as B and not A (within 0.6 of B's centroid,
             beyond 0.6 of A's; centroids from the real clips); spread: the share within B's
             own spread (95th percentile of B's real frames' distances); dA, dB: mean distances
  pose       median |yaw|, |pitch|, |roll| difference, swapped vs original (degrees); track:
             the same less each axis's constant offset (B's face shape reads as a fixed tilt)
  mouth      correlation over frames of the mouth opening (inner-lip gap / face height)
  expr       mean correlation over frames of three pose-normalised expression measures (outer-lip
             opening, mouth width, eye opening); both read against the original clip blurred
             to a soft face's detail (printed once per pair: the ceiling landmark noise allows)
  detail     band-pass energy of the inner face at 64 px between the eyes, over B's real faces;
             its ceiling (printed once per pair): what a perfect model of the run's resolution
             keeps of A's own detail through convert's crop and cubic unwarp; "at N px": the
             same at the size A's clip shows the face (N px between the eyes), where the blur a
             viewer sees is not shrunk away
  seam       colour step across the swapped region's edge over the original's step there (1 = none)
  flicker    frame-to-frame change of the face region over the original's
  found      share of output frames in which dlib's detector finds the face

The schedule of a budget run is laid over the whole budget, so an early mark shows the same run
part-way, not a run that was given that much time; the last mark is the headline.

Examples:
  .venv/bin/python scripts/bench_quality.py --quick                # one pair, one 300 s mark
  .venv/bin/python scripts/bench_quality.py --json /tmp/q.json     # both pairs, 300/600/1200 s
  .venv/bin/python scripts/bench_quality.py --pairs d9-d6 --config configs/train/cpu-small.yaml
  .venv/bin/python scripts/bench_quality.py --marks 300,600,1200,2400 --work /tmp/bq
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "clips"
PAIRS = {
    "d9-face2": ("liveportrait_d9.mp4", "retalking_face2_man.mp4"),
    "d9-d6": ("liveportrait_d9.mp4", "liveportrait_d6.mp4"),
    # the demo's own pair (faceswap demo renders it from two photos): not in the default list,
    # which is the real clips; --pairs demo renders it into --work once
    "demo": ("a.mp4", "b.mp4"),
}
REAL_PAIRS = ("d9-face2", "d9-d6")
log = logging.getLogger("bench_quality")


# ---- data --------------------------------------------------------------------------------------


def extract(clip: Path, work: Path) -> Path:
    """Face set of a clip, extracted once with the CLI's defaults and kept in `work`."""
    out = work / "faces" / clip.stem
    if (out / "faceset.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("extracting %s", clip.name)
    subprocess.run([sys.executable, "-m", "faceswap", "extract", str(clip), "-o", str(out)],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return out


def demo_clips(work: Path) -> Path:
    """The demo's two identity clips (`faceswap demo`'s defaults), rendered once into `work`."""
    from faceswap.demo.run import DemoConfig, render_clips

    out = work / "demo-clips"
    if not (out / "b.mp4").is_file():
        out.mkdir(parents=True, exist_ok=True)
        log.info("rendering the demo's clips into %s", out)
        render_clips(DemoConfig(), out)
    return out


def machine_speed() -> dict:
    """What a CPU-second buys here: one thread's best fp32 matmul GFLOP per CPU-second, with the
    CPU's name and PyTorch's kernel level. Sessions' machines differ ~3x in it (an AVX2 EPYC
    against an AVX-512 one), so rows at equal CPU-seconds compare only at equal speed."""
    import torch

    from faceswap.train.runtime import cpu_has_native_bf16

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a = torch.randn(1024, 1024)
    out = torch.empty_like(a)
    torch.mm(a, a, out=out)
    best = 0.0
    for _ in range(5):
        reps, c0 = 0, time.process_time()
        while (spent := time.process_time() - c0) < 0.3:
            torch.mm(a, a, out=out)
            reps += 1
        best = max(best, 2 * 1024**3 * reps / spent / 1e9)
    torch.set_num_threads(threads)
    name = "unknown CPU"
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    return {"cpu": name, "capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": cpu_has_native_bf16(), "gflop_per_cpu_s": round(best, 1)}  # fmt: skip


# ---- training and conversion -----------------------------------------------------------------


def train_with_marks(
    fs_a,
    fs_b,
    run: Path,
    cfg,
    marks: list[float],
    base: str | None = None,
    parts: tuple[str, ...] = (),
) -> dict[float, dict]:
    """Train with a budget of the last mark; copy the checkpoint at each mark. `base`: a run
    or checkpoint whose weights the model starts from (a warm start): `parts` of it, or every
    part when none are named."""
    from faceswap.train.trainer import Trainer, write_run_config
    from faceswap.train.weight_import import init_from

    cfg.budget = marks[-1]
    cfg.budget_clock = "cpu" if cfg.device != "cuda" else "wall"
    cfg.steps = 100_000_000  # the budget decides
    if run.exists():
        shutil.rmtree(run)
    trainer = Trainer(cfg, fs_a, fs_b, run)
    if base is not None:
        parts = parts or tuple(trainer.model.parts())
        _, trainer.lineage = init_from(trainer.model, base, parts)
    write_run_config(run, cfg)
    pending = list(marks)
    kept: dict[float, dict] = {}

    def progress(step: int, info: dict) -> None:
        assert trainer.budget is not None
        spent = trainer.budget.now()
        while pending and (spent >= pending[0] or trainer.finished()) and pending[0] != marks[-1]:
            mark = pending.pop(0)
            path = trainer.save()
            dst = run / "marks" / f"mark-{int(mark):05d}"
            shutil.copytree(path, dst)
            kept[mark] = {"checkpoint": dst, "step": step, "spent": spent, "loss": info["loss"]}
            log.info("mark %d s: step %d, loss %.4f", mark, step, info["loss"])

    t0 = time.perf_counter()
    summary = trainer.train(progress, tensorboard=False)
    last = Path(trainer.save())
    dst = run / "marks" / f"mark-{int(marks[-1]):05d}"
    shutil.copytree(last, dst)
    kept[marks[-1]] = {"checkpoint": dst, "step": summary.step, "spent": trainer.budget.now(),
                       "loss": summary.train_loss}  # fmt: skip
    for m in kept.values():
        m["wall_s"] = time.perf_counter() - t0
    kept["_summary"] = {"samples_per_s": summary.samples_per_second, "val": summary.val_loss,
                        "params": summary.parameters}  # fmt: skip
    return kept


def reuse_marks(run: Path, marks: list[float]) -> dict[float, dict]:
    """The mark checkpoints of a run trained before (--from-run)."""
    import json as _json

    out = {}
    for mark in marks:
        ck = run / "marks" / f"mark-{int(mark):05d}"
        if not (ck / "state.json").is_file():
            print(f"bench_quality: --from-run: {ck} not found (train that tag first)",
                  file=sys.stderr)  # fmt: skip
            raise SystemExit(2)
        state = _json.loads((ck / "state.json").read_text())
        out[mark] = {"checkpoint": ck, "step": int(state["step"]), "loss": None}
    return out


def read_run_config(run: Path):
    from faceswap.train.trainer import read_run_config as read

    return read(run)


def convert_at(clip: Path, checkpoint: Path, faces: Path, out: Path, convert_cfg: dict) -> Path:
    from faceswap.config import from_dict
    from faceswap.convert.config import ConvertConfig
    from faceswap.convert.pipeline import convert

    cfg = from_dict(ConvertConfig, {**convert_cfg, "sharpen": 0.0}, "bench convert")
    convert(clip, checkpoint, out, cfg, alignments=faces, overwrite=True)
    return out


# ---- the benchmark ---------------------------------------------------------------------------


def train_config(path: str | None, overrides: list[str]):
    from faceswap.config import load_yaml
    from faceswap.train.config import apply_device_defaults, train_config_from

    data = load_yaml(path) if path else {}
    for item in overrides:
        key, _, value = item.partition("=")
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = json.loads(value) if value[:1] in "[{0123456789-tfn" else value
    cfg = train_config_from(data, path or "bench defaults")
    apply_device_defaults(cfg, data)  # no model named: what `faceswap train` builds
    return cfg


def _cached(path: Path, compute: Callable[[], Any]) -> Any:
    """compute()'s JSON result, kept at `path` (computed once per --work)."""
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value))
    return value


def blurred_ceiling(clip: Path, fs, work: Path, judge) -> dict:
    """clip_quality.blurred_reference of A's clip, cached in --work (it depends on the clip
    and the judge only)."""
    from faceswap.evaluate.clip_quality import blurred_reference

    # -v2: with the mouth gap (a cache from before lacks it)
    return _cached(work / f"blurred-{clip.stem}-v2.json",
                   lambda: blurred_reference(str(clip), fs, judge))  # fmt: skip


def detail_ceiling(clip: Path, fs, work: Path, resolution: int,
                   iod: float | None = None) -> float | None:  # fmt: skip
    """clip_quality.resolution_ceiling of A's clip (at 64 px between the eyes, or `iod`),
    cached in --work."""
    from faceswap.evaluate.clip_quality import resolution_ceiling
    from faceswap.evaluate.swap_quality import DETAIL_IOD

    at = "" if iod is None else f"-iod{round(iod)}"  # the 64 px file keeps its old name
    return _cached(work / f"detail-ceiling-{clip.stem}-{resolution}{at}.json",
                   lambda: resolution_ceiling(str(clip), fs, resolution, iod=iod or DETAIL_IOD))  # fmt: skip


def run_pair(name: str, args, judge) -> list[dict]:
    from faceswap import faceset as fsmod
    from faceswap.evaluate.clip_quality import judge_video, references, source_scale

    work = Path(args.work)
    folder = demo_clips(work) if name == "demo" else CLIPS
    clip_a, clip_b = (folder / c for c in PAIRS[name])
    fa, fb = extract(clip_a, work), extract(clip_b, work)
    fs_a, fs_b = fsmod.load(fa), fsmod.load(fb)
    refs = references(fs_a, fs_b, str(clip_b), clip_iod=source_scale(fs_a))
    ceiling = blurred_ceiling(clip_a, fs_a, work, judge)
    print(f"{name}: A's clip blurred to a soft face (sigma IOD/20) scores mouth "
          f"{fmt(ceiling['mouth_corr'])} (gap {fmt(ceiling.get('mouth_gap'), 3)}), expression "
          f"{fmt(ceiling['expression_corr'])} against itself")  # fmt: skip
    cfg = train_config(args.config, args.set)
    cfg.seed = args.seed
    run = work / "runs" / f"{name}-{args.from_run or args.tag}-s{args.seed}"
    if args.from_run:  # judge another convert setting on a run trained before
        marks = reuse_marks(run, args.marks)
        cfg = read_run_config(run)
    else:
        t = time.process_time()
        marks = train_with_marks(fs_a, fs_b, run, cfg, args.marks, args.init_from,
                                 args.init_parts)  # fmt: skip
        log.info("trained %s in %.0f CPU-s", name, time.process_time() - t)
    res = cfg.model.resolution
    ceiling["detail"] = detail_ceiling(clip_a, fs_a, work, res)
    ceiling["detail_clip"] = detail_ceiling(clip_a, fs_a, work, res, refs["clip_iod"])
    print(
        f"{name}: a perfect {res} px face at A's scale keeps {fmt(ceiling['detail'])} of the "
        f"real face's detail (the detail figure's ceiling); {fmt(ceiling['detail_clip'])} "
        f"measured at the {refs['clip_iod']:.0f} px between the eyes that A's clip shows"
    )
    convert_cfg = json.loads(args.convert) if args.convert else {}
    speed = machine_speed()
    print(f"{name}: this machine: {speed['cpu']}, {speed['capability']}, fp32 matmul "
          f"{speed['gflop_per_cpu_s']:.0f} GFLOP per CPU-second (one thread)")  # fmt: skip
    rows = []
    for mark in args.marks:
        m = marks[mark]
        # a convert setting judged on another tag's run gets videos of its own
        video = run.name if args.tag == (args.from_run or args.tag) else f"{run.name}-{args.tag}"
        out = work / "out" / f"{video}-{int(mark)}.mp4"
        if args.rejudge and out.is_file():
            log.info("judging %s again (no convert)", out)
        else:
            convert_at(clip_a, m["checkpoint"], fa, out, convert_cfg)
        res = judge_video(str(out), str(clip_a), fs_a, refs, judge)
        rows.append({"pair": name, "tag": args.tag, "seed": args.seed, "mark_s": mark,
                     "step": m["step"], "train_loss": m["loss"], **res, "video": str(out),
                     "blurred_original": ceiling,
                     "model": f"{cfg.model.arch} {cfg.model.resolution}px",
                     "machine": speed})  # fmt: skip
        print_row(rows[-1])
    return rows


def fmt(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def print_row(r: dict) -> None:
    p, t = r["pose"], r.get("pose_tracking") or {}
    print(f"{r['pair']:<9} {r['tag']:<10} {int(r['mark_s']):>5}s step {r['step']:>5} | "
          f"verified {fmt(100 * r['verified_b'] if r['verified_b'] is not None else None, 0)}% "
          f"spread {fmt(100 * r['within_spread_b'] if r['within_spread_b'] is not None else None, 0)}% "
          f"dA {fmt(r['dist_a'])} dB {fmt(r['dist_b'])} | pose {fmt(p['yaw'], 1)}/"
          f"{fmt(p['pitch'], 1)}/{fmt(p['roll'], 1)} track {fmt(t.get('yaw'), 1)}/"
          f"{fmt(t.get('pitch'), 1)}/{fmt(t.get('roll'), 1)} | mouth {fmt(r['mouth_corr'])} "
          f"gap {fmt(r.get('mouth_gap'), 3)} "
          f"expr {fmt(r.get('expression_corr'))} | "
          f"detail {fmt(r['detail'])} (at {fmt(r.get('clip_iod'), 0)} px "
          f"{fmt(r.get('detail_clip'))}) | seam {fmt(r['seam'])} | flicker {fmt(r['flicker'])} | "
          f"found {fmt(100 * r['found'], 0)}%", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("Examples:")[1])  # fmt: skip
    ap.add_argument("--pairs", default=",".join(REAL_PAIRS),
                    help=f"comma list of {', '.join(PAIRS)} (default: the real ones)")  # fmt: skip
    ap.add_argument(
        "--marks",
        default="300,600,1200",
        help="CPU-seconds (GPU: seconds) of training at which to judge",
    )
    ap.add_argument("--quick", action="store_true", help="first pair, one 300 s mark")
    ap.add_argument("--config", help="train config YAML (default: the train defaults)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a train config field, e.g. schedule.lr=3e-4 (repeatable)",
    )
    ap.add_argument("--convert", help="convert config overrides as JSON")
    ap.add_argument("--tag", default="defaults", help="name of this configuration in the tables")
    ap.add_argument("--from-run", metavar="TAG",
                    help="no training: judge the marks of the run trained under TAG (e.g. with "
                         "another --convert)")  # fmt: skip
    ap.add_argument(
        "--rejudge",
        action="store_true",
        help="with --from-run: judge the videos converted before again (no convert)",
    )
    ap.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT",
                    help="start every pair's model from this base's weights (a warm start; "
                         "its training time is not counted in the marks)")  # fmt: skip
    ap.add_argument("--init-parts", metavar="PARTS",
                    help="with --init-from: the parts to take, e.g. encoder (default: all)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/bench_quality", help="cache and runs folder")
    ap.add_argument("--json", help="append the rows to this JSON-lines file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    pairs = args.pairs.split(",")
    try:
        args.marks = sorted(float(m) for m in args.marks.split(","))
        if not args.marks or args.marks[0] <= 0:
            raise ValueError
    except ValueError:
        print(f"bench_quality: --marks {args.marks!r}: give seconds > 0, e.g. 300,600,1200",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.quick:
        pairs, args.marks = pairs[:1], [300.0]
    for p in pairs:
        if p not in PAIRS:
            print(f"bench_quality: --pairs: unknown pair {p!r} ({', '.join(PAIRS)})",
                  file=sys.stderr)  # fmt: skip
            return 2
    from faceswap.errors import BadInput

    try:  # a bad --config, --set or --convert is one line
        train_config(args.config, args.set)
        if args.init_from:
            from faceswap.train.checkpoint import resolve_checkpoint

            resolve_checkpoint(args.init_from)
        from faceswap.train.weight_import import parse_parts

        args.init_parts = parse_parts(args.init_parts, "--init-parts") if args.init_parts else ()
        if args.init_parts and not args.init_from:
            raise ValueError("--init-parts needs --init-from (the base to take them from)")
        if args.convert:
            try:
                json.loads(args.convert)
            except ValueError as exc:
                raise ValueError(f"--convert is not JSON ({exc})") from None
    except (BadInput, ValueError) as exc:
        print(f"bench_quality: {exc}", file=sys.stderr)
        return 2
    if not CLIPS.is_dir():  # after the options: a bad one is named wherever the clips are
        print(f"bench_quality: {CLIPS} not found (the shared real clips)", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    from faceswap.evaluate.clip_quality import FrameJudge

    judge = FrameJudge()
    for p in pairs:
        rows = run_pair(p, args, judge)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(json.dumps(r, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
