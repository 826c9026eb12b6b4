"""Soak tests (slow): memory stays flat over a long train and convert; over a long extract it
grows only with the face-set index it keeps in memory.

Each runs the real command in a subprocess that samples its resident memory (RSS) every
second; the slope of RSS against work done, fitted after a warm-up, is printed in MB per 1000
steps (train) or frames (extract, convert). The bounds are loose (a leak of a few KB per step
shows as MBs per 1000); the printed slopes are the figures to report.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from robust import Outcome, run_faultrun

from faceswap.synthetic import render_clip

from helpers import TINY_TRAIN


def rss_slope(o: Outcome, unit: str, warmup: float) -> tuple[float, float, int]:
    """(MB per 1000 units, MB growth after the warm-up, samples): RSS samples mapped to the
    work done at their time, fitted by least squares over the part after `warmup` of it."""
    done = [(float(ln.split()[2]), int(ln.split()[1])) for ln in o.trace
            if ln.startswith(unit + " ")]  # fmt: skip
    rss = [(float(ln.split()[2]), int(ln.split()[1]) / 1024) for ln in o.trace
           if ln.startswith("rss ")]  # fmt: skip
    assert done and rss, o.stderr
    total = done[-1][1]
    points = []
    for t, mb in rss:
        before = [n for tt, n in done if tt <= t]
        if before and before[-1] >= warmup * total:
            points.append((before[-1], mb))
    assert len(points) >= 5, (len(points), o.stderr[-500:])
    x, y = np.array(points).T
    slope = float(np.polyfit(x, y, 1)[0]) * 1000
    return slope, float(y[-1] - y[0]), len(points)


@pytest.mark.slow
def test_train_memory_stays_flat(faceset_pair, tmp_path):
    steps = 1500
    cfg = tmp_path / "soak.yaml"
    cfg.write_text(yaml.safe_dump({**TINY_TRAIN, "steps": steps, "val_every": 250,
                                   "save_every": 250, "preview_every": 250,
                                   "schedule": {"name": "cosine", "lr": 1e-3,
                                                "warmup_steps": 20, "total_steps": steps}}))  # fmt: skip
    a, b = faceset_pair
    o = run_faultrun(["train", "-A", str(a), "-B", str(b), "-o", str(tmp_path / "run"),
                      "--config", str(cfg)], tmp_path, rss=1.0, timeout=3000)  # fmt: skip
    assert o.rc == 0, o.stderr
    slope, growth, n = rss_slope(o, "step", warmup=0.2)
    print(f"train soak: {steps} steps (TensorBoard on, checkpoints every 250), {n} RSS samples "
          f"after step {int(0.2 * steps)}: slope {slope:+.2f} MB per 1000 steps, "
          f"growth {growth:+.1f} MB")  # fmt: skip
    assert slope < 10 and growth < 30


def _index_kb_per_face(root) -> tuple[float, float]:
    """(KB one face takes in the in-memory index: records + JSON cache, KB of index text per
    face): a save builds the whole text and its UTF-8 bytes, so the allocator's high-water mark
    grows by about twice the text too."""
    import tracemalloc

    from faceswap import faceset as fsmod

    tracemalloc.start()
    fs = fsmod.load(root)
    text = fs.dumps()
    used = tracemalloc.get_traced_memory()[0] - len(text)
    tracemalloc.stop()
    n = max(1, len(fs.faces) + len(fs.rejected))
    return used / 1024 / n, len(text) / 1024 / n


@pytest.mark.slow
def test_extract_memory_grows_only_with_the_index(tmp_path):
    # extract keeps the face-set index in memory (it saves it whole, atomically), so memory
    # grows with the faces found: about 18 KB per face with embeddings, plus the text and bytes
    # of a save. Anything beyond that would be a leak.
    frames = 1200
    clip = tmp_path / "long.mp4"
    render_clip(clip, frames, frame_size=(480, 270), base_scale=0.75, seed=5)
    cfg = tmp_path / "ex.yaml"
    cfg.write_text(yaml.safe_dump({"save_every": 2.0}))
    o = run_faultrun(["extract", str(clip), "-o", str(tmp_path / "set"), "--size", "64",
                      "--workers", "1", "--config", str(cfg)], tmp_path, rss=0.5,
                     timeout=3000)  # fmt: skip
    assert o.rc == 0, o.stderr
    slope, growth, n = rss_slope(o, "frames", warmup=0.2)
    per_face, text = _index_kb_per_face(tmp_path / "set")
    explained = (per_face + 2 * text) * 1000 / 1024  # MB per 1000 faces
    print(f"extract soak: {frames} frames 480x270 (embeddings on), {n} RSS samples: slope "
          f"{slope:+.2f} MB per 1000 frames, growth {growth:+.1f} MB; the index holds "
          f"{per_face:.1f} KB per face and its save {2 * text:.1f} KB more: "
          f"{explained:.1f} MB per 1000 faces")  # fmt: skip
    assert slope < 1.25 * explained + 2


@pytest.mark.slow
def test_convert_memory_stays_flat(tiny_run, tmp_path):
    frames = 480
    clip = tmp_path / "long.mp4"
    render_clip(clip, frames, frame_size=(480, 270), base_scale=0.75, seed=6)
    o = run_faultrun(["convert", str(clip), "-m", str(tiny_run), "-o", str(tmp_path / "out.mp4"),
                      "--detect-workers", "1"], tmp_path, rss=1.0, timeout=3000)  # fmt: skip
    assert o.rc == 0, o.stderr
    slope, growth, n = rss_slope(o, "frames", warmup=0.2)
    print(f"convert soak: {frames} frames 480x270, {n} RSS samples: slope {slope:+.2f} MB per "
          f"1000 frames, growth {growth:+.1f} MB")  # fmt: skip
    assert slope < 20 and growth < 30
