"""`convert --forehead auto`: how far up the mask reaches, chosen once per clip.

The extended hull reaches above the brows by `forehead` brow-to-nose-tip distances, and no
single reach suits every pair (docs/quality.md): where B's hairline sits low, a high reach
pastes B's fringe over A's forehead as a dark band; where A's fringe covers the forehead, a low
reach puts the mask's edge on bare skin, where it shows. So before converting, the faces of a
few frames spread over the clip are swapped once and composited at each candidate reach, and
the reach whose pasted edge is least visible (the median `seam_step` over those frames) is
used for the whole clip: one value, so the edge never jumps between frames. A lower reach must
beat a higher one by more than `TOLERANCE` to win, since a higher reach shows more of B's face.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from faceswap.convert.seam import changed_region, seam_step

CANDIDATES = (0.2, 0.3, 0.4, 0.5)
PROBE_FRAMES = 12  # frames spread over the clip (or the --frames range)
PROBE_SHARE = 10  # ... but at most one in this many of its frames: a short clip probes fewer
TOLERANCE = 0.03  # seam units (1.0 = an invisible edge): below this, reaches tie


def probe_count(frames: int) -> int:
    """Frames to probe in a range of `frames`: PROBE_FRAMES, fewer for a short range, so the
    choice costs a small share of the convert (a 1,200-frame clip: 12; 48 frames: 4)."""
    return max(1, min(PROBE_FRAMES, frames // PROBE_SHARE))


@dataclass
class ForeheadChoice:
    """The reach chosen and the median seam of each candidate (None: no frame measured)."""

    forehead: float
    seams: dict[float, float | None]
    frames: int


def choose_forehead(
    frames: Sequence[tuple[np.ndarray, float]],
    render: Callable[[int, float], np.ndarray],
    candidates: Sequence[float] = CANDIDATES,
    fallback: float = 0.4,
    tolerance: float = TOLERANCE,
) -> ForeheadChoice:
    """The reach of the least visible edge over `frames` (original BGR frame, eye distance in
    pixels), `render(i, reach)` giving frame i with its faces pasted at that reach.

    Of the candidates within `tolerance` of the lowest median seam, the highest reach wins.
    With no frame measurable (no face, nothing changed), `fallback`."""
    seams: dict[float, float | None] = {}
    for reach in candidates:
        values = []
        for i, (orig, iod) in enumerate(frames):
            out = render(i, reach)
            s = seam_step(out, orig, changed_region(out, orig), iod)
            if s is not None:
                values.append(s)
        seams[reach] = float(np.median(values)) if values else None
    measured = {r: s for r, s in seams.items() if s is not None}
    if not measured:
        return ForeheadChoice(fallback, seams, len(frames))
    best = min(measured.values())
    pick = max(r for r, s in measured.items() if s <= best + tolerance)
    return ForeheadChoice(pick, seams, len(frames))
