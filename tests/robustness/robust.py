"""The robustness suite's shared code: the table of commands under fault injection and the
subprocess runner that kills them (importable as `robust`; the fixtures are in conftest.py).

Adding a command to the kill -9 tests is one entry in JOBS: how to start it (and run it again
after a crash), what counts as saved work, and what a valid and a complete output are.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceswap import faceset as fsmod
from faceswap.train import checkpoint as ck

from helpers import read_frames

REPO = Path(__file__).resolve().parents[2]
FAULTRUN = Path(__file__).resolve().parent / "faultrun.py"

# One thread per process: the kill tests compare weights bit for bit with runs made inside
# pytest (which also runs torch on one thread), and several processes share two cores.
SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


@dataclass
class Outcome:
    """What one subprocess run did."""

    rc: int | None  # exit code; -9 when we (or it) SIGKILLed it
    stderr: str
    trace: list[str]  # FAULT_TRACE lines of this run
    killed: bool  # ended by SIGKILL
    seconds: float

    def last(self, event: str) -> int:
        """The last number traced for `event` ("step", "frames"), 0 if none."""
        nums = [int(ln.split()[1]) for ln in self.trace if ln.startswith(event + " ")]
        return nums[-1] if nums else 0


def run_faultrun(
    argv: list[str],
    tmp: Path,
    *,
    kill_point: str | None = None,
    kill_after: float | None = None,
    wait_for: str | None = None,
    slow: float = 0.0,
    full: str | None = None,
    rss: float = 0.0,
    timeout: float = 300.0,
) -> Outcome:
    """Run `faceswap ARGV` through tests/robustness/faultrun.py.

    kill_point "POINT:K": the process SIGKILLs itself at that save point (see faultrun.py).
    kill_after: SIGKILL it from here this many seconds after the first trace line starting
    with `wait_for` (or after the start when wait_for is None); a run that ends first is not
    killed. slow, full, rss: FAULT_SLOW, FAULT_FULL and FAULT_RSS (see faultrun.py)."""
    trace = tmp / f"trace-{time.monotonic_ns()}"
    env = {**os.environ, **SUBPROCESS_ENV, "FAULT_TRACE": str(trace)}
    for k in ("FAULT_KILL", "FAULT_SLOW", "FAULT_FULL", "FAULT_RSS"):
        env.pop(k, None)
    if rss:
        env["FAULT_RSS"] = str(rss)
    if full:
        env["FAULT_FULL"] = full
    if kill_point:
        env["FAULT_KILL"] = kill_point
    if slow:
        env["FAULT_SLOW"] = str(slow)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(FAULTRUN), *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    killed_here = False
    if kill_after is not None:
        start = None if wait_for else t0
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            if (
                start is None
                and trace.exists()
                and any(ln.startswith(wait_for) for ln in trace.read_text().splitlines())
            ):
                start = time.monotonic()
            if start is not None and time.monotonic() - start >= kill_after:
                proc.send_signal(signal.SIGKILL)
                killed_here = True
                break
            time.sleep(0.02)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise
    lines = trace.read_text().splitlines() if trace.exists() else []
    rc = proc.returncode
    return Outcome(rc, err, lines, killed_here or rc == -signal.SIGKILL, time.monotonic() - t0)


# ---- the commands under test ------------------------------------------------------------------


@dataclass
class Job:
    """One command in the kill -9 tests.

    argv(ctx, out): the command line of a run writing `out`, fresh or again after a crash (it
    may look at `out`, e.g. to add --resume). progress: the trace event counting its work
    ("step", "frames"). saved(out): the work units safely on disk now (checkpoint step, frames
    in the index). check(out): assert the output is valid as it stands (after any crash).
    same(out, ref): assert a completed output equals the uninterrupted reference."""

    name: str
    argv: Callable[[dict, Path], list[str]]
    progress: str
    saved: Callable[[Path], int]
    check: Callable[[Path], None]
    same: Callable[[Path, Path], None]
    save_points: tuple[str, ...]  # faultrun points that lie inside this job's saves


def _extract_argv(ctx: dict, out: Path) -> list[str]:
    # the same command whether the set exists or not: extract resumes by itself
    return ["extract", str(ctx["clip"]), "-o", str(out), "--size", "64", "--no-embed",
            "--workers", "1", "--frames", ctx.get("frames", "0-24"),
            "--config", str(ctx["extract_yaml"])]  # fmt: skip


def _extract_saved(out: Path) -> int:
    if not fsmod.is_faceset(out):
        return 0
    fs = fsmod.load(out)
    return sum(b - a for s in fs.sources.values() for a, b in s.processed)


def check_faceset(out: Path) -> None:
    """A face set after any crash: loads and validates, lists no face twice, and every listed
    image is there and decodes at the set's size. No temp files are left once a writer ran."""
    if not out.exists():
        return  # killed before it created anything
    fs = fsmod.load(out)
    files = [f.file for f in fs.faces + fs.rejected]
    assert len(files) == len(set(files))
    keys = [(f.source, f.frame, f.name.rsplit("_", 1)[1]) for f in fs.faces + fs.rejected]
    assert len(keys) == len(set(keys)), "a face of one frame is listed twice"
    for f in fs.faces:
        assert fs.load_image(f).shape == (fs.size, fs.size, 3)


def _extract_same(out: Path, ref: Path) -> None:
    a, b = fsmod.load(out), fsmod.load(ref)
    assert [f.file for f in a.faces] == [f.file for f in b.faces]
    assert {k: s.processed for k, s in a.sources.items()} == {
        k: s.processed for k, s in b.sources.items()
    }
    for fa, fb in zip(a.faces, b.faces):
        # a resumed source starts new track ids (docs/faceset.md), everything else is equal
        for name in ("landmarks", "matrix", "box"):
            assert np.array_equal(getattr(fa, name), getattr(fb, name)), name
        assert (out / fa.file).read_bytes() == (ref / fb.file).read_bytes()
    on_disk = sorted(p.name for p in (out / "faces").iterdir())
    assert on_disk == sorted(Path(f.file).name for f in a.faces), "orphan or temp files"
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def _train_argv(ctx: dict, out: Path) -> list[str]:
    a, b = ctx["faceset_pair"]
    argv = ["train", "-A", str(a), "-B", str(b), "-o", str(out), "--config",
            str(ctx["train_yaml"]), "--no-tensorboard"]  # fmt: skip
    # what a user does after a crash: resume if the run was started, else start it again
    return argv + ["--resume"] if (out / "config.yaml").is_file() else argv


def _train_saved(out: Path) -> int:
    latest = ck.latest_checkpoint(out)
    return int(ck.load_checkpoint(latest)["state"]["step"]) if latest else 0


def check_run(out: Path) -> None:
    """A run folder after any crash: every listed checkpoint loads, and `best` (when there)."""
    for p in ck.list_checkpoints(out):
        ck.load_checkpoint(p)
    best = out / "checkpoints" / "best"
    if best.exists():
        ck.load_checkpoint(best)


def _tensors_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k


def _train_same(out: Path, ref: Path) -> None:
    mine, theirs = ck.latest_checkpoint(out), ck.latest_checkpoint(ref)
    assert mine is not None and theirs is not None and mine.name == theirs.name
    a, b = ck.load_checkpoint(mine), ck.load_checkpoint(theirs)
    _tensors_equal(a["model"], b["model"])
    assert a["state"]["streams"] == b["state"]["streams"]
    best_a = ck.load_checkpoint(out / "checkpoints" / "best")
    best_b = ck.load_checkpoint(ref / "checkpoints" / "best")
    assert best_a["state"]["step"] == best_b["state"]["step"]
    _tensors_equal(best_a["model"], best_b["model"])
    assert [p.name for p in ck.list_checkpoints(out)] == [p.name for p in ck.list_checkpoints(ref)]
    leftovers = [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers
    # one metrics line per validation, as in the uninterrupted run: none lost, none twice
    assert metrics_steps(out) == metrics_steps(ref)


def metrics_steps(run: Path) -> list[int]:
    import json

    path = run / "metrics.jsonl"
    return [json.loads(ln)["step"] for ln in path.read_text().splitlines()] if path.exists() else []


def _convert_argv(ctx: dict, out: Path) -> list[str]:
    # --overwrite: a run killed after it committed its output left a complete one
    return ["convert", str(ctx["clip"]), "-m", str(ctx["run"]), "-o", str(out), "--frames",
            ctx.get("frames", "0-12"), "--detect-workers", "1", "--workers", "1",
            "--overwrite"]  # fmt: skip


def _convert_saved(out: Path) -> int:
    return 0  # a convert starts over: nothing of a killed run is kept but a finished output


def check_video(out: Path) -> None:
    """An output video after any crash: absent, or complete (every frame decodes), never a
    truncated file under the output's name."""
    if out.exists():
        assert read_frames(out), f"{out} has no frames"


def _convert_same(out: Path, ref: Path) -> None:
    a, b = read_frames(out), read_frames(ref)
    assert len(a) == len(b) > 0
    # the same frames in, the same model: the same pixels out, up to the encoder
    assert max(float(np.abs(x.astype(int) - y).mean()) for x, y in zip(a, b)) < 1.0
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not leftovers, leftovers


JOBS = {
    "extract": Job(
        "extract",
        _extract_argv,
        "frames",
        _extract_saved,
        check_faceset,
        _extract_same,
        ("fs.image", "fs.index"),
    ),  # fmt: skip
    "train": Job(
        "train",
        _train_argv,
        "step",
        _train_saved,
        check_run,
        _train_same,
        ("ck.tensors", "ck.half", "ck.publish", "ck.retire", "ck.rmtree"),
    ),  # fmt: skip
    "convert": Job(
        "convert", _convert_argv, "frames", _convert_saved, check_video, _convert_same, ()
    ),  # fmt: skip
}
