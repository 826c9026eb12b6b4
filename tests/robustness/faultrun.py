"""Run the faceswap CLI with fault injection: the subprocess the kill -9 tests start.

    python tests/robustness/faultrun.py train -A FS_A -B FS_B -o RUN ...   (any faceswap argv)

It is `python -m faceswap` plus wrappers around functions the library calls; the library itself
has no test hooks. Environment:

  FAULT_TRACE=FILE    append a line per event, flushed at once so that it survives a SIGKILL:
                      "step N T" after each optimizer step (train), "frames N T" when a
                      source's frames marked processed in memory reach N (extract, one source)
                      or N frames are written (convert), "hit POINT K" at each save point
                      below; T is time.monotonic()
  FAULT_RSS=SECONDS   also trace "rss KB T", the resident memory, every SECONDS (soak tests)
  FAULT_KILL=POINT:K  SIGKILL this process just before the K-th (1-based) hit of POINT
  FAULT_SLOW=SECONDS  sleep this long at every hit of a save point, so that a kill from outside
                      at a random time lands inside a save more often
  FAULT_FULL=POINT:K:BYTES  from the K-th hit of POINT on, no file can grow past BYTES
                      (RLIMIT_FSIZE): every later write of a bigger file fails in the OS, as
                      on a full disk, though with EFBIG ("File too large") instead of ENOSPC

Save points (named moments inside the writes that must be crash-safe):
  ck.tensors    a checkpoint's safetensors file is about to be written (kill: the temp folder
                holds the files before it)
  ck.half       the same file has been written, then cut to half its length (a torn write)
  ck.publish    a complete temp folder is about to be renamed to its name (step-N, best)
  ck.retire     a published folder has just been renamed aside (to a hidden name), before
                its replacement is published or it is removed
  ck.rmtree     a checkpoint folder removal (a replaced best, pruned old steps)
  fs.image      a face image's temp file is about to be renamed into place
  fs.index      the face-set index's temp file is about to be renamed into place
"""

from __future__ import annotations

import os
import signal
import sys
import time
import types
from pathlib import Path

TRACE = os.environ.get("FAULT_TRACE")
KILL_POINT, _, KILL_AT = os.environ.get("FAULT_KILL", "").partition(":")
SLOW = float(os.environ.get("FAULT_SLOW", "0") or 0)
RSS = float(os.environ.get("FAULT_RSS", "0") or 0)
FULL_POINT, _, FULL_AT = os.environ.get("FAULT_FULL", "").partition(":")
FULL_AT, _, FULL_BYTES = FULL_AT.partition(":")
_hits: dict[str, int] = {}


def trace(line: str) -> None:
    if TRACE:
        # O_APPEND + one write per line: lines from a killed process are whole or absent
        fd = os.open(TRACE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def hit(point: str, before_kill=None) -> None:
    _hits[point] = _hits.get(point, 0) + 1
    trace(f"hit {point} {_hits[point]}")
    if point == KILL_POINT and str(_hits[point]) == KILL_AT:
        if before_kill is not None:
            before_kill()
        os.kill(os.getpid(), signal.SIGKILL)
    if point == FULL_POINT and str(_hits[point]) == FULL_AT:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a dead process
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(FULL_BYTES), int(FULL_BYTES)))
    if SLOW:
        time.sleep(SLOW)


def _module_proxy(module: types.ModuleType, **overrides) -> types.SimpleNamespace:
    """A stand-in for `module` inside one library module: the same attributes, some wrapped."""
    ns = types.SimpleNamespace(**{k: getattr(module, k) for k in dir(module)
                                  if not k.startswith("__")})  # fmt: skip
    for k, v in overrides.items():
        setattr(ns, k, v)
    return ns


def install_train_hooks() -> None:
    import shutil

    from faceswap.train import checkpoint as ck
    from faceswap.train import trainer as tr

    real_save = ck.save_file

    def save_file(tensors, path, *a, **k):
        hit("ck.tensors")
        real_save(tensors, path, *a, **k)
        hit("ck.half", lambda: os.truncate(path, os.path.getsize(path) // 2))

    def rename(src, dst):
        aside = Path(dst).name.startswith(".") and not Path(src).name.startswith(".")
        if not aside:
            hit("ck.publish")
        os.rename(src, dst)
        if aside:
            hit("ck.retire")

    def rmtree(path, *a, **k):
        hit("ck.rmtree")
        shutil.rmtree(path, *a, **k)

    ck.save_file = save_file
    ck.os = _module_proxy(os, rename=rename)
    ck.shutil = _module_proxy(shutil, rmtree=rmtree)

    real_step = tr.Trainer.train_step

    def train_step(self, *a, **k):
        out = real_step(self, *a, **k)
        trace(f"step {self.step} {time.monotonic()}")
        return out

    tr.Trainer.train_step = train_step


def install_extract_hooks() -> None:
    from faceswap import faceset as fsmod

    def replace(src, dst):
        hit("fs.index" if Path(dst).name == fsmod.INDEX else "fs.image")
        os.replace(src, dst)

    fsmod.os = _module_proxy(os, replace=replace)

    real_mark = fsmod.Source.mark_processed

    def mark_processed(self, frames):
        real_mark(self, frames)
        trace(f"frames {sum(b - a for a, b in self.processed)} {time.monotonic()}")

    fsmod.Source.mark_processed = mark_processed


def install_convert_hooks() -> None:
    from faceswap.convert import sinks

    written = {"n": 0}
    real_write = sinks.VideoSink.write

    def write(self, index, frame, original):
        real_write(self, index, frame, original)
        written["n"] += 1
        trace(f"frames {written['n']} {time.monotonic()}")

    sinks.VideoSink.write = write


def start_rss_sampler(every: float) -> None:
    import threading

    def sample() -> None:
        while True:
            with open("/proc/self/statm") as fh:
                kb = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
            trace(f"rss {kb} {time.monotonic()}")
            time.sleep(every)

    threading.Thread(target=sample, daemon=True).start()


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] in ("train", "lr-find"):
        install_train_hooks()
    elif argv and argv[0] == "extract":
        install_extract_hooks()
    elif argv and argv[0] == "convert":
        install_convert_hooks()
    if RSS:
        start_rss_sampler(RSS)
    from faceswap.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
