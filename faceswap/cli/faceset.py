"""`faceswap faceset`: inspect and curate a face set."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from faceswap.cli.common import Command, Parser, emit, load_faceset
from faceswap.errors import BadInput

log = logging.getLogger("faceswap")

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
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
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
    flt.add_argument("--strictness", type=float, default=1.0,
                     help="--auto: >1 flags more, <1 fewer (1.0)")  # fmt: skip
    for name, what in [
        ("blur-below", "blurry: blur score below"),
        ("blur-extent-above", "blurry: blur extent (0-1) above"),
        ("residual-above", "misaligned: alignment residual above"),
        ("jitter-above", "unstable landmarks: jitter above"),
        ("jump-above", "landmarks jump off the neighbouring frames by more than"),
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
    dd.add_argument(
        "--shape",
        type=float,
        default=None,
        metavar="D",
        help="max landmark-shape distance, crop sides (0.004)",
    )
    dd.add_argument("--pixels", type=float, default=None, metavar="D",
                    help="max thumbnail distance (0.05)")  # fmt: skip
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


def _print_moved(flagged, verb: str, dry: bool, total: int) -> None:
    for face, reason in flagged:
        print(f"  {face.name}: {reason}")
    print(f"{'would move' if dry else verb} {len(flagged)} of {total} face(s)"
          f"{'' if dry else ' to rejected/'}")  # fmt: skip


def _run_faceset(args: argparse.Namespace) -> int:
    from faceswap import faceset as fsmod

    fs = load_faceset(args.faceset)
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
            print(f"  near-duplicates: {data['near_duplicates']} (dedupe would move them)")
            outl = data["outliers"]
            what = ", ".join(f"{n} {k}" for k, n in sorted(outl.items())) or "none"
            print(f"  outliers: {sum(outl.values())} (filter --auto would move them: {what})")
            print(f"  rare expressions/poses: {data['rare']} faces with fewer than "
                  f"{curate.RARE_NEIGHBOURS} look-alikes; keep them, a model learns least of these")  # fmt: skip
            bins = " ".join(f"{b['from']:+d}:{b['count']}" for b in data["yaw_histogram"])
            print(f"  yaw histogram (15 degree bins): {bins}")

        emit(args, data, human)
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

        emit(args, data, human)
    elif args.action == "filter":
        rule = curate.auto_rule(fs, args.strictness) if args.auto else curate.FilterRule()
        for name in ("blur_below", "blur_extent_above", "residual_above", "jitter_above",
                     "jump_above", "identity_above",
                     "yaw_beyond", "pitch_beyond", "score_below"):  # fmt: skip
            if getattr(args, name) is not None:
                setattr(rule, name, getattr(args, name))
        refs = _refs(args.identity)
        if refs is not None and rule.identity_above is None:
            rule.identity_above = 0.6  # dlib's same-person distance
        if rule == curate.FilterRule():
            raise BadInput("faceset filter: give --auto or at least one threshold option")
        total = len(fs.faces)
        flagged = curate.find_outliers(fs, rule, refs)
        moved = 0 if args.dry_run else curate.move_to_rejected(fs, flagged)
        data = {"rule": dataclasses.asdict(rule), "dry_run": args.dry_run, "moved": moved,
                "flagged": [{"name": f.name, "reason": r} for f, r in flagged]}  # fmt: skip
        emit(args, data, lambda: _print_moved(flagged, "moved", args.dry_run, total))
    elif args.action == "dedupe":
        shape = curate.DUPLICATE_SHAPE if args.shape is None else args.shape
        pixels = curate.DUPLICATE_PIXELS if args.pixels is None else args.pixels
        total = len(fs.faces)
        pairs = curate.find_duplicates(fs, shape, pixels)
        flagged = [(dup, f"near-duplicate (of {kept.name})") for dup, kept in pairs]
        moved = 0 if args.dry_run else curate.move_to_rejected(fs, flagged)
        data = {"shape": shape, "pixels": pixels, "faces": len(fs.faces), "dry_run": args.dry_run, "moved": moved,
                "flagged": [{"name": f.name, "reason": r} for f, r in flagged]}  # fmt: skip
        emit(args, data, lambda: _print_moved(flagged, "moved", args.dry_run, total))
    elif args.action == "remove":
        faces = curate.select(fs, args.names)
        moved = curate.move_to_rejected(fs, [(f, args.reason) for f in faces])
        emit(args, {"moved": moved}, lambda: print(f"moved {moved} face(s) to rejected/"))
    elif args.action == "restore":
        if not args.names and not args.all:
            raise BadInput("faceset restore: name faces or pass --all")
        n = curate.restore(fs, None if args.all else args.names)
        emit(args, {"restored": n}, lambda: print(f"restored {n} face(s)"))
    return 0


FACESET = Command(
    "inspect and curate a face set (info, sort, filter, dedupe, remove, restore)",
    FACESET_EXAMPLES,
    _add_faceset,
    _run_faceset,
)
