"""128-D identity embeddings (dlib's ResNet face descriptor) and distances between them.

Two faces of one person are usually closer than 0.6 (dlib's documented threshold; 99.38% on
LFW). An embedding costs ~130 ms a face on one CPU core, so extraction embeds a sample of each
face track and shares it (see pipeline.py).
"""

from __future__ import annotations

import cv2
import numpy as np

from faceswap.extract import weights
from faceswap.extract.detectors import import_dlib

SAME_PERSON = 0.6


class DlibEmbedder:
    def __init__(self) -> None:
        self._dlib = import_dlib()
        self._net = self._dlib.face_recognition_model_v1(str(weights.dlib_weight("dlib-identity")))

    def embed(self, frame_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(128,) float32 embedding of the face with these 68 landmarks in `frame_rgb`."""
        dlib = self._dlib
        pts = [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks]
        x0, y0 = np.floor(landmarks.min(0)).astype(int)
        x1, y1 = np.ceil(landmarks.max(0)).astype(int)
        shape = dlib.full_object_detection(dlib.rectangle(x0, y0, x1, y1), pts)
        return np.asarray(self._net.compute_face_descriptor(frame_rgb, shape), dtype=np.float32)

    def embed_bgr(self, frame_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """`embed` of a BGR frame, converting only the face's region to RGB. dlib's face chip
        spans the landmarks plus 25% padding, so a region of three times their extent holds
        every pixel it samples (or meets the frame's edge where the frame does)."""
        lo, hi = landmarks.min(0), landmarks.max(0)
        h, w = frame_bgr.shape[:2]
        x0, y0 = np.floor(np.maximum(lo - (hi - lo), 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(hi + (hi - lo) + 1, (w, h))).astype(int)
        region = cv2.cvtColor(frame_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2RGB)
        return self.embed(region, landmarks - (x0, y0))


def distances(embeddings: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """(N, 128) x (R, 128) -> (N,) distance of each embedding to its nearest reference."""
    embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
    refs = np.atleast_2d(np.asarray(refs, dtype=np.float32))
    d = np.linalg.norm(embeddings[:, None, :] - refs[None, :, :], axis=-1)
    return d.min(axis=1)
