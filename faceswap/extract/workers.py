"""Worker processes for extraction: N spawned processes run FaceFinder.process on chunks of
frames; results come back in submission order.

Why not multiprocessing.Pool: a Pool replaces a worker that dies and waits for its lost task
forever, so a worker that cannot start (a missing model, an import error, the OOM killer)
made `extract` hang. Here the main process watches its workers while it waits: a worker that
reports an error, or exits, fails the run within a second with what happened.

The workers are started first thing, so loading their models (about a second each) overlaps
with the main process probing and hashing the inputs.

Forked workers get their frames through memory shared with the main process (`FrameSlots`,
which the frames are decoded into): pickling a 720p frame and pushing it through a pipe cost
~10 ms of CPU (pickle, two copies through the kernel, unpickle), more than a tracked face's
detection, landmarks and crop together.
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


# Frames of a chunk are decoded into a slot; a slot holds at most 8 GiB / slots, 32 full-HD
# frames by default. A frame that does not fit (4K, a longer chunk) gets its own array and its
# chunk travels pickled instead. Only the pages that frames touch take memory.
_SLOTS_BYTES = 8 << 30


class Chunk(list):
    """Consecutive (frame index, seconds, BGR frame) of one source; `slot`: the FrameSlots
    slot its frames were decoded into (None: frames of their own)."""

    slot: int | None = None


class FrameSlots:
    """Buffers that frames are decoded straight into, reused chunk after chunk.

    Decoding into a buffer whose pages are already mapped costs less than half of decoding into
    a fresh array (~0.9 against ~2.1 ms at 720p: a new 2.7 MB array is page-faulted and zeroed
    each time). The buffers are one anonymous shared mapping, made before the workers fork so
    that they inherit it: the main process sends only where a chunk's frames lie and the worker
    reads them in place, where pickling a 720p frame through a pipe cost ~10 ms of CPU. A slot
    is free again once its chunk is processed (a result holds no view of the frames: faces are
    encoded bytes and small arrays).
    """

    def __init__(self, slots: int, frames_per_slot: int) -> None:
        self.slot_bytes = min(frames_per_slot * 1920 * 1080 * 3, _SLOTS_BYTES // slots)
        self.buf = mmap.mmap(-1, slots * self.slot_bytes)  # MAP_SHARED | MAP_ANONYMOUS
        # last in, first out: the slots in use stay few, their pages mapped (memory, faults)
        self.free: queue.LifoQueue[int] = queue.LifoQueue()  # taken by the decoding thread
        for i in reversed(range(slots)):
            self.free.put(i)

    def acquire(self) -> int | None:
        """A free slot, or None when all are in use (the frames then get arrays of their own:
        never waits, so a stopped consumer cannot leave the decoder blocked)."""
        try:
            return self.free.get_nowait()
        except queue.Empty:
            return None

    def release(self, slot: int | None) -> None:
        if slot is not None:
            self.free.put(slot)

    def buffer(self, slot: int | None, position: int, shape: tuple[int, ...]) -> np.ndarray | None:
        """Where the `position`-th frame of a slot goes, if a frame of `shape` fits there."""
        size = int(np.prod(shape))
        if slot is None or (position + 1) * size > self.slot_bytes:
            return None
        return np.ndarray(
            shape, np.uint8, buffer=self.buf, offset=slot * self.slot_bytes + position * size
        )

    def task(self, chunk: Chunk) -> tuple | None:
        """("shared", layout) when every frame of the chunk lies in its slot, else None."""
        if chunk.slot is None:
            return None
        layout = []
        for pos, (idx, t, frame) in enumerate(chunk):
            view = self.buffer(chunk.slot, pos, frame.shape)
            if view is None or not (frame is view or np.shares_memory(frame, view)):
                return None
            layout.append((idx, t, frame.shape, chunk.slot * self.slot_bytes + pos * frame.nbytes))
        return ("shared", layout)

    def view(self, task: tuple) -> list:
        """The chunk a `task` describes, as views into the shared slot (no copy)."""
        return [(idx, t, np.ndarray(shape, np.uint8, buffer=self.buf, offset=off))
                for idx, t, shape, off in task[1]]  # fmt: skip

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

    def __init__(
        self,
        n: int,
        init_args: tuple,
        preload: bool = False,
        frame_slots: int = 0,
        frames_per_slot: int = 32,
    ) -> None:
        """preload: load the models once here and fork the workers, which then share them
        (copy-on-write): ~1 s of CPU less per worker than spawning a fresh interpreter that
        imports everything and loads the models again. Only where forking is safe: on Linux,
        without torch loaded (its thread pools do not survive a fork), and when the caller
        holds no pipes to other programs (a forked worker would keep them open).
        frame_slots: with forked workers, that many FrameSlots of `frames_per_slot` frames
        (`shared`) for the caller to decode chunks into."""
        self.n = n
        self.ready = 0
        finder = None
        self.shared: FrameSlots | None = None
        if preload and sys.platform.startswith("linux") and "torch" not in sys.modules:
            from faceswap.extract.finder import FaceFinder

            finder = FaceFinder(*init_args)
            ctx = mp.get_context("fork")
            if frame_slots:
                self.shared = FrameSlots(frame_slots, frames_per_slot)
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
        limit = in_flight or 2 * self.n
        it = iter(chunks)
        done: dict[int, Any] = {}
        sent_as: dict[int, int] = {}  # seq -> the slot its frames were decoded into
        sent = next_out = 0
        exhausted = False
        while True:
            while not exhausted and sent - next_out < limit:
                try:
                    chunk = next(it)
                except StopIteration:
                    exhausted = True
                    break
                slot = getattr(chunk, "slot", None)
                task = self.shared.task(chunk) if self.shared is not None else None
                if slot is not None:
                    sent_as[sent] = slot
                self.tasks.put((sent, list(chunk) if task is None else task))
                sent += 1
            if exhausted and next_out == sent:
                return
            while next_out not in done:
                seq, _, result = self._get(poll)
                done[seq] = result
                if self.shared is not None and seq in sent_as:
                    self.shared.release(sent_as.pop(seq))  # the worker is done with its frames
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
