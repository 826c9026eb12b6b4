"""Background jobs: `python -m faceswap COMMAND ...` subprocesses, one per output.

A subprocess runs exactly the CLI's code, its equivalent command can be shown and pasted, a
crash in it cannot take the server down, and it keeps running while browser tabs come and go.
Each job has a folder under .faceswap-ui/jobs/ with job.json, the process's stdout (the --json
summary) and stderr, and progress.jsonl (written by the CLI's progress bars through
FACESWAP_PROGRESS). Stop = SIGINT to its process group, the same as Ctrl-C in a terminal: a
trainer saves a checkpoint, an extract keeps its face set valid, a convert removes its temp
output.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faceswap.cli.common import PROGRESS_ENV
from faceswap.faceset import atomic_write_text


def _die_with_server() -> None:
    """In the job, before exec (Linux): a Ctrl-C when the server process dies, however it dies,
    so a job never outlives its server unseen; it saves and stops as on a Ctrl-C."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class JobConflict(Exception):
    """A job writing the same output is already running (HTTP 409)."""


@dataclass
class Job:
    id: str
    kind: str  # extract, train, fit, convert, report
    key: str  # the output it writes: one running job per key
    argv: list[str]  # after "faceswap"
    command: str  # the equivalent command line
    status: str = "running"  # running, finished, failed, stopped, lost
    started: float = field(default_factory=time.time)
    ended: float | None = None
    returncode: int | None = None
    error: str | None = None  # the CLI's one-line error
    summary: Any = None  # the CLI's --json summary
    stop_requested: bool = False

    def public(self) -> dict[str, Any]:
        return asdict(self)


def _error_line(stderr: str, rc: int) -> str:
    """The CLI's own one-line error, else the last line it wrote."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("faceswap ") and (": error:" in ln or "internal error" in ln
                                           or "interrupted" in ln):  # fmt: skip
            return ln
    return lines[-1] if lines else f"exited with code {rc}"


class Progress:
    """Incremental reader of a job's progress.jsonl: the latest line, a rate and the history of
    postfix values (loss, lr per step) for the curves."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return self.lines
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += end
        for raw in data[:end].splitlines():
            try:
                row = json.loads(raw)
            except ValueError:
                continue
            if isinstance(row, dict):
                self.lines.append(row)
        return self.lines

    def latest(self) -> dict[str, Any] | None:
        lines = self.read()
        if not lines:
            return None
        last = lines[-1]
        # rate over the last ~10 s of lines of the same bar (extract has one, train one)
        same = [r for r in lines[-60:] if r.get("desc") == last.get("desc")]
        first = next((r for r in same if last["t"] - r["t"] <= 10), same[0])
        dt = last["t"] - first["t"]
        rate = (last["n"] - first["n"]) / dt if dt > 0 else None
        if not rate:  # stalled or bursty (extract hands frames on in batches): the whole run
            start = next(r for r in lines if r.get("desc") == last.get("desc"))
            dt = last["t"] - start["t"]
            rate = (last["n"] - start["n"]) / dt if dt > 0 else None
        total = last.get("total")
        eta = (total - last["n"]) / rate if rate and total else None
        return {"desc": last.get("desc"), "unit": last.get("unit"), "n": last.get("n"),
                "total": total, "rate": rate, "eta": eta, "postfix": last.get("postfix") or {}}  # fmt: skip


class JobManager:
    """The jobs of one project: start, stop, list; finished jobs of earlier sessions are read
    back from their folders."""

    def __init__(self, project: Path, workdir: Path) -> None:
        self.project = project
        self.dir = workdir / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.progress: dict[str, Progress] = {}
        self.lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        for p in sorted(self.dir.glob("*/job.json")):
            try:
                job = Job(**json.loads(p.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                continue
            if job.status == "running":  # its server died (and Ctrl-C'd it) before it ended
                job.status, job.error = "lost", "the server stopped while this job ran"
            self.jobs[job.id] = job
            self.progress[job.id] = Progress(p.parent / "progress.jsonl")

    def _save(self, job: Job) -> None:
        atomic_write_text(self.dir / job.id / "job.json", json.dumps(job.public(), default=str))

    def running(self, key: str | None = None) -> list[Job]:
        return [j for j in self.jobs.values() if j.status == "running"
                and (key is None or j.key == key)]  # fmt: skip

    def start(self, kind: str, argv: list[str], key: str) -> Job:
        with self.lock:
            busy = self.running(key)
            if busy:
                raise JobConflict(f"{key}: the {busy[0].kind} job {busy[0].id} is already writing it; "
                                  "stop it or wait")  # fmt: skip
            job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{len(self.jobs) + 1}"
            folder = self.dir / job_id
            folder.mkdir(parents=True)
            job = Job(id=job_id, kind=kind, key=key, argv=argv,
                      command=shlex.join(["faceswap", *argv]))  # fmt: skip
            env = {**os.environ, PROGRESS_ENV: str(folder / "progress.jsonl"),
                   "PYTHONUNBUFFERED": "1"}  # fmt: skip
            # the package this server runs from, also when it is not installed (a checkout)
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
            with open(folder / "stdout.log", "wb") as out, open(folder / "stderr.log", "wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "faceswap", *argv, "--json"], cwd=self.project,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                    start_new_session=True,  # its own group: stop signals it and its workers
                    preexec_fn=_die_with_server if sys.platform == "linux" else None,
                )  # fmt: skip
            self.jobs[job_id] = job
            self.procs[job_id] = proc
            self.progress[job_id] = Progress(folder / "progress.jsonl")
            self._save(job)
        threading.Thread(target=self._wait, args=(job, proc), daemon=True).start()
        return job

    def _wait(self, job: Job, proc: subprocess.Popen) -> None:
        rc = proc.wait()
        folder = self.dir / job.id
        stdout = (folder / "stdout.log").read_text(encoding="utf-8", errors="replace")
        stderr = (folder / "stderr.log").read_text(encoding="utf-8", errors="replace")
        with self.lock:
            job.returncode, job.ended = rc, time.time()
            try:
                job.summary = json.loads(stdout) if stdout.strip() else None
            except ValueError:
                job.summary = None
            if rc == 0:
                job.status = "finished"
            elif job.stop_requested:
                job.status = "stopped"
            else:
                job.status, job.error = "failed", _error_line(stderr, rc)
            self.procs.pop(job.id, None)
            self._save(job)

    def stop(self, job_id: str) -> Job:
        job = self.jobs[job_id]
        proc = self.procs.get(job_id)
        if proc is not None and proc.poll() is None:
            job.stop_requested = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
        return job

    def stop_all(self, wait: float = 60.0) -> None:
        """Ctrl-C every running job and give them `wait` seconds to save."""
        for job_id in list(self.procs):
            self.stop(job_id)
        deadline = time.time() + wait
        for proc in list(self.procs.values()):
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()

    def public(self, job: Job) -> dict[str, Any]:
        out = job.public()
        prog = self.progress.get(job.id)
        out["progress"] = prog.latest() if prog else None
        return out

    def log_tail(self, job_id: str, n: int = 40) -> str:
        try:
            text = (self.dir / job_id / "stderr.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        # tqdm is off without a terminal, so stderr holds log lines only
        return "\n".join(text.splitlines()[-n:])

    def history(self, job_id: str) -> list[dict[str, Any]]:
        prog = self.progress.get(job_id)
        return prog.read() if prog else []

    def latest_for(self, key: str) -> Job | None:
        jobs = [j for j in self.jobs.values() if j.key == key]
        return max(jobs, key=lambda j: j.started) if jobs else None
