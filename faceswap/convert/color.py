"""Colour matching of the swapped face to the face it replaces, inside the face mask.

All functions take the swapped face and the original crop as (R, R, 3) BGR float32 in
[0, 255], and a boolean (R, R) mask of the pixels whose statistics count; they return the
corrected face (whole crop) as float32, unclipped.

- avg:  shift each channel so the masked means match.
- rct:  Reinhard et al. 2001 colour transfer: match mean and standard deviation per channel
        in CIE Lab, where the channels are nearly decorrelated.
- hist: histogram matching per BGR channel: map the face's masked CDF onto the original's.
- none: the face as the model made it.

After the global match, `edge_match` fades the face's low-frequency colour into the original's
over a band inside the mask edge (see its docstring): a global match leaves local steps where
B's shading or hairline meets A's skin.
"""

from __future__ import annotations

import cv2
import numpy as np

COLOR_MODES = ("avg", "rct", "hist", "none")
# a swapped face with almost no variation in a channel would be stretched without limit by rct
_MAX_GAIN = 4.0


def _masked(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, 3) pixels inside the mask (all pixels if the mask is empty)."""
    return img[mask] if mask.any() else img.reshape(-1, 3)


def avg_color(face: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return face + (_masked(ref, mask).mean(0) - _masked(face, mask).mean(0))


def rct_color(face: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # float32 Lab wants BGR in [0, 1]: L in [0, 100], a and b about [-127, 127]
    lab_f = cv2.cvtColor(np.clip(face, 0, 255) / 255.0, cv2.COLOR_BGR2Lab)
    lab_r = cv2.cvtColor(ref / 255.0, cv2.COLOR_BGR2Lab)
    pf, pr = _masked(lab_f, mask), _masked(lab_r, mask)
    mu_f, sd_f = pf.mean(0), pf.std(0)
    mu_r, sd_r = pr.mean(0), pr.std(0)
    gain = np.clip(sd_r / np.maximum(sd_f, 1e-3), 1.0 / _MAX_GAIN, _MAX_GAIN)
    out = (lab_f - mu_f) * gain + mu_r
    return cv2.cvtColor(out.astype(np.float32), cv2.COLOR_Lab2BGR) * 255.0


def hist_color(face: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    pf, pr = _masked(face, mask), _masked(ref, mask)
    out = np.empty_like(face)
    q = np.linspace(0.0, 1.0, 257)
    for c in range(3):
        # value -> its quantile among the face's masked pixels -> the original's value there
        src_q = np.quantile(pf[:, c], q)
        ref_q = np.quantile(pr[:, c], q)
        src_q = np.maximum.accumulate(src_q + np.arange(257) * 1e-6)  # strictly increasing
        out[..., c] = np.interp(face[..., c], src_q, ref_q)
    return out


def match_color(mode: str, face: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if mode == "avg":
        return avg_color(face, ref, mask)
    if mode == "rct":
        return rct_color(face, ref, mask)
    if mode == "hist":
        return hist_color(face, ref, mask)
    if mode == "none":
        return face
    raise ValueError(f"color must be one of {', '.join(COLOR_MODES)}, not {mode!r}")


def edge_match(face: np.ndarray, ref: np.ndarray, mask: np.ndarray, band: float) -> np.ndarray:
    """Pull the face's low frequencies to the original's near the mask edge.

    `band` is the width of the zone inside the edge, a fraction of the crop side (0 = off).
    The correction is the blur of (original - face) over the masked pixels only (a normalised
    convolution, so hair or background outside the mask does not bleed in), at a scale of a
    quarter of the band. It weighs 1 at the mask edge (and beyond it, in the feather) and fades
    to 0 at `band` inside, so the middle of the face keeps B's colours and shading, and the fine
    texture everywhere stays the model's. Like a Poisson blend at the edge, without carrying A's
    shading across the whole face.
    """
    if band <= 0 or not mask.any():
        return face
    side = mask.shape[0]
    width = band * side
    w = mask.astype(np.float32)
    sigma = max(0.5, 0.25 * width)
    diff = cv2.GaussianBlur((ref - face) * w[..., None], (0, 0), sigma)
    norm = cv2.GaussianBlur(w, (0, 0), sigma)
    low = diff / np.maximum(norm, 1e-3)[..., None]
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    t = np.clip(1.0 - depth / width, 0.0, 1.0)
    weight = t * t * (3.0 - 2.0 * t)  # smoothstep: no kink where the band ends
    # weight 1 outside the mask too: the outer half of the feather shows the face as well, and
    # an uncorrected ring there would be a thin line of B's colour around the face
    return face + weight[..., None] * low
