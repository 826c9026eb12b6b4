"""One writer per run folder: an advisory lock (flock) on RUN/.lock held while a trainer runs.

Two trainers on one run folder would interleave checkpoints, metrics and the repair of each
other's half-written saves. The lock file also names its holder (pid, host, start time,
command) so the second process can say who is in the way. flock is released by the kernel
when the holder exits, even on kill -9, so a crashed trainer never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from faceswap.errors import BadInput

LOCK_FILE = ".lock"

F = TypeVar("F", bound=Callable[..., Any])


class RunLocked(BadInput):
    """Another process is writing to this run folder."""


def _holder() -> str:
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    cmd = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
    return f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {cmd[:200]}"


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the run folder's writer lock for the duration of the block; RunLocked (exit code 2)
    naming the other process if it is held."""
    import fcntl

    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # "a+": opening must not wipe the holder's line before we know we hold the lock
        fh = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise BadInput(f"{run_dir}: cannot write the run folder ({exc.strerror})") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            other = fh.read().strip() or "another process"
            raise RunLocked(
                f"{run_dir}: another trainer is writing to this run folder ({other}); wait for "
                "it to finish, stop it, or choose another -o"
            ) from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(_holder() + "\n")
            fh.flush()
            yield
        finally:
            with contextlib.suppress(OSError):
                fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)


def locked_run(method: F) -> F:
    """Decorate a Trainer method that writes the run folder: the main rank holds the run
    lock of `self.run_dir` while it runs (other ranks never write there)."""

    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        if not getattr(self, "is_main", True):
            return method(self, *args, **kwargs)
        with run_lock(self.run_dir):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
