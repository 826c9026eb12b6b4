"""What every command shares: the one-line-error parser, --json output, progress bars."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceswap.errors import BadInput

log = logging.getLogger("faceswap")


class Interrupted(KeyboardInterrupt):
    """A stop by the user or a signal, with the line to print and the exit code."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def emit(args: argparse.Namespace, data: Any, human: Callable[[], None]) -> None:
    """--json prints the machine-readable summary on stdout; otherwise the human one."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        human()


# A file that progress bars also report to, one JSON line a few times a second: how a caller
# that runs `faceswap ...` as a subprocess (the web UI) follows a long job without a terminal.
PROGRESS_ENV = "FACESWAP_PROGRESS"
_PROGRESS_EVERY = 0.25  # seconds between lines (the last state is always written on close)


def progress_bar(total: int | None, desc: str, unit: str = "frame", show: bool = True):
    from tqdm import tqdm

    path = os.environ.get(PROGRESS_ENV)

    class Bar(tqdm):
        """tqdm that also appends {"desc", "n", "total", "unit", "postfix", "t"} lines to the
        FACESWAP_PROGRESS file (when set). Its own count: a hidden tqdm counts nothing."""

        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            self.done, self.post, self.last = 0, {}, 0.0

        def _report(self, force: bool = False) -> None:
            now = time.time()
            if path and (force or now - self.last >= _PROGRESS_EVERY):
                self.last = now
                line = {"desc": desc, "unit": unit, "n": self.done, "total": self.total,
                        "postfix": self.post, "t": round(now, 3)}  # fmt: skip
                try:
                    with open(path, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(line, default=str) + "\n")
                except OSError:  # the follower's problem, never the job's
                    pass

        def update(self, n: float | None = 1):  # type: ignore[override]
            self.done += n or 0
            out = super().update(n)
            if self.disable:  # callers that read bar.n (evaluate) see the true count
                self.n = self.done
            self._report()
            return out

        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):  # type: ignore[override]
            self.post = {**(ordered_dict or {}), **kwargs}
            return super().set_postfix(ordered_dict, refresh, **kwargs)

        def close(self) -> None:
            if path and not getattr(self, "_closed_report", False):
                self._closed_report = True
                self._report(force=True)
            super().close()

    return Bar(total=total or None, desc=desc, unit=unit, dynamic_ncols=True, leave=False,
               disable=not show or not sys.stderr.isatty() or None)  # fmt: skip


def check_faceset_path(path: str, option: str = "") -> None:
    """A face-set argument that is not a face-set folder: one line saying what it is instead.

    The most common mistakes are passing the video itself (before `faceswap extract`), a file,
    or the folder above the face sets."""
    from faceswap.faceset import INDEX
    from faceswap.media import IMAGE_EXTS, VIDEO_EXTS

    p = Path(path)
    what = f"{option} {path}" if option else str(path)
    if p.is_file():
        ext = p.suffix.lower()
        if ext in VIDEO_EXTS or ext in IMAGE_EXTS:
            kind = "a video" if ext in VIDEO_EXTS else "an image"
            raise BadInput(f"{what}: is {kind}, not a face set; run `faceswap extract "
                           f"{path} -o faces/{p.stem}` first and pass faces/{p.stem}")  # fmt: skip
        raise BadInput(f"{what}: is a file; a face set is a folder (made by "
                       "`faceswap extract`)")  # fmt: skip
    if p.is_dir() and not (p / INDEX).is_file():
        sets = sorted(q.name for q in p.iterdir() if (q / INDEX).is_file())
        if sets:
            raise BadInput(f"{what}: is not a face set but holds face sets "
                           f"({', '.join(sets[:4])}{', ...' if len(sets) > 4 else ''}); "
                           f"pass one, e.g. {p / sets[0]}")  # fmt: skip


def load_faceset(path: str, option: str = ""):
    """faceset.load with the argument's option (if any) named in every error."""
    from faceswap import faceset as fsmod

    check_faceset_path(path, option)
    try:
        return fsmod.load(path)
    except BadInput as exc:
        if not option:
            raise
        raise BadInput(f"{option}: {exc}") from None


def faceset_paths(values: str | list[str], option: str) -> list[str]:
    """The folders of a repeatable face-set option (`-A x -A y` or `-A x,y`), in order. A
    value that is itself a face set is taken whole, even when its name holds a comma."""
    from faceswap.faceset import is_faceset

    out: list[str] = []
    for value in [values] if isinstance(values, str) else values:
        parts = [value] if is_faceset(value) else value.split(",")
        for p in parts:
            if not p.strip():
                raise BadInput(f"{option} {value!r}: an empty face-set path in the list")
            out.append(p.strip())
    if not out:
        raise BadInput(f"{option}: no face set given")
    return out


def load_facesets(values: str | list[str], option: str):
    """One face set, or several pooled into one side (faceswap.data.facepool); every error
    names the option and the folder."""
    from faceswap.data.facepool import pool

    sets = [load_faceset(p, option) for p in faceset_paths(values, option)]
    try:
        return pool(sets)
    except BadInput as exc:
        raise BadInput(f"{option}: {exc}") from None


def frame_range(text: str | None) -> tuple[int, int | None]:
    if not text:
        return 0, None
    try:
        a, _, b = text.partition("-")
        start = int(a) if a else 0
        end = int(b) if b else None
    except ValueError:
        raise BadInput(f"--frames {text!r}: expected START-END, e.g. 120-480 or 120-") from None
    return start, end


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, --help examples, argument setup and runner."""

    help: str
    examples: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# Face-finding flags shared by extract and convert: flag dest = ExtractConfig field.
DETECTION_FLAGS = ("detector", "aligner", "weights_dir", "detect_size", "upsample", "min_score",
                   "min_size", "max_faces")  # fmt: skip


def add_detection_options(p: argparse.ArgumentParser) -> None:
    """The flags that choose and tune face detection and landmarks (DETECTION_FLAGS)."""
    p.add_argument("--detector", help="auto (default), dlib-hog, dlib-cnn or s3fd")
    p.add_argument("--aligner", help="auto (default), dlib or fan")
    p.add_argument("--weights-dir", help="folder with face-alignment weights (s3fd, fan)")
    p.add_argument("--detect-size", type=int, help="longest side the detector sees (default 640)")
    p.add_argument("--upsample", type=int, help="dlib upsampling steps for small faces (0-3)")
    p.add_argument("--min-score", type=float, help="drop detections scoring below this")
    p.add_argument("--min-size", type=int, help="drop faces smaller than this many pixels")
    p.add_argument("--max-faces", type=int, help="keep the N largest faces per frame")


def provider_as_device(args: argparse.Namespace) -> None:
    """--provider (onnxruntime's name for where an .onnx model runs) into --device: the same
    choice, so both given and different is an error."""
    if args.provider is None:
        return
    if args.provider not in ("auto", "cpu", "cuda"):
        raise BadInput(f"--provider {args.provider!r}: must be auto, cpu or cuda")
    if args.device is not None and args.device != args.provider:
        raise BadInput(f"--provider {args.provider} and --device {args.device} disagree; give one")
    args.device = args.provider


def flags_over_yaml(args: argparse.Namespace, names: tuple[str, ...] | list[str]) -> dict:
    """The --config YAML (or {}) with every flag of `names` that was given on top."""
    from faceswap.config import load_yaml

    data = load_yaml(args.config) if args.config else {}
    for name in names:
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    return data
