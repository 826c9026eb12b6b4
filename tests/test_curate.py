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
    landmarks: list[list[float]] | None = None,
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
        landmarks=_landmarks(rng) if landmarks is None else landmarks,
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
    # the same frame, re-encoded softer and brighter: what a person calls the same face
    soft = cv2.convertScaleAbs(cv2.GaussianBlur(_crop(*SHIFTS[3]), (0, 0), 0.4), beta=12)
    # duplicates share their original's landmarks: same expression, same pose
    lms = {f.name: f.landmarks for f in fs.faces}
    _add(fs, "soft03", soft, rng, frame=25, yaw=-5.0, embedding=emb(), landmarks=lms["n03"])
    _add(fs, "dup05", _crop(*SHIFTS[5]), rng, source="still", embedding=emb(),
         landmarks=lms["n05"])  # fmt: skip
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
    # absolute thresholds, whatever the set's spread
    assert rule.blur_below == curate.BLUR_ABSOLUTE
    assert rule.blur_extent_above >= curate.BLUR_EXTENT_ABSOLUTE
    assert (rule.residual_above, rule.jitter_above, rule.jump_above) == (
        curate.RESIDUAL_ABSOLUTE, curate.JITTER_ABSOLUTE, curate.JUMP_ABSOLUTE)  # fmt: skip
    flagged = {f.name: reason for f, reason in curate.find_outliers(fs, rule)}
    assert flagged["blurred"].startswith("blurry (extent ")
    assert flagged["other"].startswith("other person (identity ")
    assert set(flagged) == {"blurred", "other"}  # the normal faces and the soft one stay
    # strictness moves every threshold towards typical faces
    strict = curate.auto_rule(fs, 2.0)
    assert strict.blur_below == 2 * rule.blur_below and strict.jitter_above == rule.jitter_above / 2
    with pytest.raises(BadInput):
        curate.auto_rule(fs, 0.0)


def test_auto_rule_ignores_the_sets_spread(fs: FaceSet) -> None:
    """A tight set does not make a hair-worse face an outlier (the old MAD rule did)."""
    for f in fs.faces:
        f.residual, f.jitter, f.embedding = 0.03, 0.02, None
    fs.faces[0].residual, fs.faces[1].jitter = 0.035, 0.06  # well above a zero spread
    flagged = {f.name for f, _ in curate.find_outliers(fs, curate.auto_rule(fs))}
    assert flagged == {"blurred"}


def test_blur_extent_is_absolute_across_content() -> None:
    """The re-blur extent reads the same for a sharp face at any contrast, and rises with blur."""
    from faceswap.extract.quality import blur_extent

    crop = cv2.resize(_crop(0, 0), (256, 256), interpolation=cv2.INTER_CUBIC)
    low = cv2.convertScaleAbs(crop, alpha=0.5, beta=64)  # half the contrast
    assert blur_score(crop) > 3 * blur_score(low)  # the Laplacian variance reads it as blur
    assert abs(blur_extent(crop) - blur_extent(low)) < 0.03
    values = [blur_extent(cv2.GaussianBlur(crop, (0, 0), s)) for s in (0.5, 2.0, 4.0)]
    assert values == sorted(values) and values[-1] > curate.BLUR_EXTENT_ABSOLUTE


def test_landmark_jumps_blame_the_face_that_jumped() -> None:
    rng = np.random.default_rng(3)
    base = np.asarray(_landmarks(rng))
    faces = []
    for k in range(7):
        lms = base + [3.0 * k, 0.0]  # a head moving right: predictable, not a jump
        if k == 3:
            lms = lms + [25.0, 10.0]  # the fit landed off the face
        faces.append(Face(file=f"faces/f{k}.png", source="clip", frame=k, time=k / 30, box=[0, 0, 64, 64],
                          score=1.0, landmarks=lms.tolist(), matrix=[[1, 0, 0], [0, 1, 0]], yaw=0, pitch=0,
                          roll=0, blur=100, residual=0.02, jitter=0.02))  # fmt: skip
    fs = FaceSet(root=Path("."), size=SIZE, centering="face", image_format="png")
    fs.faces = faces
    jumps = curate.landmark_jumps(fs)
    assert np.isnan(jumps[0]) and np.isnan(jumps[6])  # no neighbour on one side
    assert jumps[3] > curate.JUMP_ABSOLUTE
    assert all(jumps[k] < 0.1 for k in (1, 2, 4, 5))  # the neighbours are not blamed
    for f in faces:  # every-nth extraction: neighbours too far apart say nothing
        f.time = f.frame * 1.0
    assert np.isnan(curate.landmark_jumps(fs)).all()


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
    assert curate.find_duplicates(fs, 0.0, 0.0) == []
    with pytest.raises(BadInput):
        curate.find_duplicates(fs, -1.0)


def test_cluster_matches_sequential_greedy() -> None:
    """The blocked, vectorized grouping equals the plain one-face-at-a-time greedy."""
    rng = np.random.default_rng(1)
    shape_base, pix_base = rng.normal(0, 0.01, (40, 136)), rng.normal(0, 0.05, (40, 64))
    pick = rng.integers(0, 40, size=1300)
    shape = (shape_base[pick] + rng.normal(0, 0.0015, (1300, 136))).astype(np.float32)
    pixels = (pix_base[pick] + rng.normal(0, 0.02, (1300, 64))).astype(np.float32)
    ts, tp = 0.003, 0.03

    anchors: list[int] = []
    expected = []
    for i in range(len(shape)):
        best, best_a = np.inf, -1
        for a in anchors:
            ds = float(np.sqrt(((shape[a] - shape[i]) ** 2).sum() / 68))
            dp = float(np.sqrt(((pixels[a] - pixels[i]) ** 2).mean()))
            if ds < ts and dp < tp and ds < best:
                best, best_a = ds, a
        if best_a < 0:
            anchors.append(i)
            best_a = i
        expected.append(best_a)
    got = curate._cluster(shape, pixels, ts, tp).tolist()
    assert 40 <= len(set(expected)) < 1300  # the test has groups to find
    assert got == expected


def test_cluster_scales() -> None:
    import time

    rng = np.random.default_rng(2)
    shape = rng.normal(0, 0.02, (10_000, 136)).astype(np.float32)
    pixels = rng.normal(0, 1, (10_000, 1024)).astype(np.float32)
    t = time.perf_counter()
    assert len(set(curate._cluster(shape, pixels, 0.004, 0.05).tolist())) == 10_000
    assert time.perf_counter() - t < 20.0


# ---- rejecting, restoring, selecting ------------------------------------------------------


def test_move_to_rejected_and_restore(fs: FaceSet) -> None:
    root = fs.root
    blurred_bytes = (root / FACES_DIR / "blurred.png").read_bytes()
    flagged = curate.find_outliers(fs, FilterRule(blur_below=50, identity_above=0.6))
    assert {f.name for f, _ in flagged} == {"blurred", "other"}, flagged
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
