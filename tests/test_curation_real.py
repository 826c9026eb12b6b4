"""Curation on real faces (../shared/data; skipped when absent): dedupe keeps every distinct
expression, filter --auto finds planted outliers and leaves the real faces alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from faceswap import curate
from faceswap import faceset as fsmod

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_curation", ROOT / "scripts" / "bench_curation.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.fixture(scope="module")
def real_sets(real_faceset) -> dict[str, fsmod.FaceSet]:
    """100 frames of d9 and of d6 (every frame: dedupe and the jump test need neighbours),
    and a few faces of two other people (conftest.REAL_SETS)."""
    return {name: fsmod.load(real_faceset(name)) for name in ("d9", "d6", "face2", "face4")}


@pytest.mark.parametrize("name", ["d9", "d6"])
def test_dedupe_keeps_distinct_expressions(real_sets, name):
    fs = real_sets[name]
    pairs = curate.find_duplicates(fs)
    assert len(pairs) < 0.2 * len(fs.faces)  # the dHash rule moved 96% of d9
    # only near-still moments: a duplicate sits within a second of the face kept for it
    gaps = sorted(abs(d.frame - k.frame) for d, k in pairs)
    assert not gaps or gaps[-1] <= 30, gaps
    # and no rare expression or pose is ever a duplicate: rare as `curate info` counts it,
    # fewer than RARE_NEIGHBOURS look-alikes in the set (d6 has a few; d9's head and face
    # barely move, so its least-seen faces sit in still moments, where dedupe is meant to act)
    shape = np.stack([f.aligned_landmarks().ravel() / fs.size for f in fs.faces])
    close = (curate._sq_dist(shape, shape) < curate.RARE_RADIUS**2 * 68).sum(1) - 1
    rare = {fs.faces[i].name for i in np.nonzero(close < curate.RARE_NEIGHBOURS)[0]}
    assert rare or name == "d9"
    assert not rare & {d.name for d, _ in pairs}


@pytest.mark.parametrize("name, other", [("d9", "face2"), ("d6", "face4")])
def test_filter_auto_finds_planted_outliers_only(real_sets, tmp_path, name, other):
    fs, bench = real_sets[name], _bench()
    assert len(curate.find_outliers(fs, curate.auto_rule(fs))) < 0.05 * len(fs.faces)
    planted_fs, planted = bench.plant(fs, real_sets[other], tmp_path, n=8)
    flagged = {f.name for f, _ in curate.find_outliers(planted_fs, curate.auto_rule(planted_fs))}
    every = set().union(*planted.values())
    assert len(every & flagged) >= 0.9 * len(every), {k: v - flagged for k, v in planted.items()}
    real = {f.name for f in planted_fs.faces} - every
    assert len(real & flagged) < 0.05 * len(real)


def test_info_reports_outliers_and_rare_faces(real_sets):
    out = curate.info(real_sets["d6"])
    assert set(out["outliers"]) <= {"blurry", "misaligned", "unstable landmarks",
                                    "landmarks jump", "other person"}  # fmt: skip
    assert sum(out["outliers"].values()) < 0.05 * out["faces"]
    assert 0 < out["rare"] < out["faces"]
