"""Face detectors. Each takes RGB uint8 frames and returns boxes in those frames' pixels.

DETECTORS maps the CLI name to a factory; heavy imports (dlib, face_alignment) happen inside.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from faceswap.errors import MissingBackend
from faceswap.extract import weights

log = logging.getLogger(__name__)


@dataclass
class Detection:
    """A face box (x0, y0, x1, y1) in pixels and the detector's confidence."""

    box: np.ndarray
    score: float

    def scaled(self, factor: float, offset: tuple[float, float] = (0.0, 0.0)) -> Detection:
        ox, oy = offset
        return Detection(self.box * factor + np.array([ox, oy, ox, oy]), self.score)


def import_dlib():
    try:
        import dlib
    except ImportError:
        raise MissingBackend("dlib is not installed; run 'pip install dlib-bin'") from None
    return dlib


class DlibHogDetector:
    """dlib's HOG + linear SVM frontal face detector: CPU, no weights file. Its 80 px window
    finds faces down to ~55 px; each upsampling step halves that. Scores are SVM margins
    (0 = dlib's default threshold)."""

    name = "dlib-hog"

    def __init__(self, upsample: int = 0, min_score: float = 0.0, **_: object) -> None:
        dlib = import_dlib()
        self._det = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.min_score = min_score

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        out = []
        for frame in frames:
            # dlib misreads strided numpy views (a crop of a frame): give it its own buffer
            frame = np.ascontiguousarray(frame)
            rects, scores, _ = self._det.run(frame, self.upsample, self.min_score)
            out.append(
                [
                    Detection(np.array([r.left(), r.top(), r.right(), r.bottom()], float), s)
                    for r, s in zip(rects, scores, strict=True)
                ]
            )
        return out


class DlibCnnDetector:
    """dlib's MMOD CNN detector: more robust to pose than HOG, slow on CPU (~3 s at 640 px)."""

    name = "dlib-cnn"

    def __init__(self, upsample: int = 0, min_score: float = 0.0, **_: object) -> None:
        dlib = import_dlib()
        self._det = dlib.cnn_face_detection_model_v1(str(weights.dlib_weight("dlib-cnn")))
        self.upsample = upsample
        self.min_score = min_score

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        out = []
        for frame in frames:
            found = self._det(np.ascontiguousarray(frame), self.upsample)
            dets = []
            for d in found:
                r = d.rect
                if d.confidence >= self.min_score:
                    dets.append(
                        Detection(
                            np.array([r.left(), r.top(), r.right(), r.bottom()], float),
                            float(d.confidence),
                        )
                    )
            out.append(dets)
        return out


class S3fdDetector:
    """face-alignment's S3FD (single-shot scale-invariant) detector: best recall, GPU.

    Frames of one size are batched into a single forward pass. `random_init` builds the same
    network without weights: only for tests on machines that cannot download them.
    """

    name = "s3fd"

    def __init__(
        self,
        device: str = "cpu",
        weights_dir: str | None = None,
        min_score: float = 0.5,
        random_init: bool = False,
        **_: object,
    ) -> None:
        import torch

        try:
            from face_alignment.detection.sfd.net_s3fd import s3fd
        except ImportError:
            raise MissingBackend(
                "s3fd needs face-alignment; run 'pip install face-alignment'"
            ) from None
        net = s3fd()
        if not random_init:
            path = weights.face_alignment_weight("s3fd", weights_dir)
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net = net.to(device).eval()
        self.device = device
        self.min_score = min_score if min_score > 0 else 0.5

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        import torch
        from face_alignment.detection.sfd.bbox import nms
        from face_alignment.detection.sfd.detect import batch_detect

        out: list[list[Detection]] = [[] for _ in frames]
        # batch frames of equal shape together (a video's frames all are)
        by_shape: dict[tuple, list[int]] = {}
        for i, f in enumerate(frames):
            by_shape.setdefault(f.shape, []).append(i)
        for idx in by_shape.values():
            batch = torch.from_numpy(np.stack([frames[i] for i in idx])).permute(0, 3, 1, 2)
            boxes = batch_detect(self.net, batch, device=str(self.device))
            for j, i in enumerate(idx):
                b = boxes[j]
                if len(b):
                    b = b[nms(b, 0.3)]
                out[i] = [
                    Detection(np.array(r[:4], float), float(r[4]))
                    for r in b
                    if r[4] >= self.min_score
                ]
        return out


DETECTORS = {
    "dlib-hog": DlibHogDetector,
    "dlib-cnn": DlibCnnDetector,
    "s3fd": S3fdDetector,
}


def make_detector(name: str, **kwargs: object):
    if name not in DETECTORS:
        raise MissingBackend(f"unknown detector {name!r} (valid: {', '.join(DETECTORS)})")
    return DETECTORS[name](**kwargs)
