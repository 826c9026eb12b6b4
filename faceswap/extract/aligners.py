"""68-point landmark aligners. Both give the iBUG-68 layout in full-frame pixel coordinates,
so everything downstream is shared. ALIGNERS maps the CLI name to a factory."""

from __future__ import annotations

import cv2
import numpy as np

from faceswap.errors import MissingBackend
from faceswap.extract import weights
from faceswap.extract.detectors import import_dlib


class DlibAligner:
    """dlib's ensemble-of-regression-trees 68-point predictor (~4 ms a face on CPU)."""

    name = "dlib"

    def __init__(self, **_: object) -> None:
        self._dlib = import_dlib()
        self._predictor = self._dlib.shape_predictor(str(weights.dlib_weight("dlib-landmarks")))

    def landmarks(self, frame: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
        frame = np.ascontiguousarray(frame)  # dlib misreads strided numpy views
        out = []
        for box in boxes:
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            shape = self._predictor(frame, self._dlib.rectangle(x0, y0, x1, y1))
            out.append(np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64))
        return out


# FAN sees a 256 px crop of side 200*scale around the box centre, nudged up by 12% of the box
# height (the detector box sits low on the face); its 64 px heatmaps are 1/4 of that crop.
_FAN_INPUT = 256
_FAN_REF_SCALE = 195.0
_FAN_Y_OFFSET = 0.12


def fan_crop_matrix(box: np.ndarray) -> np.ndarray:
    """2x3 matrix from frame pixels to FAN's 256 px input crop for a detector box."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0 - (y1 - y0) * _FAN_Y_OFFSET
    scale = (x1 - x0 + y1 - y0) / _FAN_REF_SCALE
    k = _FAN_INPUT / (200.0 * scale)
    return np.array([[k, 0.0, _FAN_INPUT / 2 - k * cx], [0.0, k, _FAN_INPUT / 2 - k * cy]])


def heatmap_peaks(hm: np.ndarray) -> np.ndarray:
    """(B, 68, 64, 64) heatmaps -> (B, 68, 2) peak positions in heatmap pixels, refined by a
    quarter pixel towards the larger neighbour (the FAN paper's sub-pixel rule)."""
    b, c, h, w = hm.shape
    flat = hm.reshape(b, c, -1).argmax(-1)
    ys, xs = np.divmod(flat, w)
    pts = np.stack([xs, ys], -1).astype(np.float64)
    inner = (xs > 0) & (xs < w - 1) & (ys > 0) & (ys < h - 1)
    bi, ci = np.nonzero(inner)
    x, y = xs[bi, ci], ys[bi, ci]
    dx = hm[bi, ci, y, x + 1] - hm[bi, ci, y, x - 1]
    dy = hm[bi, ci, y + 1, x] - hm[bi, ci, y - 1, x]
    pts[bi, ci, 0] += np.sign(dx) * 0.25
    pts[bi, ci, 1] += np.sign(dy) * 0.25
    return pts


class FanAligner:
    """face-alignment's 2D-FAN-4 (stacked hourglass) landmarks: best quality, GPU.

    All faces of a call go through one batched forward pass. `random_init` builds the network
    without weights, for tests on machines that cannot download them.
    """

    name = "fan"

    def __init__(
        self,
        device: str = "cpu",
        weights_dir: str | None = None,
        random_init: bool = False,
        **_: object,
    ) -> None:
        import torch

        try:
            from face_alignment.models import FAN
        except ImportError:
            raise MissingBackend(
                "fan needs face-alignment; run 'pip install face-alignment'"
            ) from None
        net = FAN(4)
        if not random_init:
            path = weights.face_alignment_weight("fan", weights_dir)
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net = net.to(device).eval()
        self.device = device

    def landmarks(self, frame: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        if not boxes:
            return []
        mats = [fan_crop_matrix(np.asarray(b, float)) for b in boxes]
        crops = np.stack(
            [
                cv2.warpAffine(frame, m, (_FAN_INPUT, _FAN_INPUT), flags=cv2.INTER_LINEAR)
                for m in mats
            ]
        )  # (N, 256, 256, 3) fmt: skip
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0).to(self.device)
        with torch.no_grad():
            hm = self.net(x)
        if isinstance(hm, list):
            hm = hm[-1]
        peaks = heatmap_peaks(hm.float().cpu().numpy())  # (N, 68, 2) heatmap pixels
        stride = _FAN_INPUT / hm.shape[-1]
        out = []
        for m, p in zip(mats, peaks, strict=True):
            crop_pts = (p + 0.5) * stride - 0.5
            inv = cv2.invertAffineTransform(m)
            out.append(crop_pts @ inv[:, :2].T + inv[:, 2])
        return out


ALIGNERS = {"dlib": DlibAligner, "fan": FanAligner}


def make_aligner(name: str, **kwargs: object):
    if name not in ALIGNERS:
        raise MissingBackend(f"unknown aligner {name!r} (valid: {', '.join(ALIGNERS)})")
    return ALIGNERS[name](**kwargs)
