"""Where the faces of each frame come from: found like extract finds them, or looked up in a
face set that was extracted from the same clip (`--alignments`), which skips detection.

Both give, per frame, a list of `RawFace` (68 landmarks in frame pixels and, when known, an
identity embedding). Smoothing, the crop matrices and the identity check come after, the same
for both.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceswap import faceset as fsmod
from faceswap.config import ExtractConfig
from faceswap.errors import BadInput
from faceswap.media import MediaSource

log = logging.getLogger(__name__)

Frame = tuple[int, np.ndarray]  # (frame index, BGR frame (H, W, 3) uint8)


@dataclass
class RawFace:
    landmarks: np.ndarray  # (68, 2) frame pixels
    embedding: np.ndarray | None = None  # (128,) when the face set has one


class AlignmentsLookup:
    """The faces of one source clip in a face set, by frame index.

    The source is matched by the SHA-256 of its file, so a renamed copy of the clip works and
    an edited or re-encoded one is refused. Rejected faces count too (a face that curation took
    out of the training set, say as a near-duplicate, still has to be swapped), except those
    rejected as another person's.
    """

    def __init__(self, path: str | os.PathLike, src: MediaSource) -> None:
        self.path = Path(path)
        fs = fsmod.load(self.path)
        keys = [k for k, s in fs.sources.items() if s.sha256 == src.sha256]
        if not keys:
            raise BadInput(f"{self.path}: face set holds no faces of {src.path} (no source "
                           "with its SHA-256); extract this clip into it, or drop --alignments")  # fmt: skip
        self.source = fs.sources[keys[0]]
        self.by_frame: dict[int, list[RawFace]] = defaultdict(list)
        records = fs.faces + [f for f in fs.rejected if f.reason != "identity"]
        for f in sorted(records, key=lambda f: (f.frame, f.box[0])):
            if f.source == keys[0]:
                emb = None if f.embedding is None else np.asarray(f.embedding, np.float32)
                self.by_frame[f.frame].append(RawFace(f.landmarks_array(), emb))

    def count(self, start: int, end: int | None) -> int:
        """Faces in frames [start, end)."""
        return sum(len(v) for k, v in self.by_frame.items()
                   if k >= start and (end is None or k < end))  # fmt: skip

    def uncovered(self, frames: range) -> int:
        """How many of these frames the face set's extraction never processed."""
        return sum(1 for i in frames if not self.source.is_processed(i))

    def faces(self, index: int) -> list[RawFace]:
        return self.by_frame.get(index, [])


# ---- detection, as in extract -----------------------------------------------------------


class Detector:
    """Finds faces in runs of consecutive frames with extract's FaceFinder (same detector,
    aligner, tracking and options), in worker processes on a multi-core CPU.

    `run(frames, stop)` yields (index, frame, faces) in frame order; frames go out in chunks
    of `cfg.chunk` consecutive frames (a face track restarts per chunk, as in extract), at most
    one chunk per worker plus one in flight, so memory stays bounded.
    """

    def __init__(self, cfg: ExtractConfig, random_init: bool = False) -> None:
        from faceswap.extract.pipeline import resolve_backends

        # crops, embeddings and measurements of extract are not needed here: the smallest
        # crop and no embedding keep FaceFinder's extra work to a minimum
        self.cfg = dataclasses.replace(cfg, size=64, embed=False, image_format="jpg")
        self.backends = resolve_backends(self.cfg, check_weights=not random_init)
        self.random_init = random_init
        n = self.cfg.workers or (os.cpu_count() or 1)
        if self.backends.device != "cpu" or {self.backends.detector, self.backends.aligner} & {
            "s3fd",
            "fan",
        }:
            n = 1  # torch backends batch on one device
        self.workers = n
        self.seconds = 0.0

    def run(
        self, frames: Iterator[Frame], stopped: Callable[[], bool]
    ) -> Iterator[tuple[int, np.ndarray, list[RawFace]]]:
        import time

        def chunks() -> Iterator[list[Frame]]:
            chunk: list[Frame] = []
            for idx, frame in frames:
                if chunk and (len(chunk) >= self.cfg.chunk or idx != chunk[-1][0] + 1):
                    yield chunk
                    chunk = []
                chunk.append((idx, frame))
            if chunk:
                yield chunk

        def split(chunk: list[Frame], result) -> Iterator[tuple[int, np.ndarray, list[RawFace]]]:
            by_frame: dict[int, list[RawFace]] = defaultdict(list)
            for f in sorted(result.faces, key=lambda f: (f.frame, f.index)):
                by_frame[f.frame].append(RawFace(np.asarray(f.landmarks, np.float64)))
            for idx, frame in chunk:
                yield idx, frame, by_frame.get(idx, [])

        def task(chunk: list[Frame]) -> list:
            return [(idx, None, frame) for idx, frame in chunk]

        if self.workers == 1:
            from faceswap.extract.finder import FaceFinder

            finder = FaceFinder(self.cfg, self.backends, None, self.random_init)
            for chunk in chunks():
                t0 = time.perf_counter()
                result = finder.process(task(chunk))
                self.seconds += time.perf_counter() - t0
                yield from split(chunk, result)
            return
        from collections import deque

        from faceswap.extract.workers import WorkerPool

        # a worker that cannot start or dies fails the run within a second (workers.py)
        pool = WorkerPool(self.workers, (self.cfg, self.backends, None, self.random_init))
        sent: deque = deque()  # chunks out, oldest first: results come back in this order

        def tasks() -> Iterator[list]:
            for chunk in chunks():
                sent.append(chunk)
                yield task(chunk)

        def poll() -> None:
            if stopped():
                raise Stopped

        try:
            t0 = time.perf_counter()
            for result in pool.imap(tasks(), in_flight=self.workers + 1, poll=poll):
                self.seconds += time.perf_counter() - t0  # time the pipeline waited
                yield from split(sent.popleft(), result)
                t0 = time.perf_counter()
        finally:
            pool.close()


class Stopped(Exception):
    """Another stage failed or the user interrupted: stop quietly."""
