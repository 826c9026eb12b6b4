"""Command line: parsing and printing only; the work happens in the library.

One module per command (or family of commands); each defines a `Command` and COMMANDS below
names them. Exit codes: 0 success, 2 bad input or usage (one line, no traceback), 1 internal
error, 130 interrupted (work so far is saved).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from faceswap import __version__
from faceswap.cli.common import Command, Interrupted, Parser
from faceswap.cli.convert import CONVERT
from faceswap.cli.demo import DEMO
from faceswap.cli.evaluate import EVALUATE, REPORT
from faceswap.cli.export import EXPORT
from faceswap.cli.extract import EXTRACT
from faceswap.cli.faceset import FACESET
from faceswap.cli.fit import FIT
from faceswap.cli.live import LIVE
from faceswap.cli.mask import MASK
from faceswap.cli.train import LR_FIND, TRAIN
from faceswap.cli.ui import UI
from faceswap.cli.weights import WEIGHTS
from faceswap.errors import BadInput

COMMANDS: dict[str, Command] = {
    "extract": EXTRACT,
    "faceset": FACESET,
    "train": TRAIN,
    "lr-find": LR_FIND,
    "fit": FIT,
    "convert": CONVERT,
    "mask": MASK,
    "evaluate": EVALUATE,
    "report": REPORT,
    "demo": DEMO,
    "weights": WEIGHTS,
    "export": EXPORT,
    "live": LIVE,
    "ui": UI,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="faceswap", description="Face swapping with a shared-encoder "
                    "autoencoder. For consenting, disclosed uses only (docs/ethics.md).")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"faceswap {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)  # fmt: skip
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, epilog=cmd.examples,
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        cmd.add_arguments(p)
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
        return COMMANDS[args.command].run(args)
    except BadInput as exc:
        sys.stderr.write(f"faceswap {args.command}: error: {exc}\n")
        return 2
    except BrokenPipeError:
        # the reader went away (`faceswap faceset info X | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Interrupted as exc:
        sys.stderr.write(f"faceswap {args.command}: {exc.message}\n")
        return exc.exit_code
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
