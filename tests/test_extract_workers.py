"""Extract's worker processes: failures surface within seconds instead of hanging the run."""

from __future__ import annotations

import os
import signal
import time

import pytest

from faceswap.config import ExtractConfig
from faceswap.extract.finder import Backends
from faceswap.extract.workers import Chunk, FrameSlots, WorkerError, WorkerPool, prefetch


def test_worker_that_cannot_start_fails_the_run_fast():
    cfg = ExtractConfig(size=64, embed=False)
    pool = WorkerPool(2, (cfg, Backends("no-such-detector", "dlib", "cpu"), None, False))
    t0 = time.monotonic()
    try:
        with pytest.raises(WorkerError, match="no-such-detector.*while starting"):
            list(pool.imap(iter([[(0, None, None)]])))
    finally:
        pool.close()
    assert time.monotonic() - t0 < 30  # a Pool waited forever here


def test_worker_killed_mid_run_fails_the_run_fast(astronaut_clip):
    from helpers import read_frames

    frames = read_frames(astronaut_clip[0])[:4]
    cfg = ExtractConfig(size=64, embed=False)
    pool = WorkerPool(1, (cfg, Backends("dlib-hog", "dlib", "cpu"), None, False))
    try:
        chunks = [[(i, None, f)] for i, f in enumerate(frames)]
        results = pool.imap(iter(chunks))
        assert next(results).frames == [0]
        os.kill(pool.procs[0].pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(WorkerError, match="killed by signal 9"):
            list(results)
        assert time.monotonic() - t0 < 5
    finally:
        pool.close()


def test_prefetch_keeps_order_and_raises_the_producers_error():
    assert list(prefetch(iter(range(10)), depth=2)) == list(range(10))

    def broken():
        yield 1
        raise ValueError("bad frame")

    got = []
    with pytest.raises(ValueError, match="bad frame"):
        for x in prefetch(broken()):
            got.append(x)
    assert got == [1]
    # a consumer that stops early leaves no producer thread behind
    it = prefetch(iter(range(1000)), depth=2)
    assert next(it) == 0
    it.close()


def test_convert_detection_runs_on_the_same_workers(astronaut_clip):
    from faceswap.convert.faces import Detector, Stopped

    from helpers import read_frames

    frames = read_frames(astronaut_clip[0])[:8]
    det = Detector(ExtractConfig(workers=2, chunk=4))
    out = list(det.run(iter(enumerate(frames)), lambda: False))
    assert [i for i, _, _ in out] == list(range(8))
    assert all(len(faces) == 1 for _, _, faces in out)
    t0 = time.monotonic()
    with pytest.raises(Stopped):  # another stage failed: detection stops waiting at once
        list(det.run(iter(enumerate(frames)), lambda: True))
    assert time.monotonic() - t0 < 30


def test_cli_extract_forks_preloaded_workers_and_never_imports_torch(astronaut_clip, tmp_path):
    import subprocess
    import sys

    from faceswap import faceset as fsmod

    out = tmp_path / "set"
    code = (
        "import sys\nfrom faceswap.cli import main\n"
        f"rc = main(['extract', {str(astronaut_clip[0])!r}, '-o', {str(out)!r}, '--size', '64',"
        " '--workers', '2', '--no-embed'])\n"
        "assert 'torch' not in sys.modules, 'extract imported torch'\nsys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    fs = fsmod.load(out)
    assert sorted(f.frame for f in fs.faces) == list(range(len(astronaut_clip[1])))


def test_frames_decoded_into_slots_travel_by_place_and_fall_back_when_they_do_not_fit():
    import numpy as np

    slots = FrameSlots(2, frames_per_slot=1)  # one full-HD frame per slot
    rng = np.random.default_rng(0)
    a, b = slots.acquire(), slots.acquire()
    assert a is not None and b is not None and slots.acquire() is None  # all in use: never waits
    chunk = Chunk()
    chunk.slot = a
    frame = rng.integers(0, 255, (1080, 1920, 3), np.uint8)
    into = slots.buffer(a, 0, frame.shape)
    into[...] = frame  # as the decoder writes it
    chunk.append((7, 0.28, into))
    task = slots.task(chunk)
    assert task is not None
    [(idx, t, got)] = slots.view(task)
    assert (idx, t) == (7, 0.28) and np.array_equal(got, frame)
    assert slots.buffer(a, 1, frame.shape) is None  # a second frame does not fit the slot
    chunk.append((8, 0.32, frame))  # decoded into an array of its own: the chunk is pickled
    assert slots.task(chunk) is None
    slots.release(a)
    assert slots.acquire() == a
    del got, into
    slots.close()
