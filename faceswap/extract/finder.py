"""Find, align and measure the faces in a run of consecutive frames of one source.

This is the per-frame work of extraction, and it runs in worker processes: detect (on a
downscaled frame) -> 68 landmarks (on the full frame) -> similarity alignment -> crop ->
pose, blur, consistency -> identity embedding (sampled per track) -> encoded crop.

Tracking: after a full-frame detection, a face's box is carried to the next frame in the
face's own coordinates (so it moves, turns and scales with the face) and the aligner runs on
that box directly, skipping detection. A track is dropped when its landmarks stop looking like
a face, and the whole frame is searched again every `redetect_every` frames to pick up new
faces. This makes detection, the costliest stage, run on a fraction of the frames.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import cv2
import numpy as np

from faceswap.config import ExtractConfig
from faceswap.extract import alignment
from faceswap.extract.aligners import make_aligner
from faceswap.extract.detectors import Detection, make_detector
from faceswap.extract.identity import DlibEmbedder, distances
from faceswap.extract.quality import blur_score, head_pose, landmark_jitter

log = logging.getLogger(__name__)

# A tracked face whose aligned landmarks are this far from the mean face (fraction of the
# crop side) or this unstable (eye distances) is treated as lost and searched for again.
_LOST_RESIDUAL = 0.09
_LOST_JITTER = 0.35


@dataclass
class FoundFace:
    """One face found in one frame, measured, with its encoded aligned crop."""

    frame: int
    time: float | None
    index: int  # position of the face within its frame (left to right)
    box: np.ndarray
    score: float
    landmarks: np.ndarray  # (68, 2) frame pixels
    matrix: np.ndarray  # (2, 3)
    yaw: float
    pitch: float
    roll: float
    blur: float
    residual: float
    jitter: float
    track: int
    embedding: np.ndarray | None = None
    embedding_frame: int | None = None
    identity_distance: float | None = None
    image: bytes = b""
    rejected: str | None = None  # reason, when the face is kept only as a rejected face


@dataclass
class ChunkResult:
    frames: list[int]
    faces: list[FoundFace]
    dropped: dict[str, int]  # reason -> count of detections not kept at all
    seconds: dict[str, float]  # stage -> seconds spent in this chunk


@dataclass
class _Track:
    id: int
    box_unit: np.ndarray  # detector box (cx, cy, w, h) in the face's unit-template frame
    box: np.ndarray
    score: float
    embedding: np.ndarray | None = None
    embedding_frame: int = -(10**9)
    identity_distance: float | None = None


@dataclass
class Backends:
    """Resolved backend names and the torch device for this run."""

    detector: str
    aligner: str
    device: str
    extra: dict = field(default_factory=dict)


def _box_to_unit(box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A box as (cx, cy, w, h) in the face's unit-template frame."""
    m = alignment.umeyama(landmarks[alignment.FIT_POINTS], alignment.MEAN_FACE)
    s = alignment.matrix_scale(m)
    c = alignment.transform_points(m, [[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]])[0]
    return np.array([c[0], c[1], (box[2] - box[0]) * s, (box[3] - box[1]) * s])


def _box_from_unit(box_unit: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    m = alignment.umeyama(landmarks[alignment.FIT_POINTS], alignment.MEAN_FACE)
    s = alignment.matrix_scale(m)
    c = alignment.transform_points(alignment.invert(m), [box_unit[:2]])[0]
    w, h = box_unit[2] / s, box_unit[3] / s
    return np.array([c[0] - w / 2, c[1] - h / 2, c[0] + w / 2, c[1] + h / 2])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class FaceFinder:
    """Holds the loaded backends; `process` handles one chunk of consecutive frames."""

    def __init__(
        self,
        cfg: ExtractConfig,
        backends: Backends,
        refs: np.ndarray | None = None,
        random_init: bool = False,
    ) -> None:
        self.cfg = cfg
        kw = dict(
            device=backends.device,
            weights_dir=cfg.weights_dir,
            upsample=cfg.upsample,
            min_score=cfg.min_score,
            random_init=random_init,
        )
        self.detector = make_detector(backends.detector, **kw)
        self.aligner = make_aligner(backends.aligner, **kw)
        self.embedder = DlibEmbedder() if (cfg.embed or refs is not None) else None
        self.refs = refs

    # ---- stages ------------------------------------------------------------------------
    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        """Detect on a copy downscaled to detect_size, boxes returned in full-frame pixels."""
        return self.detect_many([frame_rgb])[0]

    def detect_many(self, frames_rgb: list[np.ndarray]) -> list[list[Detection]]:
        """Detect in several frames with one detector call (S3FD batches them on the GPU)."""
        smalls, scales = [], []
        for frame in frames_rgb:
            h, w = frame.shape[:2]
            scale = 1.0
            if self.cfg.detect_size and max(h, w) > self.cfg.detect_size:
                scale = self.cfg.detect_size / max(h, w)
                frame = cv2.resize(frame, (round(w * scale), round(h * scale)),
                                   interpolation=cv2.INTER_AREA)  # fmt: skip
            smalls.append(frame)
            scales.append(scale)
        found = self.detector.detect(smalls)
        return [[d.scaled(1.0 / s) for d in dets] for dets, s in zip(found, scales, strict=True)]

    def _landmarks(self, frame_rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float]:
        """Landmarks for a box, and their consistency under a 5% shift of the box."""
        w, h = box[2] - box[0], box[3] - box[1]
        shifted = box + np.array([0.05 * w, 0.05 * h, 0.05 * w, 0.05 * h])
        a, b = self.aligner.landmarks(frame_rgb, [box, shifted])
        return a, landmark_jitter(a, b)

    # ---- one chunk ---------------------------------------------------------------------
    def process(self, frames: list[tuple[int, float | None, np.ndarray]]) -> ChunkResult:
        cfg = self.cfg
        secs: dict[str, float] = defaultdict(float)
        dropped: dict[str, int] = defaultdict(int)
        faces: list[FoundFace] = []
        tracks: list[_Track] = []
        next_track = 0
        predetected: list[list[Detection]] | None = None
        if not cfg.track and len(frames) > 1:
            # no tracking: every frame is searched, so search them all in one batch
            t0 = time.perf_counter()
            predetected = self.detect_many([cv2.cvtColor(f[2], cv2.COLOR_BGR2RGB) for f in frames])
            secs["detect"] += time.perf_counter() - t0
        for k, (fidx, ftime, bgr) in enumerate(frames):
            t0 = time.perf_counter()
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            fh, fw = rgb.shape[:2]
            secs["decode"] += time.perf_counter() - t0
            candidates: list[tuple[np.ndarray, float, _Track | None]] = []
            full_search = not (cfg.track and tracks) or k % cfg.redetect_every == 0
            if not full_search:
                candidates = [(t.box, t.score, t) for t in tracks]
            # landmarks for tracked boxes; a lost track triggers a full search of this frame
            found: list[tuple[np.ndarray, float, np.ndarray, float, _Track | None]] = []
            t0 = time.perf_counter()
            for box, score, trk in candidates:
                lms, jit = self._landmarks(rgb, box)
                # fast motion: the carried box lags the face; re-run once on the box that the
                # new landmarks put where the detector would have put it
                moved = _box_from_unit(trk.box_unit, lms)
                if np.abs(moved - box).max() > 0.15 * (box[2] - box[0]):
                    box = moved
                    lms, jit = self._landmarks(rgb, box)
                box = _box_from_unit(trk.box_unit, lms)
                m = alignment.crop_matrix(lms, cfg.size, cfg.centering)
                res = alignment.alignment_residual(lms, m, cfg.size, cfg.centering)
                if res > _LOST_RESIDUAL or jit > _LOST_JITTER:
                    full_search = True
                    break
                found.append((box, score, lms, jit, trk))
            secs["landmarks"] += time.perf_counter() - t0
            if full_search:
                t0 = time.perf_counter()
                dets = predetected[k] if predetected is not None else self.detect(rgb)
                secs["detect"] += time.perf_counter() - t0
                kept = []
                for d in dets:
                    if min(d.box[2] - d.box[0], d.box[3] - d.box[1]) < cfg.min_size:
                        dropped["too small"] += 1
                    else:
                        kept.append(d)
                if cfg.max_faces and len(kept) > cfg.max_faces:
                    # the largest faces are the subjects; the rest are crowd and background
                    kept.sort(key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
                    dropped["over max_faces"] += len(kept) - cfg.max_faces
                    kept = kept[: cfg.max_faces]
                found = []
                t0 = time.perf_counter()
                for d in kept:
                    lms, jit = self._landmarks(rgb, d.box)
                    trk = max(tracks, key=lambda t: iou(t.box, d.box), default=None)
                    if trk is not None and iou(trk.box, d.box) < 0.3:
                        trk = None
                    found.append((d.box, d.score, lms, jit, trk))
                secs["landmarks"] += time.perf_counter() - t0
            found.sort(key=lambda f: f[0][0])
            new_tracks: list[_Track] = []
            for n, (box, score, lms, jit, trk) in enumerate(found):
                t0 = time.perf_counter()
                if trk is None or trk in new_tracks:
                    trk = _Track(next_track, np.zeros(4), box, score)
                    next_track += 1
                if full_search:
                    # where the detector puts its box relative to this face, kept for tracking
                    trk.box_unit = _box_to_unit(box, lms)
                trk.score = score
                new_tracks.append(trk)
                m = alignment.crop_matrix(lms, cfg.size, cfg.centering)
                crop = cv2.warpAffine(bgr, m, (cfg.size, cfg.size), flags=cv2.INTER_CUBIC,
                                      borderMode=cv2.BORDER_REFLECT)  # fmt: skip
                aligned = alignment.transform_points(m, lms)
                yaw, pitch, roll = head_pose(lms, (fw, fh))
                face = FoundFace(
                    frame=fidx,
                    time=ftime,
                    index=n,
                    box=np.asarray(box, float),
                    score=float(score),
                    landmarks=lms,
                    matrix=m,
                    yaw=yaw,
                    pitch=pitch,
                    roll=roll,
                    blur=blur_score(crop, aligned),
                    residual=alignment.alignment_residual(lms, m, cfg.size, cfg.centering),
                    jitter=jit,
                    track=trk.id,
                )
                secs["align"] += time.perf_counter() - t0
                if self.embedder is not None:
                    t0 = time.perf_counter()
                    if trk.embedding is None or fidx - trk.embedding_frame >= cfg.embed_every:
                        trk.embedding = self.embedder.embed(rgb, lms)
                        trk.embedding_frame = fidx
                        if self.refs is not None:
                            trk.identity_distance = float(distances(trk.embedding, self.refs)[0])
                    face.embedding = trk.embedding
                    face.embedding_frame = trk.embedding_frame
                    face.identity_distance = trk.identity_distance
                    secs["embed"] += time.perf_counter() - t0
                if (
                    face.identity_distance is not None
                    and face.identity_distance > cfg.identity_threshold
                ):
                    face.rejected = "identity"
                t0 = time.perf_counter()
                face.image = encode(crop, cfg.image_format, cfg.jpeg_quality)
                secs["encode"] += time.perf_counter() - t0
                faces.append(face)
            # carry each track's box into the next frame, placed by this frame's landmarks
            for trk, (_, _, lms, _, _) in zip(new_tracks, found, strict=True):
                trk.box = _box_from_unit(trk.box_unit, lms)
            tracks = new_tracks
        return ChunkResult([f[0] for f in frames], faces, dict(dropped), dict(secs))


def encode(img_bgr: np.ndarray, fmt: str, jpeg_quality: int = 95) -> bytes:
    if fmt == "jpg":
        ok, buf = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    else:
        # level 1: ~3x faster than the default 3 for a few % more disk
        ok, buf = cv2.imencode(".png", img_bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError(f"could not encode a face as {fmt}")
    return buf.tobytes()
