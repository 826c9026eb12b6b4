"""How visible the edge of a pasted face is: the colour step across the swapped region's edge
in the output frame over the step at the same pixels of the original (1.0 = invisible).

Pure functions on frames. `faceswap.evaluate` reports the figure (docs/quality.md); convert's
`--forehead auto` uses it to choose how far up the mask reaches on a clip.
"""

from __future__ import annotations

import cv2
import numpy as np


def changed_region(out: np.ndarray, orig: np.ndarray, threshold: float = 3.0) -> np.ndarray:
    """bool (H, W): the largest connected region where the output differs from the original
    (mean grey-level difference over a small neighbourhood > threshold), holes filled."""
    diff = np.abs(out.astype(np.float32) - orig.astype(np.float32)).mean(axis=2)
    diff = cv2.GaussianBlur(diff, (0, 0), 2.0)
    binary = (diff > threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return np.zeros(binary.shape, bool)
    keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = (labels == keep).astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(region)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def edge_distance(region: np.ndarray) -> np.ndarray:
    """Pixels from the region's edge: negative inside, positive outside."""
    r = region.astype(np.uint8)
    inside = cv2.distanceTransform(r, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - r, cv2.DIST_L2, 5)
    return outside - inside


def seam_step(
    out: np.ndarray, orig: np.ndarray, region: np.ndarray, iod: float, sectors: int = 24
) -> float | None:
    """Colour step across the edge of `region` in `out` over the step at the same pixels of
    `orig` (1.0 = the edge adds nothing a viewer could see).

    Around the region's centre, per angular sector, the step is the distance between the mean
    colour of a ring inside the edge and a ring just outside it (0.05-0.2 inter-ocular
    distances out); two inner rings are tried, one at the edge (0.05-0.2 in: a dark band where
    the mask ends sits there) and one past any feathering (0.3-0.45 in), and the larger step
    counts. The figure is the mean over sectors of the output's step over the original's.
    Sectors keep it local: a band across the forehead is not averaged away by the cheeks, nor
    hidden by a strong natural edge (hair).
    """
    if region.sum() < 50:
        return None
    sd = edge_distance(region)
    inners = [(sd <= -0.05 * iod) & (sd >= -0.2 * iod), (sd <= -0.3 * iod) & (sd >= -0.45 * iod)]
    outer = (sd >= 0.05 * iod) & (sd <= 0.2 * iod)
    ys, xs = np.nonzero(region)
    cy, cx = ys.mean(), xs.mean()
    yy, xx = np.mgrid[0 : region.shape[0], 0 : region.shape[1]]
    sector = ((np.arctan2(yy - cy, xx - cx) + np.pi) / (2 * np.pi) * sectors).astype(int)
    sector = np.minimum(sector, sectors - 1)
    o, g = out.astype(np.float32), orig.astype(np.float32)
    ratios = []
    for s in range(sectors):
        j = outer & (sector == s)
        best = None
        for inner in inners:
            i = inner & (sector == s)
            if i.sum() < 5 or j.sum() < 5:
                continue
            step_out = np.linalg.norm(o[i].mean(0) - o[j].mean(0))
            step_orig = np.linalg.norm(g[i].mean(0) - g[j].mean(0))
            # the floor: an original edge under 8 levels (of 441 across RGB) is as good as flat
            ratio = step_out / max(float(step_orig), 8.0)
            best = ratio if best is None else max(best, ratio)
        if best is not None:
            ratios.append(best)
    if not ratios:
        return None
    return float(np.mean(ratios))
