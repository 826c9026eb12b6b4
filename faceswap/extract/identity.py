"""128-D identity embeddings (dlib's ResNet face descriptor) and distances between them.

Two faces of one person are usually closer than 0.6 (dlib's documented threshold; 99.38% on
LFW). An embedding costs ~130 ms a face on one CPU core, so extraction embeds a sample of each
face track and shares it (see pipeline.py).
"""

from __future__ import annotations

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


def distances(embeddings: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """(N, 128) x (R, 128) -> (N,) distance of each embedding to its nearest reference."""
    embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
    refs = np.atleast_2d(np.asarray(refs, dtype=np.float32))
    d = np.linalg.norm(embeddings[:, None, :] - refs[None, :, :], axis=-1)
    return d.min(axis=1)
