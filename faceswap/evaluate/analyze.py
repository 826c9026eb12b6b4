"""Landmarks, pose and identity embeddings of aligned face crops, including model output.

A swapped face exists only as an aligned crop at the model's resolution (64 px for the small
models): there is no frame to run a detector on, and dlib's tools were made for faces of 80 px
and more. So every crop, the model's input and its output alike, goes through the same steps:

    crop (N, R, R, 3) RGB --cubic upscale--> (N, U, U, 3), U = analysis size (256)
      -> dlib HOG detector: is there a face at all (the shape predictor below returns a
         face-like shape even for a blur, so this is the "not a face yet" signal)
      -> dlib 68-point predictor started from a fixed box (where the centering puts the face)
      -> landmarks (68, 2), alignment residual, head pose, 128-D embedding

Comparing input and swap through one pipeline cancels most of its bias; absolute values at
64 px are less reliable than at extraction size (docs/evaluate.md says how much).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from faceswap.extract import alignment
from faceswap.extract.finder import iou
from faceswap.extract.quality import head_pose

# dlib's HOG box relative to the mean-face template (unit square of landmarks 17-67), measured
# on the astronaut and the Obama/Biden photos at all three centerings (spread about 0.05).
# The shape predictor was trained from such boxes, so it starts from one here too.
TEMPLATE_BOX = (-0.21, -0.15, 1.13, 1.09)
_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def template_box(size: int, centering: str) -> np.ndarray:
    """(4,) x0, y0, x1, y1 of the face box in an aligned crop of side `size`."""
    scale, (cx, cy) = alignment.CENTERING[centering]
    x0, y0, x1, y1 = TEMPLATE_BOX
    return size * (scale * (np.array([x0 - cx, y0 - cy, x1 - cx, y1 - cy])) + 0.5)


def to_size(pts: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Pixel coordinates in a src-px crop -> the same points after a resize to dst px."""
    return (np.asarray(pts, np.float64) + 0.5) * (dst / src) - 0.5


class CropAnalyzer:
    """dlib landmarks and embeddings of aligned crops of one centering (loads dlib once)."""

    def __init__(self, centering: str, size: int = 256, embed: bool = True) -> None:
        from faceswap.extract.aligners import DlibAligner
        from faceswap.extract.detectors import DlibHogDetector
        from faceswap.extract.identity import DlibEmbedder

        self.centering = centering
        self.size = size
        self.aligner = DlibAligner()
        self.detector = DlibHogDetector()
        self.embedder = DlibEmbedder() if embed else None

    def _upscale(self, crop: np.ndarray) -> np.ndarray:
        r = crop.shape[0]
        if r == self.size:
            return np.ascontiguousarray(crop)
        interp = cv2.INTER_CUBIC if r < self.size else cv2.INTER_AREA
        return cv2.resize(crop, (self.size, self.size), interpolation=interp)

    def analyze(
        self, crops_rgb: np.ndarray, embed: bool = False, tick: Callable[[], None] | None = None
    ) -> dict[str, np.ndarray]:
        """crops (N, R, R, 3) uint8 RGB ->
        landmarks (N, 68, 2) in crop (R px) coordinates, pose (N, 3) yaw/pitch/roll degrees,
        residual (N,) alignment residual (fraction of the side; a face ~0.01-0.03, far more
        means dlib did not find a face shape), detected (N,) bool: dlib's HOG detector finds a
        face over the expected box (IoU > 0.3), and with `embed` embeddings (N, 128).
        `tick` is called after each face."""
        n = len(crops_rgb)
        r = crops_rgb.shape[1] if n else self.size
        box = template_box(self.size, self.centering)
        lms = np.zeros((n, 68, 2), np.float64)
        pose = np.zeros((n, 3), np.float64)
        residual = np.zeros(n, np.float64)
        detected = np.zeros(n, bool)
        emb = np.zeros((n, 128), np.float32)
        if embed and self.embedder is None:
            raise ValueError("this analyzer was made without the embedder")
        for i, crop in enumerate(crops_rgb):
            big = self._upscale(crop)  # (U, U, 3)
            found = self.detector.detect([big])[0]
            detected[i] = any(iou(d.box, box) > 0.3 for d in found)
            lm = self.aligner.landmarks(big, [box])[0]  # (68, 2) in U px
            lms[i] = to_size(lm, self.size, r)
            pose[i] = head_pose(lm, (self.size, self.size))
            # the crop is aligned, so a real face's landmarks sit on the template already
            residual[i] = alignment.alignment_residual(lm, _IDENTITY, self.size, self.centering)
            if embed:
                assert self.embedder is not None
                emb[i] = self.embedder.embed(big, lm)
            if tick:
                tick()
        out = {"landmarks": lms, "pose": pose, "residual": residual, "detected": detected}
        if embed:
            out["embeddings"] = emb
        return out

    def embed_known(self, crops_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(N, 128) embeddings of crops (N, R, R, 3) RGB whose landmarks (N, 68, 2) in crop
        pixels are known already (a face set's own faces: no aligner run)."""
        if self.embedder is None:
            raise ValueError("this analyzer was made without the embedder")
        out = np.zeros((len(crops_rgb), 128), np.float32)
        for i, (crop, lm) in enumerate(zip(crops_rgb, landmarks)):
            big = self._upscale(crop)
            out[i] = self.embedder.embed(big, to_size(lm, crop.shape[0], self.size))
        return out
