"""Find, align and measure the faces in a run of consecutive frames of one source.

This is the per-frame work of extraction, and it runs in worker processes: detect (on a
downscaled frame) -> 68 landmarks (on the full frame) -> similarity alignment -> crop ->
pose, blur, consistency -> identity embedding (sampled per track) -> encoded crop.

Tracking: after a full-frame detection, a face's box in the next frame comes from its
landmarks in this one (the detector's box, kept relative to the landmarks), and the detector
confirms the face only every `confirm_every` frames, in a small region around its box scaled
down to ~95 px (a few ms instead of ~15 ms for the whole frame). A face the detector does not
confirm ends its track and the frame is searched in full; the faces of that track since its
last confirmation are then each checked by the detector, and those it does not find are
dropped. The whole frame is also searched every `redetect_every` frames to pick up new faces.
So every kept face is a detector hit or lies between two hits of its track at most
`confirm_every` frames apart: a track never drifts onto background or onto a neighbour.
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
    box: np.ndarray
    score: float
    embedding: np.ndarray | None = None
    embedding_frame: int = -(10**9)
    identity_distance: float | None = None
    jitter: float = 0.0
    jitter_frame: int = -(10**9)
    landmarks: np.ndarray | None = None  # (68, 2) in the last frame
    box_shape: np.ndarray | None = None  # the last detector box, relative to its landmarks
    confirmed: int = 0  # frame index of the last detector hit
    pending: list[tuple[int, FoundFace]] = field(default_factory=list)  # faces since that hit


def _landmark_frame(lms: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and size (RMS distance to the centre) of a landmark set."""
    c = lms.mean(0)
    return c, max(float(np.sqrt(((lms - c) ** 2).sum(1).mean())), 1e-6)


def box_shape(box: np.ndarray, lms: np.ndarray) -> np.ndarray:
    """A detector box as (centre x, centre y, width, height) in the landmarks' frame: how this
    detector frames this face, to place the box where the face moved (`box_from_landmarks`)."""
    c, s = _landmark_frame(lms)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    return np.array([*((centre - c) / s), (box[2] - box[0]) / s, (box[3] - box[1]) / s])


def box_from_landmarks(lms: np.ndarray, shape: np.ndarray) -> np.ndarray:
    c, s = _landmark_frame(lms)
    cx, cy = c + shape[:2] * s
    w, h = shape[2] * s, shape[3] * s
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


@dataclass
class Backends:
    """Resolved backend names and the torch device for this run."""

    detector: str
    aligner: str
    device: str
    extra: dict = field(default_factory=dict)


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
        # dlib's HOG and landmarks read a pixel's channels symmetrically (the strongest
        # channel's gradient, the channels' mean), so they take the BGR frame as it is: no
        # conversion of the whole frame; the CNN backends learned RGB
        self.takes_bgr = backends.detector == "dlib-hog" and backends.aligner == "dlib"

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

    def detect_near(self, frame_rgb: np.ndarray, box: np.ndarray) -> Detection | None:
        """Re-detect a tracked face in a region around its last box.

        The region (the box plus 40% on each side) is scaled so the face is ~95 px, just above
        HOG's 80 px window: a few milliseconds instead of a whole-frame search. It confirms that
        a face is still there, so a track never drifts onto background or a neighbour.
        """
        h, w = frame_rgb.shape[:2]
        side = max(box[2] - box[0], box[3] - box[1])
        margin = 0.4 * side
        x0, y0 = int(max(0, box[0] - margin)), int(max(0, box[1] - margin))
        x1, y1 = int(min(w, box[2] + margin)), int(min(h, box[3] + margin))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        scale = min(1.0, 95.0 / max(side, 1.0))
        roi = frame_rgb[y0:y1, x0:x1]
        if scale < 1.0:
            roi = cv2.resize(roi, (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))),
                             interpolation=cv2.INTER_AREA)  # fmt: skip
        dets = [d.scaled(1.0 / scale, (x0, y0)) for d in self.detector.detect([roi])[0]]
        best = max(dets, key=lambda d: iou(d.box, box), default=None)
        return best if best is not None and iou(best.box, box) > 0.3 else None

    def _landmarks(
        self, frame_rgb: np.ndarray, box: np.ndarray, fidx: int = 0, trk: _Track | None = None
    ) -> tuple[np.ndarray, float]:
        """Landmarks for a box, and their consistency under a 5% shift of the box.

        The consistency check costs a second landmark run; within a face track it runs every
        `jitter_every` frames and is shared in between (the face, its pose and what covers it
        change little from one frame to the next), like the identity embedding."""
        if trk is not None and fidx - trk.jitter_frame < self.cfg.jitter_every:
            return self.aligner.landmarks(frame_rgb, [box])[0], trk.jitter
        w, h = box[2] - box[0], box[3] - box[1]
        shifted = box + np.array([0.05 * w, 0.05 * h, 0.05 * w, 0.05 * h])
        a, b = self.aligner.landmarks(frame_rgb, [box, shifted])
        jit = landmark_jitter(a, b)
        if trk is not None:
            trk.jitter, trk.jitter_frame = jit, fidx
        return a, jit

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
            predetected = self.detect_many([self._image(f[2]) for f in frames])
            secs["detect"] += time.perf_counter() - t0
        for k, (fidx, ftime, bgr) in enumerate(frames):
            t0 = time.perf_counter()
            image = self._image(bgr)
            fh, fw = image.shape[:2]
            secs["decode"] += time.perf_counter() - t0
            full_search = not (cfg.track and tracks) or k % cfg.redetect_every == 0
            # landmarks for tracked boxes; a lost track triggers a full search of this frame
            # (box, score, landmarks, jitter, track, a detector hit?)
            found: list[tuple[np.ndarray, float, np.ndarray, float, _Track | None, bool]] = []
            t0 = time.perf_counter()
            for trk in [] if full_search else tracks:
                lms = None
                hit = fidx - trk.confirmed >= cfg.confirm_every or trk.box_shape is None
                if not hit:
                    assert trk.landmarks is not None and trk.box_shape is not None
                    box, score = box_from_landmarks(trk.landmarks, trk.box_shape), trk.score
                    lms, jit = self._landmarks(image, box, fidx, trk)
                    # the face moved well away from where its last landmarks put the box: the
                    # landmarks are unsure, ask the detector now
                    hit = iou(box_from_landmarks(lms, trk.box_shape), box) < 0.7
                if hit:
                    t1 = time.perf_counter()
                    det = self.detect_near(image, trk.box)
                    secs["detect"] += time.perf_counter() - t1
                    t0 += time.perf_counter() - t1  # counted as detect, not landmarks
                    if det is None:  # the face left, was covered, or the shot changed
                        full_search = True
                        break
                    box, score, lms = det.box, det.score, None
                if min(box[2] - box[0], box[3] - box[1]) < cfg.min_size:
                    dropped["too small"] += 1
                    continue
                if lms is None:
                    lms, jit = self._landmarks(image, box, fidx, trk)
                found.append((box, score, lms, jit, trk, hit))
            secs["landmarks"] += time.perf_counter() - t0
            if full_search:
                t0 = time.perf_counter()
                dets = predetected[k] if predetected is not None else self.detect(image)
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
                    trk = max(tracks, key=lambda t: iou(t.box, d.box), default=None)
                    if trk is not None and iou(trk.box, d.box) < 0.3:
                        trk = None
                    lms, jit = self._landmarks(image, d.box, fidx, trk)
                    found.append((d.box, d.score, lms, jit, trk, True))
                secs["landmarks"] += time.perf_counter() - t0
            found.sort(key=lambda f: f[0][0])
            new_tracks: list[_Track] = []
            for n, (box, score, lms, jit, trk, hit) in enumerate(found):
                t0 = time.perf_counter()
                if trk is None or trk in new_tracks:
                    trk = _Track(next_track, box, score)
                    next_track += 1
                trk.box = box  # where to look in the next frame
                trk.score = score
                trk.landmarks = lms
                if hit:
                    trk.box_shape = box_shape(box, lms)
                    trk.confirmed = fidx
                    trk.pending = []  # a hit at both ends: the faces between are confirmed
                new_tracks.append(trk)
                m = alignment.crop_matrix(lms, cfg.size, cfg.centering)
                # past the frame's edge: a neutral grey, not a mirror image (a reflected chin and
                # neck read as a face); training masks it out (data.dataset.inside_frame)
                crop = cv2.warpAffine(bgr, m, (cfg.size, cfg.size), flags=cv2.INTER_CUBIC,
                                      borderMode=cv2.BORDER_CONSTANT,
                                      borderValue=(128, 128, 128))  # fmt: skip
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
                        trk.embedding = self._embed(image, lms)
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
                if not hit:
                    trk.pending.append((k, face))
            # a track that went on without a hit in this frame keeps its pending faces; one
            # that ended has them checked one by one
            for trk in tracks:
                if trk not in new_tracks:
                    self._check_pending(trk, frames, faces, secs, dropped)
            tracks = new_tracks
        for trk in tracks:  # the chunk's end: confirm the last face, else check each
            if trk.pending:
                k, face = trk.pending[-1]
                t0 = time.perf_counter()
                hit = self.detect_near(self._image(frames[k][2]), face.box) is not None
                secs["detect"] += time.perf_counter() - t0
                if not hit:
                    self._check_pending(trk, frames, faces, secs, dropped)
        return ChunkResult([f[0] for f in frames], faces, dict(dropped), dict(secs))

    def _image(self, bgr: np.ndarray) -> np.ndarray:
        """The frame as the backends take it."""
        return bgr if self.takes_bgr else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _embed(self, image: np.ndarray, lms: np.ndarray) -> np.ndarray:
        assert self.embedder is not None
        if self.takes_bgr:
            return self.embedder.embed_bgr(image, lms)
        return self.embedder.embed(image, lms)

    def _check_pending(self, trk: _Track, frames: list, faces: list[FoundFace],
                       secs: dict[str, float], dropped: dict[str, int]) -> None:  # fmt: skip
        """A track ended without a detector hit after its last confirmed face: keep each face
        since then only if the detector finds it in its own frame."""
        t0 = time.perf_counter()
        for k, face in trk.pending:
            if self.detect_near(self._image(frames[k][2]), face.box) is None:
                faces.remove(face)
                dropped["not confirmed"] += 1
        trk.pending = []
        secs["detect"] += time.perf_counter() - t0


def encode(img_bgr: np.ndarray, fmt: str, jpeg_quality: int = 95) -> bytes:
    if fmt == "jpg":
        ok, buf = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    else:
        # level 1: ~3x faster than the default 3 for a few % more disk
        ok, buf = cv2.imencode(".png", img_bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError(f"could not encode a face as {fmt}")
    return buf.tobytes()
