"""convert --forehead auto: the reach whose pasted edge shows least, one value per clip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faceswap.convert.forehead import CANDIDATES, PROBE_FRAMES, choose_forehead, probe_count

from helpers import cli as _cli


def _skin(seed: int = 0) -> np.ndarray:
    """A 200x200 BGR frame of skin with a little texture (an original frame)."""
    rng = np.random.default_rng(seed)
    img = np.full((200, 200, 3), (120, 150, 190), np.float32)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _paste(orig: np.ndarray, reach: float, fringe_from: float | None) -> np.ndarray:
    """A face pasted as a feathered disc whose top rises with `reach`; at reaches from
    `fringe_from` up it carries B's dark fringe along its top edge (the forehead band)."""
    out = orig.astype(np.float32)
    yy, xx = np.mgrid[0:200, 0:200]
    top = 70 - 60 * reach  # the disc's top edge moves up as the reach grows
    r = (170 - top) / 2
    cy = top + r
    d = np.hypot(yy - cy, xx - 100) - r
    alpha = np.clip(0.5 - d / 6.0, 0, 1)[..., None]
    face = out + np.float32(4.0)  # B's skin after colour matching: nearly A's
    if fringe_from is not None and reach >= fringe_from:
        band = (yy < top + 14)[..., None]
        face = np.where(band, face * 0.45, face)
    return np.clip(out * (1 - alpha) + face * alpha, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("fringe_from", "expected"), [(0.4, 0.3), (0.3, 0.2), (None, 0.5)])
def test_the_highest_reach_without_a_band_wins(fringe_from, expected):
    frames = [(_skin(s), 40.0) for s in range(3)]
    choice = choose_forehead(frames, lambda i, reach: _paste(frames[i][0], reach, fringe_from))
    assert choice.forehead == expected and choice.frames == 3
    assert set(choice.seams) == set(CANDIDATES)
    banded = [choice.seams[r] for r in CANDIDATES if fringe_from is not None and r >= fringe_from]
    clean = [choice.seams[r] for r in CANDIDATES if fringe_from is None or r < fringe_from]
    assert all(b > max(clean) + 0.3 for b in banded)  # the band is what the figure sees


def test_a_short_range_probes_fewer_frames():
    assert probe_count(1200) == PROBE_FRAMES and probe_count(48) == 4 and probe_count(3) == 1


def test_nothing_to_measure_keeps_the_fallback():
    frames = [(_skin(), 40.0)]
    choice = choose_forehead(frames, lambda i, reach: frames[i][0].copy(), fallback=0.35)
    assert choice.forehead == 0.35 and all(v is None for v in choice.seams.values())
    assert choose_forehead([], lambda i, r: None, fallback=0.4).forehead == 0.4


def test_cli_forehead_auto_records_its_choice(capsys, tiny_run, faceset_pair, tmp_path):
    clip = faceset_pair[0].parent / "a.mp4"
    out = tmp_path / "swap.mp4"
    code, stdout, err = _cli(capsys, "convert", str(clip), "-m", str(tiny_run), "-o", str(out),
                             "--alignments", str(faceset_pair[0]), "--frames", "0-24",
                             "--forehead", "auto", "--json")  # fmt: skip
    assert code == 0, err
    s = json.loads(stdout)
    assert s["forehead"] in CANDIDATES and set(s["forehead_seams"]) == {"0.2", "0.3", "0.4", "0.5"}
    assert any(v is not None for v in s["forehead_seams"].values())
    label = json.loads((tmp_path / "swap.mp4.provenance.json").read_text())
    assert label["settings"]["forehead_auto"] is True
    assert label["settings"]["forehead"] == s["forehead"]  # the label says what was used
    code, _, err = _cli(capsys, "convert", str(clip), "-m", str(tiny_run), "-o",
                        str(tmp_path / "x.mp4"), "--forehead", "high")  # fmt: skip
    assert code == 2 and "--forehead 'high'" in err and err.count("\n") == 1
    assert not (tmp_path / "x.mp4").exists()
