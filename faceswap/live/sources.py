"""Frame sources of a live session: a camera, a video file played in real time, or a stream.

A capture thread reads frames (OpenCV) and hands each, with its capture time, to a bounded
`LatestQueue`: when the consumer is slower than the source the OLDEST waiting frame is dropped,
never the new one, so what is shown is always as recent as possible and memory is bounded.

A file plays at its own frame rate as a camera would deliver it: frame i is due at i / fps
seconds after the start; frames the reader is too late for are skipped without decoding
(`grab`). `realtime=False` reads a file as fast as it is consumed instead (every frame, none
dropped: for offline use and throughput benchmarks).

A camera or stream that stops delivering (a stall: `read` blocks or keeps failing) or goes away
(disconnect: `read` fails and the device closes) must not hang the session: the consumer waits
at most `stall_timeout` seconds for a frame, and the capture thread reports read failures.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceswap.errors import BadInput

log = logging.getLogger(__name__)

# a camera that fails this many reads in a row has gone away (a few failures are normal while
# a USB camera starts)
FAILED_READS = 30


class SourceLost(BadInput):
    """The camera or stream stalled or disconnected (exit 2: a problem with the input)."""


@dataclass
class Frame:
    index: int  # position in the source (camera: frames read so far)
    t: float  # capture time, time.perf_counter() seconds
    image: np.ndarray  # (H, W, 3) BGR uint8


class LatestQueue:
    """A bounded queue that drops its oldest item when full (and counts the drops)."""

    def __init__(self, maxsize: int) -> None:
        self.items: collections.deque = collections.deque()
        self.maxsize = maxsize
        self.cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, item: Any) -> None:
        with self.cond:
            if len(self.items) >= self.maxsize:
                self.items.popleft()
                self.dropped += 1
            self.items.append(item)
            self.cond.notify()

    def put_wait(self, item: Any, stop: threading.Event) -> None:
        """Put without dropping: wait for room (unpaced file reading)."""
        with self.cond:
            while len(self.items) >= self.maxsize and not stop.is_set():
                self.cond.wait(0.05)
            self.items.append(item)
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def get(self, timeout: float) -> Any:
        """The oldest item; None when closed and empty; TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.items:
                if self.closed:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.cond.wait(left)
            item = self.items.popleft()
            self.cond.notify_all()
            return item


class Source:
    """One opened source and its capture thread; `next_frame()` in the consumer."""

    def __init__(self, spec: str, kind: str, cap: Any, fps: float, width: int, height: int,
                 frames: int | None, realtime: bool, queue: int, stall_timeout: float
                 ) -> None:  # fmt: skip
        self.spec, self.kind, self.cap = spec, kind, cap
        self.fps, self.width, self.height, self.frames = fps, width, height, frames
        self.realtime = realtime or kind != "file"
        self.stall_timeout = stall_timeout
        self.queue = LatestQueue(queue)
        self.stop = threading.Event()
        self.read = 0  # frames captured
        self.skipped = 0  # file frames passed over because the reader was late (realtime)
        self.error: str | None = None  # why the capture ended early
        self.ended = False
        self.thread = threading.Thread(target=self._run, name="live-capture", daemon=True)

    @property
    def name(self) -> str:
        return {"camera": f"camera {self.spec}", "file": str(self.spec),
                "stream": f"stream {self.spec}"}[self.kind]  # fmt: skip

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.thread.start()

    def _run(self) -> None:
        failures = 0
        index = 0
        try:
            while not self.stop.is_set():
                if self.kind == "file" and self.realtime:
                    due = self.t0 + index / self.fps
                    now = time.perf_counter()
                    if now < due:
                        time.sleep(due - now)
                    elif now - due > 1.0 / self.fps:
                        # late by more than a frame: skip it unseen, as a camera would
                        if not self.cap.grab():
                            break
                        index += 1
                        self.skipped += 1
                        continue
                ok, image = self.cap.read()
                if not ok or image is None:
                    if self.kind == "file":
                        break  # the end of the file
                    failures += 1
                    opened = self.cap.isOpened()
                    if not opened or failures >= FAILED_READS:
                        self.error = (f"{self.name} disconnected (reads failed"
                                      f"{'' if opened else ', device closed'})")  # fmt: skip
                        break
                    time.sleep(0.01)
                    continue
                failures = 0
                frame = Frame(index, time.perf_counter(), image)
                index += 1
                self.read += 1
                if self.realtime:
                    self.queue.put(frame)
                else:
                    self.queue.put_wait(frame, self.stop)
        except Exception as exc:  # noqa: BLE001 - a driver error ends the source, reported
            self.error = f"{self.name}: capture failed: {exc}"
        finally:
            self.ended = True
            self.queue.close()

    def next_frame(self) -> Frame | None:
        """The next frame to process; None at the end of a file. SourceLost on a stall (no
        frame for stall_timeout seconds) or a disconnect."""
        try:
            frame = self.queue.get(self.stall_timeout)
        except TimeoutError:
            raise SourceLost(f"{self.name} stalled: no frame for {self.stall_timeout:g} s "
                             "(camera busy or unplugged, or the stream stopped)") from None  # fmt: skip
        if frame is None and self.error:
            raise SourceLost(self.error)
        return frame

    @property
    def dropped(self) -> int:
        """Frames captured but never processed (the consumer was slower than the source)."""
        return self.queue.dropped

    def close(self) -> None:
        self.stop.set()
        if self.thread.ident is None:  # never started
            self.cap.release()
            return
        # a read blocked in the driver cannot be interrupted: the daemon thread is left to
        # finish on its own rather than hang the session waiting for it
        self.thread.join(timeout=1.0)
        if not self.thread.is_alive():
            self.cap.release()


def _kind(spec: str) -> str:
    if spec.isdigit():
        return "camera"
    if "://" in spec:
        return "stream"
    return "file"


def open_source(spec: str, *, realtime: bool = True, queue: int = 2, stall_timeout: float = 3.0,
                open_timeout: float = 10.0,
                capture: Callable[[Any], Any] | None = None) -> Source:  # fmt: skip
    """Open a camera index ("0"), a video file, or a stream URL (rtsp://, http://, ...).

    capture: the VideoCapture factory (tests pass a fake camera).
    """
    spec = str(spec)
    kind = _kind(spec)
    factory = capture or cv2.VideoCapture
    if kind == "file":
        path = Path(spec)
        if not path.is_file():
            raise BadInput(f"--source {spec}: no such file (a camera is a number: --source 0)")
        cap = factory(str(path))
    elif kind == "camera":
        cap = _open_with_timeout(lambda: factory(int(spec)), open_timeout, f"camera {spec}")
    else:
        cap = _open_with_timeout(lambda: factory(spec), open_timeout, f"stream {spec}")
    if cap is None or not cap.isOpened():
        what = {"camera": f"camera {spec}: cannot open it (no such device, or in use)",
                "file": f"{spec}: cannot open the video", "stream": f"stream {spec}: cannot "
                "connect"}[kind]  # fmt: skip
        raise BadInput(f"--source {what}")
    if kind != "file" and hasattr(cap, "set"):
        # the driver's own frame buffer adds latency (each buffered frame is one frame late);
        # backends that do not support the property ignore it
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not 1.0 <= fps <= 240.0:
        fps = 30.0  # cameras and streams often do not say
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if kind == "file" else None
    if width <= 0 or height <= 0:
        raise BadInput(f"--source {spec}: the source reports no frame size")
    return Source(spec, kind, cap, fps, width, height, frames or None, realtime, queue,
                  stall_timeout)  # fmt: skip


def _open_with_timeout(make: Callable[[], Any], timeout: float, what: str) -> Any:
    """Open a device or stream in a thread: a dead network stream can block OpenCV's open for
    a long time, and the session must not hang on it."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["cap"] = make()
        except Exception as exc:  # noqa: BLE001 - reported below
            box["error"] = exc

    t = threading.Thread(target=run, name="live-open", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise SourceLost(f"--source {what}: no answer after {timeout:g} s")
    if "error" in box:
        raise BadInput(f"--source {what}: cannot open it ({box['error']})")
    return box.get("cap")
