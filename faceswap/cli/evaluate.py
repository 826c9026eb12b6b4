"""`faceswap evaluate` and `faceswap report`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from faceswap.cli.common import Command, emit, progress_bar
from faceswap.errors import BadInput

log = logging.getLogger("faceswap")

EVALUATE_EXAMPLES = """examples:
  faceswap evaluate -m runs/ab -A faces/alice -B faces/bob
  faceswap evaluate -m runs/ab -A faces/alice -B faces/bob --checkpoint latest --max-faces 200
  faceswap evaluate -m runs/ab -A faces/alice -B faces/bob --other faces/carol --json
  faceswap extract swap.mp4 -o faces/swap && faceswap extract clip.mp4 -o faces/clip
  faceswap evaluate -m runs/ab -A faces/alice -B faces/bob --clip faces/swap --clip-source faces/clip
      (temporal stability: landmark jitter of the converted clip against the source clip)
  faceswap evaluate -m runs/ab -A faces/alice -B faces/bob --swap-video swap.mp4 \
      --source-video alice.mp4
      (the swap-quality figures of docs/quality.md: verified as B, pose, mouth, detail, seam,
      flicker, found; -A, or --clip-source, must be the face set of the source video)

Writes RUN/evaluation.json (latest), adds a line to RUN/evaluations.jsonl and writes the
numbers as TensorBoard scalars eval/* at the checkpoint's step (tensorboard --logdir RUN/logs).
"""

REPORT_EXAMPLES = """examples:
  faceswap report faces/alice faces/bob -o reports/ab
  faceswap report faces/alice faces/bob --target faces/clip -o reports/ab
  faceswap report faces/alice faces/bob --target faces/clip --run runs/ab -o reports/ab
  faceswap report faces/alice faces/bob -o reports/ab --identity-sample 50 --json

Open REPORT_DIR/report.html in a browser (one self-contained file); REPORT_DIR/report.json holds
the same numbers.
"""


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--run", dest="run", required=True, metavar="RUN_DIR",
                   help="run folder made by faceswap train")  # fmt: skip
    p.add_argument("-A", dest="faceset_a", required=True, help="face set of identity A")
    p.add_argument("-B", dest="faceset_b", required=True, help="face set of identity B")
    p.add_argument("--clip", metavar="FACESET", help="face set extracted from a converted video")
    p.add_argument("--clip-source", metavar="FACESET",
                   help="face set of the source clip's same frames (default: -A)")  # fmt: skip
    p.add_argument("--swap-video", metavar="VIDEO",
                   help="a converted video: judge it frame by frame (docs/quality.md)")  # fmt: skip
    p.add_argument("--source-video", metavar="VIDEO",
                   help="the video --swap-video was converted from")  # fmt: skip
    p.add_argument("--other", action="append", default=[], metavar="FACESET",
                   help="another identity for retrieval (repeatable)")  # fmt: skip
    p.add_argument("--checkpoint", help="best (default), latest, or a checkpoint folder")
    p.add_argument("--max-faces", type=int, help="faces per group (64)")
    p.add_argument("--analysis-size", type=int, help="upscale crops to this for dlib (256)")
    p.add_argument("--mask", help="PSNR/SSIM mask: hull (default), extended or components")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def _config(cls, args: argparse.Namespace, names: dict[str, str]):
    from faceswap.config import from_dict

    data = {field: getattr(args, attr) for field, attr in names.items()
            if getattr(args, attr, None) is not None}  # fmt: skip
    return from_dict(cls, data, "options")


def _load(path: str | None, what: str):
    from faceswap.cli.common import load_faceset

    if path is None:
        return None
    return load_faceset(path, what)


def _run_evaluate(args: argparse.Namespace) -> int:
    from faceswap.evaluate.evaluate import EvaluateConfig, evaluate_run, save

    cfg = _config(EvaluateConfig, args, {"checkpoint": "checkpoint", "max_faces": "max_faces",
                  "analysis_size": "analysis_size", "mask": "mask", "device": "device"})  # fmt: skip
    if args.no_tensorboard:
        cfg.tensorboard = False
    run = Path(args.run)
    if not (run / "config.yaml").is_file():
        raise BadInput(f"-m {run}: not a faceswap run folder (no config.yaml)")
    fs_a, fs_b = _load(args.faceset_a, "-A"), _load(args.faceset_b, "-B")
    clip, src = _load(args.clip, "--clip"), _load(args.clip_source, "--clip-source")
    if src is not None and clip is None and args.swap_video is None:
        raise BadInput("--clip-source needs --clip or --swap-video")
    for flag, path in (("--swap-video", args.swap_video), ("--source-video", args.source_video)):
        if path is not None and not Path(path).is_file():
            raise BadInput(f"{flag} {path}: no such video file")
    if (args.swap_video is None) != (args.source_video is None):
        raise BadInput("--swap-video and --source-video go together (the swap and its source)")
    others = {}
    for i, path in enumerate(args.other):
        others[f"other{i + 1}"] = _load(path, "--other")
    bar = progress_bar(None, "evaluate", unit="face")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = evaluate_run(run, fs_a, fs_b, cfg, clip=clip, clip_source=src, others=others,
                              progress=progress)  # fmt: skip
    finally:
        bar.close()
    if args.swap_video is not None:
        result["swap_quality"] = _swap_quality(args, src or fs_a, fs_a, fs_b)
    save(run, result, tensorboard=cfg.tensorboard)
    from faceswap.train.maturity import warn_if_untrained

    warn_if_untrained(run)  # after the work: a bad input stays one line

    def human() -> None:
        _print_evaluation(result)
        if "swap_quality" in result:
            _print_swap_quality(result["swap_quality"])
        print(f"  written to {run / 'evaluation.json'}"
              + (f"; tensorboard --logdir {run / 'logs'}" if cfg.tensorboard else ""))  # fmt: skip

    emit(args, result, human)
    return 0


def _swap_quality(args: argparse.Namespace, fs_source, fs_a, fs_b) -> dict[str, Any]:
    from faceswap.evaluate.clip_quality import JUDGE_FRAMES, judge_video, references, source_scale

    try:
        refs = references(fs_a, fs_b, clip_iod=source_scale(fs_source))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    bar = progress_bar(JUDGE_FRAMES, "judge", unit="frame")
    try:
        out = judge_video(args.swap_video, args.source_video, fs_source, refs,
                          tick=lambda: bar.update(1))  # fmt: skip
    finally:
        bar.close()
    if not out["frames_judged"]:
        raise BadInput(f"--swap-video {args.swap_video}: no frame has a face of "
                       f"{fs_source.root} (is it the face set of --source-video?)")  # fmt: skip
    return out


def _print_swap_quality(q: dict[str, Any]) -> None:
    p, t = q["pose"], q["pose_tracking"]
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    print(f"  swap quality ({q['frames_judged']} frames; docs/quality.md): verified as B "
          f"{pct(q['verified_b'])} (within B's spread {pct(q['within_spread_b'])}), "
          f"distance A {_num(q['dist_a'], '.2f')} B {_num(q['dist_b'], '.2f')}")  # fmt: skip
    print(f"    pose error yaw/pitch/roll {_num(p['yaw'], '.1f')}/{_num(p['pitch'], '.1f')}/"
          f"{_num(p['roll'], '.1f')} deg (less B's constant tilt: {_num(t['yaw'], '.1f')}/"
          f"{_num(t['pitch'], '.1f')}/{_num(t['roll'], '.1f')}), mouth corr "
          f"{_num(q['mouth_corr'], '.2f')} (mouth gap {_num(q.get('mouth_gap'), '.3f')} of the "
          f"face height), expression corr "
          f"{_num(q.get('expression_corr'), '.2f')}, detail "
          f"{_num(q['detail'], '.2f')} of B's ({_num(q.get('detail_clip'), '.2f')} at the clip's "
          f"{_num(q.get('clip_iod'), '.0f')} px between the eyes), seam {_num(q['seam'], '.2f')}, flicker "
          f"{_num(q['flicker'], '.2f')}, face found {pct(q['found'])}")  # fmt: skip


def _num(v: Any, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def _print_evaluation(r: dict[str, Any]) -> None:
    print(f"evaluated {r['run']} at step {r['step']} ({r['model']['arch']} "
          f"{r['model']['resolution']}px, {Path(r['checkpoint']).name})")  # fmt: skip
    print("  reconstruction (masked)   train     val       gap (train - val)")
    for side in ("a", "b"):
        rec = r["reconstruction"][side]
        for m, f in (("psnr", ".2f"), ("ssim", ".4f")):
            print(f"    {m.upper()} {side.upper()}->{side.upper()}         "
                  f"{_num(rec['train'][m]['mean'], f):>8}  {_num(rec['val'][m]['mean'], f):>8}  "
                  f"{_num(rec['gap'][m], f):>8}")  # fmt: skip
    ident = r["identity"]
    dist = ident["distance_to"]
    print(f"  identity of {ident['faces']} swaps A->B: distance to B {_num(dist['b']['mean'])}, "
          f"to A {_num(dist['a']['mean'])}; nearest is B for "
          f"{_num(100 * ident['retrieval'] if ident['retrieval'] is not None else None, '.0f')}%")  # fmt: skip
    inputs = ident["inputs"]
    print(f"    (their inputs: nearest is A for "
          f"{_num(100 * inputs['retrieval'] if inputs['retrieval'] is not None else None, '.0f')}%; "
          f"centroids A-B {_num(ident['centroid_distance'].get('a-b'))})")  # fmt: skip
    p, e = r["pose"], r["expression"]
    print(f"  pose error (degrees): yaw {_num(p['yaw']['mean'], '.1f')}, pitch "
          f"{_num(p['pitch']['mean'], '.1f')}, roll {_num(p['roll']['mean'], '.1f')}; "
          f"expression error (IOD): mouth {_num(e['mouth']['mean'])}, eyes "
          f"{_num(e['eyes']['mean'])}")  # fmt: skip
    det = r["faces_detected"]
    if det["swaps"] is not None:
        print(f"  dlib detects a face in {100 * det['swaps']:.0f}% of swaps "
              f"({100 * (det['inputs'] or 0):.0f}% of their inputs)"
              + ("; identity and pose numbers mean little until the model draws faces"
                 if det["swaps"] < 0.5 else ""))  # fmt: skip
    t = r.get("temporal")
    if t:
        print(f"  temporal ({t['frames']} frames): jitter swap/source {_num(t['jitter_ratio'], '.2f')}, "
              f"added jitter {_num(t['added_jitter']['mean'], '.4f')} IOD")  # fmt: skip
    for side, f in r["facesets"].items():
        if not f["split_matches_training"]:
            print(f"  warning: face set {side.upper()} changed since training; the validation "
                  "faces are not the held-out ones")  # fmt: skip


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("faceset_a", metavar="FACESET_A", help="face set of identity A")
    p.add_argument("faceset_b", metavar="FACESET_B", help="face set of identity B")
    p.add_argument("--target", metavar="FACESET", help="face set of the clip you will convert")
    p.add_argument("--run", metavar="RUN_DIR", help="a training run: curves, preview, evaluation")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR",
                   help="folder for report.html and report.json")  # fmt: skip
    p.add_argument("--bin-degrees", type=float, help="heat map bin size in degrees (10)")
    p.add_argument("--radius", type=float, help="coverage radius in degrees (10)")
    p.add_argument("--min-faces", type=int, help="faces within the radius that cover a pose (3)")
    p.add_argument("--identity-sample", type=int,
                   help="faces embedded per set without stored embeddings (200)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the numbers as JSON on stdout")


def _run_report(args: argparse.Namespace) -> int:
    from faceswap.evaluate.report import ReportConfig, write_report

    cfg = _config(ReportConfig, args, {"bin_degrees": "bin_degrees", "radius": "radius",
                  "min_faces": "min_faces", "identity_sample": "identity_sample"})  # fmt: skip
    fs_a, fs_b = _load(args.faceset_a, "FACESET_A"), _load(args.faceset_b, "FACESET_B")
    target = _load(args.target, "--target")
    run = Path(args.run) if args.run else None
    if run is not None and not (run / "config.yaml").is_file():
        raise BadInput(f"--run {run}: not a faceswap run folder (no config.yaml)")
    out = Path(args.output)
    numbers = write_report(out, fs_a, fs_b, target, run, cfg)

    def human() -> None:
        print(f"report {out / 'report.html'} (numbers in {out / 'report.json'})")
        for r in numbers["recommendations"]:
            print(f"  {'!' if r['level'] == 'warn' else '-'} {r['text']}")

    emit(args, numbers, human)
    return 0


EVALUATE = Command(
    "measure a trained run: reconstruction, identity, pose, expression, temporal stability",
    EVALUATE_EXAMPLES,
    _add_evaluate,
    _run_evaluate,
)

REPORT = Command(
    "HTML report on face sets (pose coverage, quality, identity) and a run's training",
    REPORT_EXAMPLES,
    _add_report,
    _run_report,
)
