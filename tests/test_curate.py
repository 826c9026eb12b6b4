"""Tests for faceswap.curate on small synthetic face sets (no extraction models needed)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from faceswap import curate
from faceswap.curate import FilterRule
from faceswap.errors import BadInput
from faceswap.extract.quality import blur_score
from faceswap.faceset import FACES_DIR, REJECTED_DIR, Face, FaceSet, Source, create, load

SIZE = 64
CENTER = (220, 121)  # (x, y) of the astronaut's face
# Shifts far enough apart that their dHashes differ by 20+ bits (not near-duplicates).
SHIFTS = [(0, 0), (12, 0), (-12, 0), (0, 12), (0, -12), (12, 12), (-12, -12), (12, -12), (-12, 12)]
YAWS = [-80.0, -50.0, -20.0, -5.0, 0.0, 5.0, 20.0, 50.0, 80.0]


@functools.lru_cache(maxsize=1)
def _astronaut_bgr() -> np.ndarray:
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def _crop(dx: int, dy: int) -> np.ndarray:
    img = _astronaut_bgr()
    x, y = CENTER[0] + dx, CENTER[1] + dy
    return np.ascontiguousarray(img[y - SIZE // 2 : y + SIZE // 2, x - SIZE // 2 : x + SIZE // 2])


def _landmarks(rng: np.random.Generator) -> list[list[float]]:
    base = np.stack(np.meshgrid(np.linspace(12, 52, 17), np.linspace(16, 48, 4)), -1)
    pts = base.reshape(-1, 2)[:68] + rng.normal(0, 0.5, (68, 2))
    return pts.tolist()


def _add(
    fs: FaceSet,
    name: str,
    img: np.ndarray,
    rng: np.random.Generator,
    *,
    source: str = "clip",
    frame: int = 0,
    yaw: float = 0.0,
    embedding: np.ndarray | None = None,
    residual: float = 0.03,
    jitter: float = 0.02,
) -> Face:
    rel = f"{FACES_DIR}/{name}.png"
    assert cv2.imwrite(str(fs.root / rel), img)
    face = Face(
        file=rel,
        source=source,
        frame=frame,
        time=frame / 25.0 if source == "clip" else None,
        box=[10.0, 10.0, 74.0, 74.0],
        score=0.99,
        landmarks=_landmarks(rng),
        matrix=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        yaw=yaw,
        pitch=float(rng.uniform(-10, 10)),
        roll=float(rng.uniform(-5, 5)),
        blur=blur_score(img),
        residual=residual + float(rng.uniform(-0.002, 0.002)),
        jitter=jitter + float(rng.uniform(-0.002, 0.002)),
        embedding=None if embedding is None else [float(v) for v in embedding],
    )
    fs.faces.append(face)
    return face


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=128)
    return v / np.linalg.norm(v)


@pytest.fixture
def fs(tmp_path: Path) -> FaceSet:
    """15 faces: 9 normal, one heavily blurred, one other person, one face without embedding,
    a soft near-duplicate of n03 (earlier frame, so the later sharper one must win) and an
    exact duplicate of n05 from a second source."""
    rng = np.random.default_rng(0)
    fs = create(tmp_path / "fs", SIZE, "face", "png")
    fs.sources["clip"] = Source("clip.mp4", "a" * 64, "video", 640, 480, 25.0, 1000)
    fs.sources["still"] = Source("still.jpg", "b" * 64, "image", 512, 512)
    person = _unit(rng)

    def emb() -> np.ndarray:
        return person + rng.normal(0, 0.15 / np.sqrt(128), 128)

    for i, ((dx, dy), yaw) in enumerate(zip(SHIFTS, YAWS)):
        _add(fs, f"n{i:02d}", _crop(dx, dy), rng, frame=10 * i, yaw=yaw, embedding=emb())
    blurred = cv2.GaussianBlur(_crop(24, 24), (0, 0), 4)
    _add(fs, "blurred", blurred, rng, frame=95, embedding=emb())
    _add(fs, "other", _crop(-24, 0), rng, frame=97, embedding=_unit(rng))
    _add(fs, "noemb", _crop(24, -24), rng, frame=99)
    soft = cv2.GaussianBlur(_crop(*SHIFTS[3]), (0, 0), 0.6)
    _add(fs, "soft03", soft, rng, frame=25, yaw=-5.0, embedding=emb())
    _add(fs, "dup05", _crop(*SHIFTS[5]), rng, source="still", embedding=emb())
    fs.save()
    return fs


def _by_name(fs: FaceSet) -> dict[str, Face]:
    return {f.name: f for f in fs.faces + fs.rejected}


def _assert_valid(root: Path) -> FaceSet:
    """load() validates the index, and every listed file exists."""
    loaded = load(root)
    for f in loaded.faces + loaded.rejected:
        assert (root / f.file).is_file(), f.file
        assert f.file.startswith(REJECTED_DIR if f in loaded.rejected else FACES_DIR)
    return loaded


# ---- info ---------------------------------------------------------------------------------


def test_info_numbers(fs: FaceSet) -> None:
    out = curate.info(fs)
    json.dumps(out)  # JSON-serializable as is
    assert out["faces"] == 14 and out["rejected"] == 0 and out["rejected_by_reason"] == {}
    assert out["sources"] == 2 and out["size"] == SIZE
    assert out["centering"] == "face" and out["image_format"] == "png"
    assert out["faces_with_embedding"] == 13
    yaws = [f.yaw for f in fs.faces]
    assert out["yaw"]["min"] == -80.0 and out["yaw"]["max"] == 80.0
    assert out["yaw"]["median"] == round(float(np.median(yaws)), 3)
    for key in curate.STAT_KEYS:
        s = out[key]
        assert list(s) == ["min", "p5", "median", "p95", "max"]
        assert s["min"] <= s["p5"] <= s["median"] <= s["p95"] <= s["max"]
    hist = out["yaw_histogram"]
    assert [(b["from"], b["to"]) for b in hist] == [(a, a + 15) for a in range(-90, 90, 15)]
    assert sum(b["count"] for b in hist) == 14
    counts = {b["from"]: b["count"] for b in hist}
    assert counts[-90] == 1 and counts[75] == 1 and counts[0] == 6  # 0 x5, 5; -5 x2 in [-15, 0)
    assert counts[-15] == 2
    ident = out["identity"]
    assert ident["beyond_threshold"] == 1  # only the other person
    assert ident["centroid_distance"]["median"] < 0.3 < 1.0 < ident["centroid_distance"]["max"]
    assert out["near_duplicates"] == 2


def test_info_empty_set(tmp_path: Path) -> None:
    out = curate.info(create(tmp_path / "empty", SIZE, "face", "png"))
    json.dumps(out)
    assert out["faces"] == 0 and out["blur"] is None and out["identity"] is None
    assert out["near_duplicates"] == 0 and sum(b["count"] for b in out["yaw_histogram"]) == 0


# ---- identity and sorting -----------------------------------------------------------------


def test_identity_distances(fs: FaceSet) -> None:
    names = [f.name for f in fs.faces]
    d = curate.identity_distances(fs)
    assert d.shape == (len(fs.faces),)
    assert np.isnan(d[names.index("noemb")])
    assert d[names.index("other")] > 1.0
    assert np.nanmax(np.delete(d, names.index("other"))) < 0.4
    other = np.asarray(fs.faces[names.index("other")].embedding)
    d_ref = curate.identity_distances(fs, np.stack([other, other + 5.0]))
    assert d_ref[names.index("other")] == pytest.approx(0.0, abs=1e-5)
    assert np.isnan(d_ref[names.index("noemb")])
    with pytest.raises(BadInput):
        curate.identity_distances(fs, np.zeros((2, 7)))


def test_sort_by_blur(fs: FaceSet) -> None:
    ranked = curate.sort_faces(fs, "blur")
    values = [v for _, v in ranked]
    assert ranked[0][0].name == "blurred" and values == sorted(values)
    assert [f.blur for f, _ in ranked] == values
    rev = curate.sort_faces(fs, "blur", reverse=True)
    assert [v for _, v in rev] == values[::-1] and rev[-1][0].name == "blurred"


def test_sort_by_identity_yaw_frame(fs: FaceSet) -> None:
    ranked = curate.sort_faces(fs, "identity")
    assert ranked[-1][0].name == "noemb" and np.isnan(ranked[-1][1])  # no value: last
    assert ranked[-2][0].name == "other"
    rev = curate.sort_faces(fs, "identity", reverse=True)
    assert rev[0][0].name == "other" and rev[-1][0].name == "noemb"

    yaw = [v for _, v in curate.sort_faces(fs, "yaw")]
    assert yaw[0] == -80.0 and yaw[-1] == 80.0 and yaw == sorted(yaw)  # signed, not |yaw|

    frames = curate.sort_faces(fs, "frame")
    assert [(f.source, f.frame) for f, _ in frames] == sorted((f.source, f.frame) for f in fs.faces)
    assert frames[-1][0].name == "dup05"  # source "still" after "clip"


def test_sort_unknown_key(fs: FaceSet) -> None:
    with pytest.raises(BadInput, match="blur, yaw, pitch"):
        curate.sort_faces(fs, "sharpness")


def test_export_sorted(fs: FaceSet, tmp_path: Path) -> None:
    ranked = curate.sort_faces(fs, "blur")
    out = tmp_path / "sorted"
    assert curate.export_sorted(fs, ranked, out) == len(ranked)
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"{i:05d}_{v:+.3f}_{f.name}.png" for i, (f, v) in enumerate(ranked, 1)]
    assert files[0].startswith("00001_+") and files[0].endswith("_blurred.png")
    first = cv2.imread(str(out / files[0]))
    assert np.array_equal(first, fs.load_image(ranked[0][0]))
    with pytest.raises(BadInput, match="not empty"):
        curate.export_sorted(fs, ranked, out)
    # Negative values keep their sign in the name.
    yaw_out = tmp_path / "by_yaw"
    curate.export_sorted(fs, curate.sort_faces(fs, "yaw")[:1], yaw_out)
    assert [p.name for p in yaw_out.iterdir()] == ["00001_-80.000_n00.png"]


# ---- filtering ----------------------------------------------------------------------------


def test_auto_rule_and_outliers(fs: FaceSet) -> None:
    rule = curate.auto_rule(fs)
    assert rule.identity_above == 0.6
    assert rule.yaw_beyond is None and rule.pitch_beyond is None and rule.score_below is None
    blur = np.array([f.blur for f in fs.faces])
    assert 0 < rule.blur_below < np.median(blur)
    flagged = {f.name: reason for f, reason in curate.find_outliers(fs, rule)}
    assert flagged["blurred"].startswith("blurry (blur ")
    assert flagged["other"].startswith("other person (identity ")
    assert not any(name.startswith("n") for name in flagged)  # the normal faces stay
    assert set(flagged) <= {"blurred", "other", "soft03"}


def test_auto_rule_uniform_set_flags_nothing(fs: FaceSet) -> None:
    for f in fs.faces:
        f.blur, f.residual, f.jitter, f.embedding = 100.0, 0.03, 0.02, None
    fs.faces[0].residual = 0.0301  # a hair above a zero-MAD median
    rule = curate.auto_rule(fs)
    assert rule.identity_above is None
    assert curate.find_outliers(fs, rule) == []


def test_find_outliers_reason_order(fs: FaceSet) -> None:
    faces = _by_name(fs)
    faces["n00"].residual = 0.5  # also |yaw| 80: misaligned wins (checked first)
    rule = FilterRule(blur_below=50, residual_above=0.1, yaw_beyond=60, score_below=0.5)
    flagged = {f.name: reason for f, reason in curate.find_outliers(fs, rule)}
    assert flagged["blurred"].startswith("blurry (blur ") and "< 50.0)" in flagged["blurred"]
    assert flagged["n00"] == "misaligned (residual 0.500 > 0.100)"
    assert flagged["n08"].startswith("extreme yaw")
    assert set(flagged) == {"blurred", "n00", "n08"}
    # Identity against explicit references: the references' person is kept, the rest flagged.
    other = np.asarray(faces["other"].embedding)
    by_ref = {f.name for f, _ in curate.find_outliers(fs, FilterRule(identity_above=0.6), other)}
    assert "other" not in by_ref and "noemb" not in by_ref and "n01" in by_ref


# ---- near-duplicates ----------------------------------------------------------------------


def test_find_duplicates_keeps_sharper(fs: FaceSet) -> None:
    pairs = {(dup.name, kept.name) for dup, kept in curate.find_duplicates(fs)}
    # soft03 comes first in frame order, but n03 is sharper and is kept; dup05 ties n05 on
    # blur and the earlier (n05) is kept.
    assert pairs == {("soft03", "n03"), ("dup05", "n05")}
    assert curate.find_duplicates(fs, threshold=0) == curate.find_duplicates(fs)
    with pytest.raises(BadInput):
        curate.find_duplicates(fs, threshold=65)


def test_cluster_matches_sequential_greedy() -> None:
    """The blocked, vectorized grouping equals the plain one-face-at-a-time greedy."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2**63, size=40, dtype=np.uint64)
    hashes = base[rng.integers(0, 40, size=1300)]
    for _ in range(3):
        bit = np.left_shift(np.uint64(1), rng.integers(0, 64, size=hashes.size).astype(np.uint64))
        hashes = np.where(rng.random(hashes.size) < 0.5, hashes ^ bit, hashes)

    anchors: list[int] = []
    expected = []
    for i, h in enumerate(hashes.tolist()):
        d = [bin(h ^ int(hashes[a])).count("1") for a in anchors]
        if d and min(d) <= 2:
            expected.append(anchors[int(np.argmin(d))])
        else:
            anchors.append(i)
            expected.append(i)
    assert curate._cluster(hashes, 2).tolist() == expected


def test_cluster_scales() -> None:
    import time

    hashes = np.random.default_rng(2).integers(0, 2**63, size=20_000, dtype=np.uint64)
    t = time.perf_counter()
    assert len(set(curate._cluster(hashes, 6).tolist())) == 20_000
    assert time.perf_counter() - t < 10.0


# ---- rejecting, restoring, selecting ------------------------------------------------------


def test_move_to_rejected_and_restore(fs: FaceSet) -> None:
    root = fs.root
    blurred_bytes = (root / FACES_DIR / "blurred.png").read_bytes()
    flagged = curate.find_outliers(fs, FilterRule(blur_below=50, identity_above=0.6))
    assert {f.name for f, _ in flagged} == {"blurred", "other"}
    assert curate.move_to_rejected(fs, flagged) == 2
    assert not (root / FACES_DIR / "blurred.png").exists()
    assert (root / REJECTED_DIR / "blurred.png").is_file()

    loaded = _assert_valid(root)
    assert len(loaded.faces) == 12 and len(loaded.rejected) == 2
    reasons = {f.name: f.reason for f in loaded.rejected}
    assert reasons["blurred"].startswith("blurry") and reasons["other"].startswith("other person")
    assert curate.info(loaded)["rejected_by_reason"] == {"blurry": 1, "other person": 1}
    # Already rejected faces are ignored (also when they come from another FaceSet object).
    assert curate.move_to_rejected(loaded, flagged) == 0
    assert curate.move_to_rejected(fs, flagged) == 0

    with pytest.raises(BadInput, match="is not rejected"):
        curate.restore(loaded, ["n01"])
    with pytest.raises(BadInput, match="not in this face set"):
        curate.restore(loaded, ["nobody"])
    assert curate.restore(loaded, ["blurred.png"]) == 1
    assert (root / FACES_DIR / "blurred.png").is_file()
    assert not (root / REJECTED_DIR / "blurred.png").exists()
    again = _assert_valid(root)
    assert len(again.faces) == 13 and [f.name for f in again.rejected] == ["other"]
    assert _by_name(again)["blurred"].reason is None

    assert curate.restore(again, None) == 1
    final = _assert_valid(root)
    assert (
        len(final.faces) == 14
        and final.rejected == []
        and list((root / REJECTED_DIR).iterdir()) == []
    )
    assert all(f.reason is None for f in final.faces)
    # The files went through the round trip unchanged.
    assert (root / FACES_DIR / "blurred.png").read_bytes() == blurred_bytes


def test_crash_between_save_and_unlink(fs: FaceSet, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fs.root
    flagged = [(f, "manual") for f in curate.select(fs, ["n01", "n02"])]

    def crash(path: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(os, "unlink", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        curate.move_to_rejected(fs, flagged)
    monkeypatch.undo()

    loaded = _assert_valid(root)
    assert len(loaded.faces) == 12 and {f.name for f in loaded.rejected} == {"n01", "n02"}
    assert (root / FACES_DIR / "n01.png").is_file()  # the orphan left behind: harmless

    # A crashed restore is just as safe, and retrying finishes the job.
    monkeypatch.setattr(os, "unlink", crash)
    with pytest.raises(RuntimeError):
        curate.restore(loaded, ["n01"])
    monkeypatch.undo()
    after = _assert_valid(root)
    assert {f.name for f in after.rejected} == {"n02"}
    assert curate.restore(after, None) == 1
    assert len(_assert_valid(root).faces) == 14


def test_crash_before_save_changes_nothing(fs: FaceSet, monkeypatch: pytest.MonkeyPatch) -> None:
    before = fs.index_path.read_bytes()
    flagged = [(f, "manual") for f in curate.select(fs, ["n01"])]

    def crash(self: FaceSet) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(FaceSet, "save", crash)
    with pytest.raises(RuntimeError):
        curate.move_to_rejected(fs, flagged)
    monkeypatch.undo()
    assert fs.index_path.read_bytes() == before
    assert len(fs.faces) == 14 and fs.rejected == [] and flagged[0][0].file == "faces/n01.png"
    _assert_valid(fs.root)
    # Retrying over the leftover link works.
    assert curate.move_to_rejected(fs, flagged) == 1
    assert len(_assert_valid(fs.root).rejected) == 1


def test_select(fs: FaceSet) -> None:
    got = curate.select(fs, ["n03", "n01.png", "faces/n02.png", "n03"])
    assert [f.name for f in got] == ["n03", "n01", "n02"]
    with pytest.raises(BadInput, match="'ghost'"):
        curate.select(fs, ["n01", "ghost", "ghost2"])
    curate.move_to_rejected(fs, [(got[0], "manual")])
    with pytest.raises(BadInput, match="already rejected"):
        curate.select(fs, ["n03"])
