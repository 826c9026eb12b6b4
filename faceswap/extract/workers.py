"""Worker processes for extraction: N spawned processes run FaceFinder.process on chunks of
frames; results come back in submission order.

Why not multiprocessing.Pool: a Pool replaces a worker that dies and waits for its lost task
forever, so a worker that cannot start (a missing model, an import error, the OOM killer)
made `extract` hang. Here the main process watches its workers while it waits: a worker that
reports an error, or exits, fails the run within a second with what happened.

The workers are started first thing, so loading their models (about a second each) overlaps
with the main process probing and hashing the inputs.

Forked workers get their frames through memory shared with the main process (`SharedFrames`):
pickling a 720p frame and pushing it through a pipe cost ~10 ms of CPU (pickle, two copies
through the kernel, unpickle), more than a tracked face's detection, landmarks and crop
together; a copy into the shared block costs ~0.5 ms.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing as mp
import queue
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_POLL_S = 0.5  # how often a waiting main process checks that its workers are alive


class WorkerError(RuntimeError):
    """An extract worker failed or died; the message says how."""


# A slot holds one chunk of 32 full-HD frames; a chunk that does not fit (4K frames, a longer
# chunk) travels pickled instead. Only the pages a chunk touches take memory.
_SLOT_BYTES = 32 * 1920 * 1080 * 3


class SharedFrames:
    """Slots of one anonymous shared mapping, made before the workers fork so that they inherit
    it: the main process copies a chunk's frames into a free slot and sends only where they
    lie; the worker reads them in place. A slot is free again once its chunk's result is back
    (a result holds no view of the frames: faces are encoded bytes and small arrays)."""

    def __init__(self, slots: int, slot_bytes: int = _SLOT_BYTES) -> None:
        self.slot_bytes = slot_bytes
        self.buf = mmap.mmap(-1, slots * slot_bytes)  # MAP_SHARED | MAP_ANONYMOUS
        self.free = list(range(slots))

    def put(self, chunk: list) -> tuple | None:
        """Copy a chunk of (index, time, frame) into a free slot: ("shared", slot, layout), or
        None when no slot is free or the frames do not fit one."""
        frames = [f for _, _, f in chunk]
        if not self.free or not all(isinstance(f, np.ndarray) for f in frames):
            return None
        if sum(f.nbytes for f in frames) > self.slot_bytes:
            return None
        slot = self.free.pop()
        offset = slot * self.slot_bytes
        layout = []
        for idx, t, frame in chunk:
            view = np.ndarray(frame.shape, frame.dtype, buffer=self.buf, offset=offset)
            view[...] = frame
            layout.append((idx, t, frame.shape, frame.dtype.str, offset))
            offset += frame.nbytes
        return ("shared", slot, layout)

    def view(self, task: tuple) -> list:
        """The chunk a `put` described, as views into the shared slot (no copy)."""
        _, _, layout = task
        return [(idx, t, np.ndarray(shape, np.dtype(dt), buffer=self.buf, offset=off))
                for idx, t, shape, dt, off in layout]  # fmt: skip

    def release(self, task: Any) -> None:
        if isinstance(task, tuple) and task[:1] == ("shared",):
            self.free.append(task[1])

    def close(self) -> None:
        with contextlib.suppress(BufferError):  # a view still alive: the mapping goes at exit
            self.buf.close()


def _worker_main(
    init_args: tuple, tasks: Any, results: Any, finder: Any = None, shared: Any = None
) -> None:
    import signal

    import cv2

    # Ctrl-C is the main process's to handle (it saves, then stops the workers)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # each worker is one core's worth of work: no OpenCV/BLAS thread pools on top
    cv2.setNumThreads(1)
    try:
        if finder is None:  # spawned: load the models here (forked workers share the parent's)
            from faceswap.extract.finder import FaceFinder

            finder = FaceFinder(*init_args)
    except BaseException as exc:  # noqa: BLE001 (reported to the main process, then exit)
        results.put((-1, False, _describe(exc, "while starting")))
        raise SystemExit(1) from None
    results.put((-1, True, None))  # ready
    while True:
        task = tasks.get()
        if task is None:
            return
        seq, chunk = task
        try:
            if isinstance(chunk, tuple):  # frames in the shared slots
                chunk = shared.view(chunk)
            results.put((seq, True, finder.process(chunk)))
        except BaseException as exc:  # noqa: BLE001
            results.put((seq, False, _describe(exc, f"on frames {chunk[0][0]}-{chunk[-1][0]}")))
            raise SystemExit(1) from None


def _describe(exc: BaseException, when: str) -> str:
    last = traceback.format_exception(exc)[-2].strip().splitlines()[0] if exc.__traceback__ else ""
    where = f" at {last}" if last else ""
    return f"{type(exc).__name__}: {exc} ({when}{where})"


class WorkerPool:
    """`n` worker processes, each holding a FaceFinder(*init_args)."""

    def __init__(self, n: int, init_args: tuple, preload: bool = False) -> None:
        """preload: load the models once here and fork the workers, which then share them
        (copy-on-write): ~1 s of CPU less per worker than spawning a fresh interpreter that
        imports everything and loads the models again. Only where forking is safe: on Linux,
        without torch loaded (its thread pools do not survive a fork), and when the caller
        holds no pipes to other programs (a forked worker would keep them open)."""
        self.n = n
        self.ready = 0
        finder = None
        self.shared: SharedFrames | None = None
        if preload and sys.platform.startswith("linux") and "torch" not in sys.modules:
            from faceswap.extract.finder import FaceFinder

            finder = FaceFinder(*init_args)
            ctx = mp.get_context("fork")
            self.shared = SharedFrames(self.in_flight_limit())
        else:
            ctx = mp.get_context("spawn")
        self.tasks = ctx.Queue()
        self.results = ctx.Queue()
        self.procs = [
            ctx.Process(
                target=_worker_main,
                args=(init_args, self.tasks, self.results, finder, self.shared),
                name=f"faceswap-extract-{i}",
                daemon=True,
            )  # fmt: skip
            for i in range(n)
        ]
        for p in self.procs:
            p.start()

    def in_flight_limit(self, in_flight: int | None = None) -> int:
        return in_flight or 2 * self.n

    def _check_alive(self) -> None:
        for p in self.procs:
            if p.exitcode is not None:
                how = (f"was killed by signal {-p.exitcode}" if p.exitcode < 0
                       else f"exited with code {p.exitcode}")  # fmt: skip
                hint = " (out of memory?)" if p.exitcode == -9 else ""
                raise WorkerError(f"an extract worker process {how}{hint}")

    def _get(self, poll: Callable[[], None] | None = None) -> tuple[int, bool, Any]:
        while True:
            try:
                seq, ok, payload = self.results.get(timeout=0.1 if poll else _POLL_S)
            except queue.Empty:
                self._check_alive()
                if poll is not None:
                    poll()  # the caller's chance to stop waiting (it raises)
                continue
            if not ok:
                raise WorkerError(f"an extract worker failed: {payload}")
            if seq == -1:
                self.ready += 1
                continue
            return seq, ok, payload

    def imap(
        self,
        chunks: Iterable[list],
        in_flight: int | None = None,
        poll: Callable[[], None] | None = None,
    ) -> Iterator[Any]:
        """ChunkResults of `chunks` in order; at most `in_flight` chunks (2 per worker) are
        queued or being worked on, so memory stays flat however long the input is. `poll` is
        called ten times a second while waiting; it may raise to stop."""
        limit = self.in_flight_limit(in_flight)
        it = iter(chunks)
        done: dict[int, Any] = {}
        sent_as: dict[int, Any] = {}  # seq -> the shared slot its frames lie in
        sent = next_out = 0
        exhausted = False
        while True:
            while not exhausted and sent - next_out < limit:
                try:
                    chunk = next(it)
                except StopIteration:
                    exhausted = True
                    break
                task = self.shared.put(chunk) if self.shared is not None else None
                if task is not None:
                    sent_as[sent] = task
                self.tasks.put((sent, chunk if task is None else task))
                sent += 1
            if exhausted and next_out == sent:
                return
            while next_out not in done:
                seq, _, result = self._get(poll)
                done[seq] = result
                if self.shared is not None and seq in sent_as:
                    self.shared.release(sent_as.pop(seq))
            yield done.pop(next_out)
            next_out += 1

    def close(self) -> None:
        """Stop the workers (at once: a chunk being worked on is abandoned, which is what
        an interrupted or failed run wants; a finished run has nothing in flight)."""
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=5)
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()
        if self.shared is not None:
            self.shared.close()


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate `items` in a background thread, `depth` ahead: decoding (which releases the
    GIL) overlaps with the main thread writing faces. An exception in the producer is raised
    here, in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((True, end))
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer)
            q.put((False, exc))

    t = threading.Thread(target=produce, name="faceswap-decode", daemon=True)
    t.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()
        # drain so a producer blocked on put() sees `stop` and ends
        while t.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.1)
