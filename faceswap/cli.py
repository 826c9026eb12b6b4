"""Command line: parsing and printing only; the work happens in the library.

Exit codes: 0 success, 2 bad input or usage (one line, no traceback), 1 internal error,
130 interrupted (work so far is saved).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faceswap import __version__
from faceswap.errors import BadInput

log = logging.getLogger("faceswap")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def _out(args: argparse.Namespace, data: Any, human: Callable[[], None]) -> None:
    """--json prints the machine-readable summary on stdout; otherwise the human one."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        human()


def _progress(total: int | None, desc: str, unit: str = "frame", show: bool = True):
    from tqdm import tqdm

    return tqdm(total=total or None, desc=desc, unit=unit, dynamic_ncols=True, leave=False,
                disable=not show or not sys.stderr.isatty() or None)  # fmt: skip


def _frames(text: str | None) -> tuple[int, int | None]:
    if not text:
        return 0, None
    try:
        a, _, b = text.partition("-")
        start = int(a) if a else 0
        end = int(b) if b else None
    except ValueError:
        raise BadInput(f"--frames {text!r}: expected START-END, e.g. 120-480 or 120-") from None
    return start, end


# ---- extract ----------------------------------------------------------------------------

EXTRACT_EXAMPLES = """examples:
  faceswap extract interview.mp4 -o faces/alice
  faceswap extract clips/*.mp4 photos/ -o faces/alice --identity alice.jpg
  faceswap extract party.mp4 -o faces/bob --identity bob1.jpg bob2.jpg --identity-threshold 0.55
  faceswap extract film.mkv -o faces/x --frames 1200-4800 --every-nth 2 --size 512 --centering head
  faceswap extract film.mkv -o faces/x --detector s3fd --aligner fan --weights-dir ~/weights
"""


def _add_extract(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="video files, image folders or globs")
    p.add_argument("-o", "--output", required=True, help="face set folder (created or resumed)")
    p.add_argument("--config", help="YAML file of extract settings (flags override it)")
    p.add_argument("--detector", help="auto (default), dlib-hog, dlib-cnn or s3fd")
    p.add_argument("--aligner", help="auto (default), dlib or fan")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--weights-dir", help="folder with face-alignment weights (s3fd, fan)")
    p.add_argument("--detect-size", type=int, help="longest side the detector sees (default 640)")
    p.add_argument("--upsample", type=int, help="dlib upsampling steps for small faces (0-3)")
    p.add_argument("--min-score", type=float, help="drop detections scoring below this")
    p.add_argument("--min-size", type=int, help="drop faces smaller than this many pixels")
    p.add_argument("--max-faces", type=int, help="keep the N largest faces per frame")
    p.add_argument("--every-nth", type=int, help="process every n-th video frame")
    p.add_argument("--frames", help="video frames START-END, END not included (120-480, 120-)")
    p.add_argument("--size", type=int, help="aligned face size in pixels (default 256)")
    p.add_argument("--centering", help="face (default), head or legacy")
    p.add_argument("--image-format", help="png (default) or jpg")
    p.add_argument("--no-embed", action="store_true", help="skip identity embeddings")
    p.add_argument("--embed-every", type=int, help="embed one face per track every n frames")
    p.add_argument("--identity", nargs="+", metavar="REF", help="keep only this person's faces")
    p.add_argument("--identity-threshold", type=float, help="max distance to a reference (0.6)")
    p.add_argument("--no-track", action="store_true", help="run the detector on every frame")
    p.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    p.add_argument("--force", action="store_true", help="redo these inputs instead of resuming")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _run_extract(args: argparse.Namespace) -> int:
    from faceswap.config import ExtractConfig, load_config
    from faceswap.extract.pipeline import extract

    start, end = _frames(args.frames)
    overrides = {
        "detector": args.detector,
        "aligner": args.aligner,
        "device": args.device,
        "weights_dir": args.weights_dir,
        "detect_size": args.detect_size,
        "upsample": args.upsample,
        "min_score": args.min_score,
        "min_size": args.min_size,
        "max_faces": args.max_faces,
        "every_nth": args.every_nth,
        "start_frame": start if args.frames else None,
        "end_frame": end,
        "size": args.size,
        "centering": args.centering,
        "image_format": args.image_format,
        "embed": False if args.no_embed else None,
        "embed_every": args.embed_every,
        "identity_threshold": args.identity_threshold,
        "track": False if args.no_track else None,
        "workers": args.workers,
    }
    cfg = load_config(ExtractConfig, args.config, overrides)
    bar = _progress(None, "extract")

    def progress(frames: int, kept: int, todo: int) -> None:
        if bar.total != todo:
            bar.total = todo
        bar.update(frames)
        bar.set_postfix(faces=kept, refresh=False)

    try:
        summary = extract(args.inputs, args.output, cfg, identity=args.identity,
                          force=args.force, progress=progress)  # fmt: skip
    finally:
        bar.close()
    s = summary

    def human() -> None:
        print(f"extracted {s.output} with {s.detector} + {s.aligner} on {s.device}")
        print(f"  frames read {s.frames_read} of {s.frames_total}"
              f" (resumed past {s.frames_resumed}), without a face {s.frames_without_face}")  # fmt: skip
        print(f"  faces kept {s.faces_kept}, face set now holds {s.faces_in_set}")
        for reason, n in sorted(s.rejected.items()):
            print(f"  faces rejected to rejected/ ({reason}): {n}")
        for reason, n in sorted(s.dropped.items()):
            print(f"  detections not kept ({reason}): {n}")
        print(f"  {s.seconds:.1f} s, {s.frames_per_second:.1f} frames/s")
        if s.frames_read and not s.faces_found:
            print("  no face was found: check the input, or try --upsample 1 or --detector s3fd")

    _out(args, dataclasses.asdict(s), human)
    return 0


# ---- faceset ------------------------------------------------------------------------------

FACESET_EXAMPLES = """examples:
  faceswap faceset info faces/alice
  faceswap faceset sort faces/alice --by blur --top 20
  faceswap faceset sort faces/alice --by identity --reverse --export /tmp/alice-by-identity
  faceswap faceset filter faces/alice --auto --dry-run
  faceswap faceset filter faces/alice --blur-below 30 --identity-above 0.55 --identity alice.jpg
  faceswap faceset dedupe faces/alice
  faceswap faceset remove faces/alice clip_1a2b3c4d_f000120_0 --reason "hand over face"
  faceswap faceset restore faces/alice --all
"""


def _add_faceset(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_Parser)
    info = sub.add_parser("info", help="counts and pose/blur/identity statistics")
    info.add_argument("faceset")
    info.add_argument("--json", action="store_true", help="print as JSON")
    srt = sub.add_parser("sort", help="list faces ordered by blur, yaw, pitch, identity, ...")
    srt.add_argument("faceset")
    srt.add_argument("--by", required=True, help="blur, yaw, pitch, roll, identity, residual, "
                                                 "jitter, score or frame")  # fmt: skip
    srt.add_argument("--reverse", action="store_true", help="largest first")
    srt.add_argument("--top", type=int, default=0, help="show (and export) only the first N")
    srt.add_argument("--export", metavar="DIR", help="write the faces in this order into DIR")
    srt.add_argument("--json", action="store_true", help="print as JSON")
    flt = sub.add_parser("filter", help="move outliers to rejected/ (never deletes)")
    flt.add_argument("faceset")
    flt.add_argument("--auto", action="store_true", help="thresholds from the set's statistics")
    flt.add_argument("--strictness", type=float, default=3.0, help="--auto: robust z (3.0)")
    for name, what in [
        ("blur-below", "blurry: blur score below"),
        ("residual-above", "misaligned: alignment residual above"),
        ("jitter-above", "unstable landmarks: jitter above"),
        ("identity-above", "wrong person: identity distance above"),
        ("yaw-beyond", "|yaw| above (degrees)"),
        ("pitch-beyond", "|pitch| above (degrees)"),
        ("score-below", "detector score below"),
    ]:
        flt.add_argument(f"--{name}", type=float, help=what)
    flt.add_argument("--identity", nargs="+", metavar="REF", help="reference photos of the person")
    flt.add_argument("--dry-run", action="store_true", help="list, move nothing")
    flt.add_argument("--json", action="store_true", help="print as JSON")
    dd = sub.add_parser("dedupe", help="move near-duplicate faces to rejected/")
    dd.add_argument("faceset")
    dd.add_argument("--threshold", type=int, default=6, help="max hash distance (0-64, 6)")
    dd.add_argument("--dry-run", action="store_true", help="list, move nothing")
    dd.add_argument("--json", action="store_true", help="print as JSON")
    rm = sub.add_parser("remove", help="move named faces to rejected/")
    rm.add_argument("faceset")
    rm.add_argument("names", nargs="+", help="face names (file names without extension)")
    rm.add_argument("--reason", default="removed by hand", help="why (kept in the index)")
    rm.add_argument("--json", action="store_true", help="print as JSON")
    rs = sub.add_parser("restore", help="bring rejected faces back")
    rs.add_argument("faceset")
    rs.add_argument("names", nargs="*", help="face names; none with --all")
    rs.add_argument("--all", action="store_true", help="restore every rejected face")
    rs.add_argument("--json", action="store_true", help="print as JSON")


def _refs(paths: list[str] | None):
    if not paths:
        return None
    from faceswap.config import ExtractConfig
    from faceswap.extract.finder import Backends, FaceFinder
    from faceswap.extract.pipeline import identity_references

    finder = FaceFinder(ExtractConfig(), Backends("dlib-hog", "dlib", "cpu"))
    return identity_references(paths, finder)


def _print_moved(flagged, verb: str, dry: bool) -> None:
    for face, reason in flagged:
        print(f"  {face.name}: {reason}")
    print(f"{'would move' if dry else verb} {len(flagged)} face(s)"
          f"{'' if dry else ' to rejected/'}")  # fmt: skip


def _run_faceset(args: argparse.Namespace) -> int:
    from faceswap import faceset as fsmod

    fs = fsmod.load(args.faceset)
    dry = getattr(args, "dry_run", False)
    if args.action in ("filter", "dedupe", "remove", "restore") and not dry:
        with fsmod.writer_lock(fs.root):
            # reload under the lock: another writer may have saved since the first load
            return _faceset_action(args, fsmod.load(args.faceset))
    return _faceset_action(args, fs)


def _faceset_action(args: argparse.Namespace, fs) -> int:
    from faceswap import curate

    if args.action == "info":
        data = curate.info(fs)

        def human() -> None:
            print(f"{fs.root}: {data['faces']} faces ({data['rejected']} rejected), "
                  f"{data['sources']} sources, {fs.size}px {fs.centering}")  # fmt: skip
            for reason, n in data["rejected_by_reason"].items():
                print(f"  rejected ({reason}): {n}")
            for key in ("yaw", "pitch", "roll", "blur", "residual", "jitter", "score"):
                st = data[key]
                if st:
                    print(f"  {key:9s} min {st['min']:9.3f}  p5 {st['p5']:9.3f}  median "
                          f"{st['median']:9.3f}  p95 {st['p95']:9.3f}  max {st['max']:9.3f}")  # fmt: skip
            ident = data["identity"]
            if ident:
                print(f"  identity: median distance to centroid {ident['centroid_distance']['median']:.3f}, "
                      f"{ident['beyond_threshold']} faces beyond 0.6 (other people?)")  # fmt: skip
            print(f"  near-duplicates: {data['near_duplicates']}")
            bins = " ".join(f"{b['from']:+d}:{b['count']}" for b in data["yaw_histogram"])
            print(f"  yaw histogram (15 degree bins): {bins}")

        _out(args, data, human)
    elif args.action == "sort":
        ranked = curate.sort_faces(fs, args.by, reverse=args.reverse)
        shown = ranked[: args.top] if args.top else ranked
        exported = curate.export_sorted(fs, shown, Path(args.export)) if args.export else 0
        data = {"by": args.by, "faces": [{"name": f.name, "value": v} for f, v in shown],
                "exported": exported}  # fmt: skip

        def human() -> None:
            for f, v in shown:
                print(f"{v:12.4f}  {f.file}")
            if args.export:
                print(f"wrote {exported} faces in {args.by} order to {args.export}")

        _out(args, data, human)
    elif args.action == "filter":
        rule = curate.auto_rule(fs, args.strictness) if args.auto else curate.FilterRule()
        for name in ("blur_below", "residual_above", "jitter_above", "identity_above",
                     "yaw_beyond", "pitch_beyond", "score_below"):  # fmt: skip
            if getattr(args, name) is not None:
                setattr(rule, name, getattr(args, name))
        refs = _refs(args.identity)
        if refs is not None and rule.identity_above is None:
            rule.identity_above = 0.6  # dlib's same-person distance
        if rule == curate.FilterRule():
            raise BadInput("faceset filter: give --auto or at least one threshold option")
        flagged = curate.find_outliers(fs, rule, refs)
        moved = 0 if args.dry_run else curate.move_to_rejected(fs, flagged)
        data = {"rule": dataclasses.asdict(rule), "dry_run": args.dry_run, "moved": moved,
                "flagged": [{"name": f.name, "reason": r} for f, r in flagged]}  # fmt: skip
        _out(args, data, lambda: _print_moved(flagged, "moved", args.dry_run))
    elif args.action == "dedupe":
        pairs = curate.find_duplicates(fs, args.threshold)
        flagged = [(dup, f"near-duplicate (of {kept.name})") for dup, kept in pairs]
        moved = 0 if args.dry_run else curate.move_to_rejected(fs, flagged)
        data = {"threshold": args.threshold, "dry_run": args.dry_run, "moved": moved,
                "flagged": [{"name": f.name, "reason": r} for f, r in flagged]}  # fmt: skip
        _out(args, data, lambda: _print_moved(flagged, "moved", args.dry_run))
    elif args.action == "remove":
        faces = curate.select(fs, args.names)
        moved = curate.move_to_rejected(fs, [(f, args.reason) for f in faces])
        _out(args, {"moved": moved}, lambda: print(f"moved {moved} face(s) to rejected/"))
    elif args.action == "restore":
        if not args.names and not args.all:
            raise BadInput("faceset restore: name faces or pass --all")
        n = curate.restore(fs, None if args.all else args.names)
        _out(args, {"restored": n}, lambda: print(f"restored {n} face(s)"))
    return 0


# ---- train --------------------------------------------------------------------------------

TRAIN_EXAMPLES = """examples:
  faceswap train -A faces/alice -B faces/bob -o runs/alice2bob --model original
  faceswap train -A faces/alice -B faces/bob -o runs/ab256 --model sae-256 --batch-size 32
  faceswap train -A faces/alice -B faces/bob -o runs/ab --config configs/train/cpu-small.yaml
  faceswap train -A faces/alice -B faces/bob -o runs/alice2bob --resume --steps 200000
  tensorboard --logdir runs/alice2bob/logs
  torchrun --nproc_per_node=2 -m faceswap train -A faces/alice -B faces/bob -o runs/ab2
      (data-parallel on 2 GPUs: --batch-size faces per side per GPU; rank 0 writes the run)
"""


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("-A", dest="faceset_a", required=True, help="face set of identity A")
    p.add_argument("-B", dest="faceset_b", required=True, help="face set of identity B")
    p.add_argument("-o", "--output", required=True, help="run folder (created, or resumed)")
    p.add_argument("--config", help="YAML train config (sections model, augment, loss, schedule)")
    p.add_argument("--model", help="model preset (original, lightweight, dfl-h128, sae-128, "
                                   "sae-256) or a model YAML file")  # fmt: skip
    p.add_argument("--steps", type=int, help="train until this step")
    p.add_argument("--batch-size", type=int, help="faces per side per step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--schedule", help="constant, cosine, step, onecycle or plateau")
    p.add_argument("--precision", help="auto, fp32, bf16 or fp16")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, help="seed of split, order, augmentation, init")
    p.add_argument("--resume", action="store_true", help="continue the run in -o exactly")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _train_config(args: argparse.Namespace):
    from faceswap.config import from_dict, load_yaml
    from faceswap.models import model_config_from
    from faceswap.train.config import TrainConfig

    data = load_yaml(args.config) if args.config else {}
    where = args.config or "options"
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
    cfg = from_dict(TrainConfig, data, where)
    if args.model:
        cfg.model = model_config_from(args.model, {})
    return cfg


def _run_train(args: argparse.Namespace) -> int:
    from faceswap import faceset as fsmod
    from faceswap.train import distributed as dd
    from faceswap.train.trainer import open_run

    run_dir = Path(args.output)
    fs_a, fs_b = fsmod.load(args.faceset_a), fsmod.load(args.faceset_b)
    if args.resume:
        cfg = open_run(run_dir, _train_config(args) if args.model else None, resume=True)
        if args.steps is not None:
            cfg.steps = args.steps
    else:
        cfg = open_run(run_dir, _train_config(args), resume=False)
    dist = dd.init_from_env(cfg.device)  # one process unless started by torchrun
    try:
        if not dd.is_main(dist):
            log.setLevel(logging.ERROR)  # rank 0 speaks for the run
        dd.barrier(dist)  # every rank has read the run folder before rank 0 writes to it
        return _train(args, cfg, fs_a, fs_b, run_dir, dist)
    finally:
        dd.cleanup()


def _train(args: argparse.Namespace, cfg, fs_a, fs_b, run_dir: Path, dist) -> int:
    from faceswap.train.trainer import Trainer

    main_rank = dist.rank == 0
    trainer = Trainer(cfg, fs_a, fs_b, run_dir, dist=dist)
    if args.resume:
        from faceswap.train.checkpoint import latest_checkpoint

        latest = latest_checkpoint(run_dir)
        if latest is not None:
            trainer.restore(latest)
    log.info("model %s %dpx: %.1f M parameters, %.2f GFLOP per sample (forward+backward)",
             cfg.model.arch, cfg.model.resolution, trainer.parameters / 1e6,
             trainer.flops / 1e9)  # fmt: skip
    bar = _progress(cfg.steps - trainer.step, "train", unit="step", show=main_rank)

    def progress(step: int, d: dict) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{d['loss']:.4f}", lr=f"{d['lr']:.2e}",
                        sps=f"{d.get('samples_per_s', 0):.1f}", refresh=False)  # fmt: skip

    try:
        s = trainer.train(progress, tensorboard=not args.no_tensorboard)
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
        _out(args, dataclasses.asdict(s), human)
    return 0


# ---- lr-find ------------------------------------------------------------------------------

LR_FIND_EXAMPLES = """examples:
  faceswap lr-find -A faces/alice -B faces/bob -o runs/lr --model original
  faceswap lr-find -A faces/alice -B faces/bob -o runs/lr --config configs/train/cpu-small.yaml --steps 200
"""


def _add_lr_find(p: argparse.ArgumentParser) -> None:
    p.add_argument("-A", dest="faceset_a", required=True, help="face set of identity A")
    p.add_argument("-B", dest="faceset_b", required=True, help="face set of identity B")
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
    from faceswap import faceset as fsmod
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
    trainer = Trainer(cfg, fsmod.load(args.faceset_a), fsmod.load(args.faceset_b), out)
    bar = _progress(n_steps, "lr-find", unit="lr")

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

    _out(args, data, human)
    return 0


# ---- weights ------------------------------------------------------------------------------

WEIGHTS_EXAMPLES = """examples:
  faceswap weights list
  faceswap weights download            # s3fd and fan, into $FACESWAP_WEIGHTS or the torch hub cache
  faceswap weights download fan --weights-dir ~/faceswap-weights
"""


def _add_weights(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_Parser)
    ls = sub.add_parser("list", help="where each backend's weights are, and if they are there")
    ls.add_argument("--weights-dir", help="also look in this folder")
    ls.add_argument("--json", action="store_true", help="print as JSON")
    dl = sub.add_parser("download", help="fetch face-alignment weights (needs internet)")
    dl.add_argument("names", nargs="*", help="s3fd and/or fan (default both)")
    dl.add_argument("--weights-dir", help="save into this folder instead of the torch hub cache")
    dl.add_argument("--json", action="store_true", help="print as JSON")


def _run_weights(args: argparse.Namespace) -> int:
    from faceswap.extract import weights

    if args.action == "list":
        rows = weights.list_weights(args.weights_dir)
        data = [{"name": r.name, "package": r.package, "file": r.file,
                 "path": str(r.path) if r.path else None, "present": r.present,
                 "source": r.source} for r in rows]  # fmt: skip

        def human() -> None:
            for r in rows:
                state = "ok     " if r.present else "missing"
                print(f"{r.name:15s} {state} {r.path or r.file}  ({r.package})")

        _out(args, data, human)
        return 0
    names = args.names or list(weights.FACE_ALIGNMENT_FILES)
    paths = [str(weights.download_face_alignment(n, args.weights_dir)) for n in names]
    _out(args, {"downloaded": paths}, lambda: [print(f"ok {p}") for p in paths])
    return 0


# ---- main -----------------------------------------------------------------------------------

COMMANDS: dict[str, tuple[str, str, Callable, Callable]] = {
    "extract": (
        "detect, align and save faces from videos and images into a face set",
        EXTRACT_EXAMPLES,
        _add_extract,
        _run_extract,
    ),  # fmt: skip
    "faceset": (
        "inspect and curate a face set (info, sort, filter, dedupe, remove, restore)",
        FACESET_EXAMPLES,
        _add_faceset,
        _run_faceset,
    ),  # fmt: skip
    "train": (
        "train the shared-encoder autoencoder on face sets A and B",
        TRAIN_EXAMPLES,
        _add_train,
        _run_train,
    ),
    "lr-find": (
        "LR range test: try rising learning rates, plot the loss, suggest one",
        LR_FIND_EXAMPLES,
        _add_lr_find,
        _run_lr_find,
    ),
    "weights": (
        "list or download detector/landmark weights",
        WEIGHTS_EXAMPLES,
        _add_weights,
        _run_weights,
    ),  # fmt: skip
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="faceswap", description="Face swapping with a shared-encoder "
                     "autoencoder. For consenting, disclosed uses only (docs/ethics.md).")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"faceswap {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)  # fmt: skip
    for name, (helptext, examples, add, _) in COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext, epilog=examples,
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        add(p)
    return parser


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger("faceswap")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    try:
        return COMMANDS[args.command][3](args)
    except BadInput as exc:
        sys.stderr.write(f"faceswap {args.command}: error: {exc}\n")
        return 2
    except BrokenPipeError:
        # the reader went away (`faceswap faceset info X | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        sys.stderr.write(f"faceswap {args.command}: interrupted; work so far is saved, "
                         "run the same command again to resume\n")  # fmt: skip
        return 130
    except Exception as exc:  # an internal error: say so, with the trace on request
        if args.verbose or os.environ.get("FACESWAP_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(f"faceswap {args.command}: internal error: {exc.__class__.__name__}: "
                         f"{exc} (run with -v for the traceback)\n")  # fmt: skip
        return 1
