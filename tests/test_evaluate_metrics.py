"""Evaluation metrics on constructed cases with known answers (pure functions, no models)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from faceswap.evaluate import coverage, identity, pose, temporal
from faceswap.evaluate.metrics import PSNR_MAX, psnr, ssim, summarize
from faceswap.evaluate.recommend import recommend
from faceswap.extract.alignment import template_landmarks
from faceswap.faceset import Face, FaceSet, Source

# ---- PSNR / SSIM ----------------------------------------------------------------------------


def _face_image(shift: int = 0, size: int = 64) -> torch.Tensor:
    """(1, 3, S, S) a smooth synthetic 'face' (blobs on a gradient), shifted right by `shift` px."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    x = x - shift
    img = 0.3 + 0.2 * x / size
    for cx, cy, r, v in ((22, 26, 5, 0.5), (42, 26, 5, 0.5), (32, 46, 8, -0.2), (32, 34, 3, 0.3)):
        img = img + v * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r**2))
    rgb = np.stack([img, img * 0.9, img * 0.8])
    return torch.from_numpy(np.clip(rgb, 0, 1))[None].float()


def _centre_mask(size: int = 64) -> torch.Tensor:
    m = torch.zeros(1, 1, size, size)
    m[..., 16:48, 16:48] = 1.0
    return m


def test_psnr_ssim_identical_images() -> None:
    x = _face_image()
    assert psnr(x, x)[0] == PSNR_MAX
    assert ssim(x, x)[0] == pytest.approx(1.0, abs=1e-6)


def test_psnr_of_a_constant_offset_is_known() -> None:
    x = _face_image() * 0.5
    # MSE = 0.1^2 -> PSNR = 10 log10(1 / 0.01) = 20 dB
    assert psnr(x + 0.1, x)[0] == pytest.approx(20.0, abs=1e-4)
    assert psnr(x + 0.01, x)[0] == pytest.approx(40.0, abs=1e-3)


def test_mask_ignores_the_background() -> None:
    x = _face_image()
    y = x.clone()
    y[..., :8, :] = 1.0 - y[..., :8, :]  # ruin the top rows, outside the mask
    m = _centre_mask()
    assert psnr(y, x, m)[0] == PSNR_MAX
    assert ssim(y, x, m)[0] == pytest.approx(1.0, abs=1e-6)
    assert psnr(y, x)[0] < 20 and ssim(y, x)[0] < 0.95


def test_shifted_face_scores_lower_the_further_it_moves() -> None:
    x = _face_image()
    m = _centre_mask()
    p = [psnr(_face_image(s), x, m)[0] for s in (0, 1, 2, 4)]
    s = [ssim(_face_image(k), x, m)[0] for k in (0, 1, 2, 4)]
    assert p[0] == PSNR_MAX and all(a > b for a, b in zip(p, p[1:]))
    assert s[0] == pytest.approx(1.0, abs=1e-6) and all(a > b for a, b in zip(s, s[1:]))
    assert s[-1] < 0.95


def test_per_image_values_in_a_batch() -> None:
    x = torch.cat([_face_image(), _face_image()]) * 0.5
    y = torch.cat([x[:1], x[1:] + 0.1])
    np.testing.assert_allclose(psnr(y, x), [PSNR_MAX, 20.0], atol=1e-4)


def test_summarize_skips_non_finite() -> None:
    s = summarize(np.array([1.0, 2.0, 3.0, np.nan]))
    assert s["n"] == 3 and s["mean"] == 2.0 and s["median"] == 2.0
    assert summarize(np.array([]))["mean"] is None


# ---- pose and expression ----------------------------------------------------------------------


def _landmarks() -> np.ndarray:
    """(68, 2): a plausible face (the mean face for 17-67, a jaw arc for 0-16), 256 px crop."""
    pts = np.zeros((68, 2))
    pts[17:] = template_landmarks(256, "face")
    t = np.linspace(-1.2, 1.2, 17)
    pts[:17] = np.stack([128 + 95 * np.sin(t), 120 + 110 * np.cos(t) * 0.9], 1)
    return pts


def test_pose_error_wraps_around() -> None:
    err = pose.pose_error(np.array([[170.0, 0, -10]]), np.array([[-170.0, 5, 10]]))
    np.testing.assert_allclose(err, [[20.0, 5.0, 20.0]])


def test_normalized_landmarks_put_the_eyes_at_fixed_points() -> None:
    lm = pose.normalize_landmarks(_landmarks()[None])[0]
    np.testing.assert_allclose(lm[36:42].mean(0), [-0.5, 0], atol=1e-9)
    np.testing.assert_allclose(lm[42:48].mean(0), [0.5, 0], atol=1e-9)


def test_expression_error_ignores_position_size_and_roll() -> None:
    lm = _landmarks()
    a = np.deg2rad(20)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = (lm - 128) @ rot.T * 0.6 + [40, -25]  # rotated, smaller, shifted: same expression
    e = pose.expression_error(lm[None], moved[None])
    assert e["mouth"][0] == pytest.approx(0, abs=1e-9) and e["eyes"][0] == pytest.approx(
        0, abs=1e-9
    )


def test_expression_error_of_an_opened_mouth_is_known() -> None:
    lm = _landmarks()
    iod = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
    opened = lm.copy()
    lower = [55, 56, 57, 58, 59, 64, 65, 66, 67]  # lower lip, outer and inner
    opened[lower, 1] += 0.2 * iod  # lower lip down by 0.2 inter-ocular distances
    e = pose.expression_error(lm[None], opened[None])
    # each mouth part is centred on itself: 9 of 20 points moved by 0.2 -> the centre moves
    # 0.09; moved points are then 0.11 off, the others 0.09
    expected = (9 * 0.11 + 11 * 0.09) / 20
    assert e["mouth"][0] == pytest.approx(expected, rel=1e-6)
    assert e["eyes"][0] == pytest.approx(0, abs=1e-9)


# ---- temporal ---------------------------------------------------------------------------------


def _track(n: int, iod: float = 50.0) -> np.ndarray:
    """(n, 68, 2) a face moving smoothly (constant velocity) with the given inter-ocular distance."""
    lm = _landmarks()
    lm = (lm - lm.mean(0)) * iod / np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
    return np.stack([lm + [200 + 1.5 * t, 150 + 0.5 * t] for t in range(n)])


def test_smooth_motion_and_a_faithful_swap_have_no_jitter() -> None:
    src = _track(30)
    frames = np.arange(30)
    out = temporal.temporal_stability(src, src + [3.0, -2.0], frames)  # swap shifted, not shaking
    assert out["source_jitter"]["mean"] == pytest.approx(0, abs=1e-9)
    assert out["added_jitter"]["mean"] == pytest.approx(0, abs=1e-9)


def test_jitter_of_independent_noise_is_known() -> None:
    n, sigma, iod = 3000, 1.0, 50.0
    src = _track(n, iod)
    swap = src + np.random.default_rng(0).normal(0, sigma, src.shape)
    frames = np.arange(n)
    out = temporal.temporal_stability(src, swap, frames)
    # second difference of iid noise: sigma*sqrt(6) per axis, 2-D Rayleigh mean * sqrt(pi/2)
    assert out["swap_jitter"]["mean"] == pytest.approx(sigma * math.sqrt(3 * math.pi) / iod,
                                                       rel=0.03)  # fmt: skip
    # first difference: sigma*sqrt(2) per axis -> sigma*sqrt(pi) mean length
    assert out["added_jitter"]["mean"] == pytest.approx(sigma * math.sqrt(math.pi) / iod, rel=0.03)
    assert out["jitter_ratio"] is None  # the source has no jitter to compare with


def test_jitter_skips_gaps_in_the_frames() -> None:
    src = _track(6)
    frames = np.array([0, 1, 2, 10, 11, 12])
    src[3:] += 100.0  # a jump across the gap is not motion between neighbours
    assert temporal.jitter(src, frames).shape == (2,)
    assert temporal.jitter(src, frames).max() == pytest.approx(0, abs=1e-9)
    assert temporal.added_jitter(src, src + 1, frames).shape == (4,)
    # every other frame extracted: the stride is 2, still neighbours
    assert temporal.jitter(src[:3], np.array([0, 2, 4])).shape == (1,)


def _face(frame: int, yaw: float = 0.0, pitch: float = 0.0, lm: np.ndarray | None = None,
          x: float = 0.0, source: str = "clip") -> Face:  # fmt: skip
    lm = _track(1)[0] + [x, 0] if lm is None else lm
    box = [*(lm.min(0) - 5), *(lm.max(0) + 5)]
    return Face(file=f"faces/{source}_f{frame:06d}_0.png", source=source, frame=frame,
                time=frame / 25, box=box, score=1.0, landmarks=lm.tolist(),
                matrix=[[1.0, 0, 0], [0, 1.0, 0]], yaw=yaw, pitch=pitch, roll=0.0, blur=100.0,
                residual=0.02, jitter=0.01)  # fmt: skip


def _faceset(root: Path, faces: list[Face], sources=("clip",)) -> FaceSet:
    fs = FaceSet(root=root, size=64, centering="face")
    for s in sources:
        fs.sources[s] = Source(f"{s}.mp4", s * 8, "video", 640, 360, 25.0, 100)
    fs.faces = faces
    return fs


def test_match_clip_pairs_faces_of_the_same_frames(tmp_path: Path) -> None:
    track = _track(8)
    src = _faceset(tmp_path / "src", [_face(f, lm=track[f]) for f in range(8)]
                   + [_face(f, x=300.0) for f in range(8)])  # another person, far away  # fmt: skip
    clip = _faceset(tmp_path / "clip", [_face(f, lm=track[f] + 1.0, source="swap")
                                        for f in (1, 2, 3, 5, 7)], sources=("swap",))  # fmt: skip
    frames, s, w = temporal.match_clip(src, clip)
    assert frames.tolist() == [1, 2, 3, 5, 7]
    np.testing.assert_allclose(w - s, 1.0)


# ---- coverage and the OOD finder --------------------------------------------------------------


def _pose_set(root: Path, yaws: np.ndarray, pitches: np.ndarray) -> FaceSet:
    return _faceset(root, [_face(i, y, p) for i, (y, p) in enumerate(zip(yaws, pitches))])


def test_covered_needs_min_faces_within_the_radius() -> None:
    train = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [30.0, 0.0]])
    q = np.array([[1.0, 1.0], [30.0, 1.0], [60.0, 0.0]])
    assert coverage.covered(train, q, radius=10, min_faces=3).tolist() == [True, False, False]
    assert coverage.covered(train, q, radius=10, min_faces=1).tolist() == [True, True, False]


def test_extent_is_the_kth_most_extreme_pose() -> None:
    assert coverage.extent(np.array([-50.0, -20, -10, 0, 10, 20, 45]), 2) == (-20.0, 20.0)
    assert coverage.extent(np.array([1.0]), 3) is None


def test_ood_finder_on_sets_with_known_pose_ranges(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    # A: yaw -40..40, B: yaw -20..30 (never turns far), pitch -10..10 for both
    a = _pose_set(tmp_path / "a", rng.uniform(-40, 40, 800), rng.uniform(-10, 10, 800))
    b = _pose_set(tmp_path / "b", rng.uniform(-20, 30, 800), rng.uniform(-10, 10, 800))
    # target: 100 faces evenly from yaw -40 to 59 (one per degree), pitch 0
    target = _pose_set(tmp_path / "t", np.arange(-40.0, 60.0), np.zeros(100))
    out = coverage.ood_target({"A": coverage.poses_of(a), "B": coverage.poses_of(b)}, target,
                              radius=5.0, min_faces=3)  # fmt: skip
    gaps_b = {(g["axis"], g["side"]): g for g in out["sets"]["B"]["gaps"]}
    # B ends near -20 and +30: 20 target faces below, 29-30 above, of which those within the
    # 5 degree radius of B's last faces are still covered (one definition: gaps are uncovered)
    assert gaps_b[("yaw", -1)]["limit"] == pytest.approx(-20, abs=1.0)
    assert 0.14 <= gaps_b[("yaw", -1)]["share"] <= 0.20
    assert gaps_b[("yaw", 1)]["limit"] == pytest.approx(30, abs=1.0)
    assert 0.23 <= gaps_b[("yaw", 1)]["share"] <= 0.29
    assert ("pitch", 1) not in gaps_b and ("pitch", -1) not in gaps_b
    # uncovered by B: beyond its range (within the 5 degree radius some are still covered)
    assert 0.40 <= out["sets"]["B"]["share"] <= 0.50
    assert 0.15 <= out["sets"]["A"]["share"] <= 0.21  # A covers up to 40: 19-20 faces above

    # every uncovered face is listed with its frame, and frames come as spans
    outside = {o["frame"] for o in out["outside"]}
    assert {0, 99} <= outside and 45 not in outside  # yaw -40 (A's edge) and +59 are out
    assert out["outside_share"] == pytest.approx(len(outside) / 100)
    assert out["outside_spans"]["clip"][-1][1] == 99


def test_one_coverage_definition_never_contradicts_itself(tmp_path: Path) -> None:
    """Gaps <= a set's uncovered share <= the outside share; a set covers its own clip."""
    rng = np.random.default_rng(5)

    def clip(name: str, yaws: np.ndarray, pitches: np.ndarray) -> FaceSet:
        faces = [_face(i, y, p, source=name) for i, (y, p) in enumerate(zip(yaws, pitches))]
        return _faceset(tmp_path / name, faces, sources=(name,))

    for trial in range(4):
        a = clip(f"a{trial}", rng.uniform(-30, 30, 300), rng.normal(0, 8, 300))
        b = clip(f"b{trial}", rng.uniform(-15, 15, 60), rng.normal(-5, 4, 60))
        sets = {"A": coverage.poses_of(a), "B": coverage.poses_of(b)}
        for target in (a, b):  # each set's own clip as the target
            own = {"A": coverage.members(a, target), "B": coverage.members(b, target)}
            out = coverage.ood_target(sets, target, radius=10.0, min_faces=3, own=own)
            name = "A" if target is a else "B"
            assert out["sets"][name]["share"] == 0.0 and not out["sets"][name]["gaps"]
            for s in out["sets"].values():
                assert s["share"] <= out["outside_share"]
                for g in s["gaps"]:
                    assert g["share"] <= s["share"]
                # every uncovered face lies beyond the set's range on some axis, or in a hole
                assert sum(g["share"] for g in s["gaps"]) <= 2 * s["share"]
            missing = {o["name"] for o in out["outside"]}
            assert len(missing) == round(out["outside_share"] * out["faces"])


def test_heatmap_counts_every_pose_once() -> None:
    poses = np.array([[-95.0, 0.0], [0.0, 0.0], [5.0, 5.0], [89.0, -70.0]])
    counts, ye, pe = coverage.heatmap(poses, 10.0)
    assert counts.shape == (len(pe) - 1, len(ye) - 1) == (12, 18)
    assert counts.sum() == 4
    assert counts[6, 9] == 2  # yaw 0-10, pitch 0-10
    assert counts[6, 0] == 1 and counts[0, 17] == 1  # clipped into the edge bins


# ---- identity ---------------------------------------------------------------------------------


def test_identity_scores_on_constructed_embeddings() -> None:
    rng = np.random.default_rng(1)

    def person(n: int) -> np.ndarray:
        c = rng.normal(size=128)
        c /= np.linalg.norm(c)
        return c + rng.normal(0, 0.02, (n, 128))

    a, b = person(20), person(20)
    cents = {"a": identity.centroid(a), "b": identity.centroid(b)}
    assert identity.centroid_gap(cents)["a-b"] > 1.0
    good = identity.identity_scores(b[:10] + 0.001, cents, "b")  # swaps that look like B
    assert good["retrieval"] == 1.0 and good["same_person"] == 1.0
    assert good["distance_to"]["b"]["mean"] < 0.3 < good["distance_to"]["a"]["mean"]
    bad = identity.identity_scores(a[:10], cents, "b")  # swaps that still look like A
    assert bad["retrieval"] == 0.0 and bad["nearest"] == {"a": 10, "b": 0}
    half = identity.identity_scores(np.concatenate([a[:5], b[:5]]), cents, "b")
    assert half["retrieval"] == 0.5


# ---- recommendations --------------------------------------------------------------------------


def test_recommendation_names_the_pose_gap_and_the_share() -> None:
    numbers = {
        "sets": {"A": {"faces": 2000, "path": "faces/a", "blurry": 0, "near_duplicates": 0,
                       "brightness": {"median": 120.0}, "identity": None},
                 "B": {"faces": 150, "path": "faces/b", "blurry": 30, "near_duplicates": 0,
                       "brightness": {"median": 125.0}, "identity": None}},
        "coverage": {"min_faces": 3, "outside_share": 0.18, "outside_spans": {"k": [[10, 40]]},
                     "sets": {"B": {"share": 0.18, "gaps": [{"axis": "yaw", "side": 1,
                                              "limit": 30.0, "share": 0.18, "faces": 54}]},
                              "A": {"share": 0.0, "gaps": []}}},
    }  # fmt: skip
    texts = [r["text"] for r in recommend(numbers)]
    assert any(t.startswith("18% of the target clip (54 faces) is beyond +30 degrees yaw, where "
                            "B has fewer than 3 faces to cover it") for t in texts), texts  # fmt: skip
    assert any("not covered by B 18%, A 0%" in t for t in texts), texts
    assert any("frames 10-40" in t for t in texts)
    assert any("B has only 150 faces" in t for t in texts)
    assert any("20% of B's faces are blurry" in t for t in texts)
    assert all(r["level"] == "warn" for r in recommend(numbers)[:4])


def test_mouth_gaps_find_the_mouths_a_set_never_shows() -> None:
    # B talks throughout: its lips are parted by 2-10% of the face height, never closed
    b = np.linspace(0.02, 0.10, 40)
    target = np.array([0.0, 0.004, 0.021, 0.05, 0.10, 0.12, 0.2])
    gaps = coverage.mouth_gaps(b, target, min_faces=3)
    closed, wide = gaps
    assert closed["side"] == -1 and closed["faces"] == 2  # 0.021 is within the tolerance
    assert closed["limit"] == pytest.approx(b[2], abs=1e-4)
    assert (
        wide["side"] == 1 and wide["faces"] == 2 and wide["share"] == pytest.approx(2 / 7, abs=1e-5)
    )
    own = np.array([True, False, False, False, False, False, True])  # B's own faces are shown
    assert [g["faces"] for g in coverage.mouth_gaps(b, target, own, 3)] == [1, 1]
    assert coverage.mouth_gaps(b[:2], target, min_faces=3) == []  # too few faces to say
    assert coverage.mouth_gaps(target, target, min_faces=1) == []


def test_recommendation_names_the_mouth_b_never_shows() -> None:
    numbers = {"sets": {}, "mouth_coverage": {
        "A": [], "B": [{"side": -1, "limit": 0.0134, "share": 0.7, "faces": 409},
                       {"side": 1, "limit": 0.2, "share": 0.01, "faces": 3}]}}  # fmt: skip
    recs = recommend(numbers)
    assert recs[0]["level"] == "warn" and recs[0]["topic"] == "expression"
    assert recs[0]["text"].startswith(
        "70% of the target clip (409 faces) has the mouth more closed than B's face set ever "
        "shows (its most closed faces still part the lips by 1.3% of the face height)"
    )
    assert "Add B footage with the mouth closed" in recs[0]["text"]
    assert not any("wider open" in r["text"] for r in recs)  # 1% is under the warning share


def test_no_problems_gives_one_info_line() -> None:
    ok = {"faces": 2000, "path": "p", "blurry": 0, "near_duplicates": 0,
          "brightness": {"median": 120.0}, "identity": None}  # fmt: skip
    recs = recommend({"sets": {"A": ok, "B": dict(ok)}, "coverage": None})
    assert [r["topic"] for r in recs] == ["summary"]
