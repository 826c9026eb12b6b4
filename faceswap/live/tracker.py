"""Faces of a live stream, frame by frame: extract's detector, tracker and landmarks.

The same FaceFinder as extract and convert (same backends and options), used one frame at a
time: a face found in one frame is looked for in the next only around its last box
(`FaceFinder.detect_near`, a few ms instead of a whole-frame search), and the whole frame is
searched when a track is lost and every `redetect_every` frames for new faces. Each face keeps
its own One-Euro smoother, restarted when its track starts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from faceswap.config import ExtractConfig
from faceswap.extract.finder import FaceFinder, iou
from faceswap.live.oneeuro import OneEuroFilter

log = logging.getLogger(__name__)


@dataclass
class Track:
    id: int
    box: np.ndarray  # (4,) x0 y0 x1 y1, frame pixels
    smoother: OneEuroFilter


@dataclass
class TrackedFace:
    track: int
    landmarks: np.ndarray  # (68, 2) smoothed, frame pixels
    raw: np.ndarray  # (68, 2) as the aligner gave them


@dataclass
class TrackerStats:
    frames: int = 0
    full_searches: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {"detect": 0.0, "landmarks": 0.0})


class LiveTracker:
    """`faces(frame_bgr, t)` -> the frame's faces, left to right, smoothed."""

    def __init__(self, cfg: ExtractConfig, smooth: bool, min_cutoff: float, beta: float,
                 random_init: bool = False) -> None:  # fmt: skip
        from faceswap.extract.pipeline import resolve_backends

        self.cfg = cfg
        backends = resolve_backends(cfg, check_weights=not random_init)
        self.finder = FaceFinder(cfg, backends, None, random_init)
        self.backends = backends
        self.smooth, self.min_cutoff, self.beta = smooth, min_cutoff, beta
        self.tracks: list[Track] = []
        self.next_id = 0
        self.since_search = 0
        self.stats = TrackerStats()

    def _full_search(self, rgb: np.ndarray) -> list[np.ndarray]:
        self.stats.full_searches += 1
        self.since_search = 0
        dets = [d for d in self.finder.detect(rgb)
                if min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= self.cfg.min_size]  # fmt: skip
        dets.sort(key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        if self.cfg.max_faces:
            dets = dets[: self.cfg.max_faces]
        return [d.box for d in dets]

    def faces(self, frame_bgr: np.ndarray, t: float) -> list[TrackedFace]:
        self.stats.frames += 1
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        t0 = time.perf_counter()
        boxes: list[tuple[np.ndarray, Track | None]] = []
        search = (not self.cfg.track or not self.tracks
                  or self.since_search + 1 >= self.cfg.redetect_every)  # fmt: skip
        if not search:
            for trk in self.tracks:
                det = self.finder.detect_near(rgb, trk.box)
                if det is None:  # lost: the face left, turned away or was covered
                    search = True
                    break
                boxes.append((det.box, trk))
        if search:
            boxes = []
            for box in self._full_search(rgb):
                trk = max(self.tracks, key=lambda k: iou(k.box, box), default=None)
                boxes.append((box, trk if trk is not None and iou(trk.box, box) >= 0.3 else None))
        else:
            self.since_search += 1
        t1 = time.perf_counter()
        self.stats.seconds["detect"] += t1 - t0
        out: list[TrackedFace] = []
        tracks: list[Track] = []
        if boxes:
            lms_all = self.finder.aligner.landmarks(rgb, [b for b, _ in boxes])
            for (box, trk), lms in zip(boxes, lms_all):
                if trk is None or trk in tracks:
                    trk = Track(self.next_id, box, OneEuroFilter(self.min_cutoff, self.beta))
                    self.next_id += 1
                trk.box = np.asarray(box, float)
                tracks.append(trk)
                lms = np.asarray(lms, np.float64)
                smoothed = trk.smoother(lms, t) if self.smooth else lms
                out.append(TrackedFace(trk.id, smoothed, lms))
        self.tracks = tracks
        self.stats.seconds["landmarks"] += time.perf_counter() - t1
        out.sort(key=lambda f: f.landmarks[:, 0].mean())
        return out
