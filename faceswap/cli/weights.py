"""`faceswap weights`: where detector and landmark weights are."""

from __future__ import annotations

import argparse
import logging

from faceswap.cli.common import Command, Parser, emit

log = logging.getLogger("faceswap")

WEIGHTS_EXAMPLES = """examples:
  faceswap weights list
  faceswap weights download            # s3fd and fan, into $FACESWAP_WEIGHTS or the torch hub cache
  faceswap weights download fan --weights-dir ~/faceswap-weights
"""


def _add_weights(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
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

        emit(args, data, human)
        return 0
    names = args.names or list(weights.FACE_ALIGNMENT_FILES)
    paths = [str(weights.download_face_alignment(n, args.weights_dir)) for n in names]
    emit(args, {"downloaded": paths}, lambda: [print(f"ok {p}") for p in paths])
    return 0


WEIGHTS = Command(
    "list or download detector/landmark weights",
    WEIGHTS_EXAMPLES,
    _add_weights,
    _run_weights,
)
