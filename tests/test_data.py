"""Training data: leak-free split, in-memory dataset, seeded augmentation, resumable streams."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceswap import faceset as fsmod
from faceswap.data import AugmentConfig, BatchStream, FaceDataset, leak_report, split_train_val
from faceswap.data.augment import geometry_matrices, landmark_flow
from faceswap.data.bench import gpu_augment_throughput, loader_throughput
from faceswap.data.gpu_augment import augment_batch, landmark_flows, pixel_to_theta, warp_batch
from faceswap.data.split import MIN_VAL_FACES, blocks_of
from faceswap.errors import BadInput

OFF = AugmentConfig(
    random_warp=False, rotation=0, zoom=0, shift=0, flip=0, color=0, lighting=0, warp_scale=0
)


@pytest.fixture(scope="session")
def faces(tmp_path_factory) -> fsmod.FaceSet:
    """A real face set: the astronaut clip (30 frames) extracted at 64 px. At 320x240 the
    HOG detector misses a varying share of frames, so the frame is larger."""
    from faceswap.config import ExtractConfig
    from faceswap.extract.pipeline import extract
    from faceswap.synthetic import render_clip

    folder = tmp_path_factory.mktemp("data")
    clip = folder / "clip.mp4"
    render_clip(clip, 30, frame_size=(640, 360), base_scale=1.0)
    out = folder / "set"
    extract([str(clip)], out, ExtractConfig(size=64, workers=1, embed=False))
    fs = fsmod.load(out)
    assert len(fs.faces) >= 24, "the extractor should find the face in most frames"
    return fs


def _synthetic_set(real: fsmod.FaceSet, tmp_path, videos=(), images: int = 0) -> fsmod.FaceSet:
    """A face set (in memory) of copies of one real face record: `videos` is a list of
    (name, frames), and `images` still images with one or two faces each."""
    proto = real.faces[0]
    src_proto = next(iter(real.sources.values()))
    fs = fsmod.FaceSet(root=tmp_path / "synthetic", size=real.size, centering=real.centering)
    for name, frames in videos:
        fs.sources[name] = dataclasses.replace(src_proto, path=f"{name}.mp4", sha256=name)
        for fr in frames:
            f = dataclasses.replace(proto, source=name, frame=fr, file=f"faces/{name}_{fr}.png")
            fs.faces.append(f)
    for k in range(images):
        key = f"img{k:03d}"
        fs.sources[key] = fsmod.Source(path=f"{key}.png", sha256=key, kind="image", width=64,
                                       height=64)  # fmt: skip
        for n in range(1 + k % 2):
            fs.faces.append(dataclasses.replace(proto, source=key, frame=0, time=None,
                                                file=f"faces/{key}_{n}.png"))  # fmt: skip
    return fs


def _long_set(real, tmp_path):
    # two videos, the second with a break of 100 frames in the middle
    return _synthetic_set(
        real, tmp_path, [("a", range(0, 600)), ("b", list(range(0, 150)) + list(range(250, 400)))]
    )


# ---- split ---------------------------------------------------------------------------------


def test_split_has_no_leak_and_about_the_asked_validation_share(faces, tmp_path):
    fs = _long_set(faces, tmp_path)
    n = len(fs.faces)
    train, val = split_train_val(fs, val_fraction=0.1, seed=0, gap=12)
    assert set(train).isdisjoint(val)
    assert leak_report(fs, train, val, gap=12) == 0
    assert 0.07 <= len(val) / n <= 0.13
    # the guard band costs at most two gaps per validation block
    assert n - len(train) - len(val) <= 2 * 12 * len(blocks_of(fs, 12))
    assert len(train) > 0.75 * n
    # a per-face random split would leak almost everywhere: the report sees that
    rng = np.random.default_rng(0)
    naive = rng.permutation(n)
    assert leak_report(fs, naive[100:].tolist(), naive[:100].tolist(), gap=12) > 0.5 * (n - 100)


def test_split_is_deterministic_per_seed(faces, tmp_path):
    fs = _long_set(faces, tmp_path)
    assert split_train_val(fs, 0.1, seed=3) == split_train_val(fs, 0.1, seed=3)
    assert split_train_val(fs, 0.1, seed=3)[1] != split_train_val(fs, 0.1, seed=4)[1]


def test_blocks_break_at_gaps_and_after_two_seconds(faces, tmp_path):
    fs = _long_set(faces, tmp_path)
    blocks = blocks_of(fs, gap=12)  # 24 fps -> 48-frame blocks
    for b in blocks:
        frames = [fs.faces[i].frame for i in b]
        assert len({fs.faces[i].source for i in b}) == 1
        assert max(frames) - min(frames) < 48
        assert max(np.diff(frames), default=0) <= 12
    b_blocks = [b for b in blocks if fs.faces[b[0]].source == "b"]
    assert not any(fs.faces[b[0]].frame < 150 <= fs.faces[b[-1]].frame for b in b_blocks)


def test_images_only_set_splits_by_image(faces, tmp_path):
    fs = _synthetic_set(faces, tmp_path, images=40)
    train, val = split_train_val(fs, 0.1, seed=1)
    assert val and train
    assert len(train) + len(val) == len(fs.faces)  # stills need no guard band
    side = {}
    for i in train + val:
        side.setdefault(fs.faces[i].source, set()).add(i in val)
    assert all(len(s) == 1 for s in side.values())  # both faces of an image on one side
    assert leak_report(fs, train, val, 12) == 0


def test_too_small_sets_raise_bad_input(faces, tmp_path):
    with pytest.raises(BadInput, match="too small"):
        split_train_val(_synthetic_set(faces, tmp_path, [("a", range(10))]), 0.1)
    with pytest.raises(BadInput, match="too small"):
        split_train_val(_synthetic_set(faces, tmp_path, images=1), 0.1)
    # the real 30-frame clip is one block: no validation possible without a leak
    with pytest.raises(BadInput, match="too small"):
        split_train_val(faces, 0.05)
    train, val = split_train_val(faces, 0.0)
    assert val == [] and len(train) == len(faces.faces)
    # two blocks are enough; val is never empty then
    train, val = split_train_val(_synthetic_set(faces, tmp_path, images=2), 0.01)
    assert len(val) >= 1 and len(train) >= 1


def test_a_small_clip_holds_out_its_end_not_a_whole_block(faces, tmp_path):
    # 125 frames at 24 fps: blocks of 48, 48 and 29 frames against a share of 6; a whole
    # block (the smallest, 29) plus its guard band would cost 41 faces, a third of the set
    fs = _synthetic_set(faces, tmp_path, [("a", range(125))])
    for seed in range(4):
        train, val = split_train_val(fs, 0.05, seed=seed, gap=12)
        frames = sorted(fs.faces[i].frame for i in val)
        assert len(val) == MIN_VAL_FACES
        assert frames in (list(range(8)), list(range(117, 125)))  # one end of the clip
        assert leak_report(fs, train, val, gap=12) == 0
        assert len(train) == 125 - 8 - 12  # the guard band on one side only
    assert len({tuple(split_train_val(fs, 0.05, seed=s)[1]) for s in range(8)}) == 2  # both ends


# ---- dataset -------------------------------------------------------------------------------


def _all(fs):
    return list(range(len(fs.faces)))


def test_dataset_items_have_the_documented_shapes_and_ranges(faces):
    ds = FaceDataset(faces, _all(faces), 32, AugmentConfig(), seed=0)
    n = len(faces.faces)
    assert len(ds) == n
    assert ds.images.shape == (n, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.masks.shape == (n, 32, 32) and ds.regions.shape == (n, 32, 32, 2)
    assert ds.nbytes >= 2 * n * 32 * 32 * 3
    item = ds[0]
    for key, ch in (("input", 3), ("target", 3), ("mask", 1), ("eyes", 1), ("mouth", 1)):
        t = item[key]
        assert t.shape == (ch, 32, 32) and t.dtype == torch.float32, key
        assert t.min() >= 0.0 and t.max() <= 1.0, key
    assert item["index"] == 0
    assert item["mask"].mean() > 0.2  # the face fills a good part of the crop
    assert 0 < item["eyes"].mean() < item["mask"].mean()
    assert 0 < item["mouth"].mean() < item["mask"].mean()


def test_faces_are_decoded_once_and_never_during_items(faces, monkeypatch):
    calls = []
    original = faces.load_image
    monkeypatch.setattr(faces, "load_image", lambda f: calls.append(f) or original(f))
    ds = FaceDataset(faces, [0, 2, 4, 6], 32, AugmentConfig(), seed=0)
    assert len(calls) == 4
    calls.clear()
    for i in range(len(ds)):
        ds[i]
    next(BatchStream(ds, 3, seed=0))
    assert calls == []


def test_clean_items_are_the_resized_face(faces):
    ds = FaceDataset(faces, [5, 1], 32, None, seed=0)
    item = ds[0]
    ref = cv2.resize(faces.load_image(faces.faces[5]), (32, 32), interpolation=cv2.INTER_AREA)
    ref = torch.from_numpy(ref[..., ::-1].copy()).permute(2, 0, 1).float() / 255
    assert torch.equal(item["input"], item["target"])
    assert (item["target"] - ref).abs().max() <= 1e-6
    assert item["index"] == 5


def test_warp_changes_only_the_input_and_no_augmentation_changes_nothing(faces):
    warp_only = dataclasses.replace(OFF, random_warp=True, warp_scale=0.03)
    ds = FaceDataset(faces, _all(faces), 32, warp_only, seed=0)
    clean = FaceDataset(faces, _all(faces), 32, None, seed=0)
    item, ref = ds[3], clean[3]
    assert torch.equal(item["target"], ref["target"])  # the target stays clean
    assert (item["input"] - item["target"]).abs().mean() > 0.01
    off = FaceDataset(faces, _all(faces), 32, OFF, seed=0)[3]
    for key in ("input", "target", "mask", "eyes", "mouth"):
        assert torch.equal(off[key], ref[key]), key
    full = FaceDataset(faces, _all(faces), 32, AugmentConfig(), seed=0)[3]
    assert not torch.equal(full["target"], ref["target"])
    assert not torch.equal(full["input"], full["target"])


def test_flip_mirrors_face_and_masks_together(faces):
    ds = FaceDataset(faces, _all(faces), 32, dataclasses.replace(OFF, flip=1.0), seed=0)
    clean = FaceDataset(faces, _all(faces), 32, None, seed=0)
    item, ref = ds[2], clean[2]
    for key in ("target", "input", "mask", "eyes", "mouth"):
        assert (item[key] - ref[key].flip(-1)).abs().max() <= 1e-6, key


def test_augmentation_is_a_pure_function_of_seed_epoch_and_index(faces):
    cfg = AugmentConfig()
    a = FaceDataset(faces, _all(faces), 32, cfg, seed=7)
    b = FaceDataset(faces, _all(faces), 32, cfg, seed=7)
    first = a[(4, 2)]
    b.set_epoch(2)
    again = b[4]
    for key in ("input", "target", "mask"):
        assert torch.equal(first[key], again[key]), key
    assert not torch.equal(a[(4, 3)]["input"], first["input"])  # another epoch
    assert not torch.equal(a[(5, 2)]["input"], first["input"])  # another face
    other_seed = FaceDataset(faces, _all(faces), 32, cfg, seed=8)[(4, 2)]
    assert not torch.equal(other_seed["input"], first["input"])


def test_warp_to_landmarks_warps_the_input_toward_another_face(faces):
    cfg = dataclasses.replace(OFF, warp_to_landmarks=True)
    ds = FaceDataset(faces, _all(faces), 64, cfg, seed=0)
    nb = ds.neighbours()
    assert nb.shape == (len(ds), min(10, len(ds) - 1))
    assert not (nb == np.arange(len(ds))[:, None]).any()
    item = ds[0]
    diff = (item["input"] - item["target"]).abs().mean()
    assert 0.0 < diff < 0.1


def test_landmark_flow_moves_landmarks_and_torch_matches_numpy(faces):
    dst = faces.faces[0].aligned_landmarks()
    src = dst.copy()
    src[48:68, 1] += 3.0  # mouth down
    src += (1.0, -0.5)
    dense = landmark_flow(src, dst, 64, grid=64)
    m = dst.astype(np.float32)
    at = np.stack([cv2.remap(dense[..., c], m[:, :1].copy(), m[:, 1:].copy(),
                             cv2.INTER_LINEAR)[:, 0] for c in (0, 1)], 1)  # fmt: skip
    assert np.abs(at - (src - dst)).mean() < 0.15
    rng = np.random.default_rng(0)
    s = dst[None] + rng.normal(0, 1, (3, 68, 2))
    d = dst[None] + rng.normal(0, 1, (3, 68, 2))
    ref = np.stack([landmark_flow(a, b, 64) for a, b in zip(s, d)])
    got = landmark_flows(torch.from_numpy(s), torch.from_numpy(d), 64).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_bad_arguments_are_rejected(faces):
    with pytest.raises(ValueError):
        AugmentConfig(flip=1.5)
    with pytest.raises(ValueError):
        FaceDataset(faces, [0], 32, None, seed=0, mask_kind="blob")
    empty = FaceDataset(faces, [], 32, None, seed=0)  # a set without validation faces
    assert len(empty) == 0 and empty.images.shape == (0, 32, 32, 3)
    with pytest.raises(BadInput):
        BatchStream(empty, 4, seed=0)


# ---- batch stream --------------------------------------------------------------------------


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stream_resumes_exactly(faces):
    ds = FaceDataset(faces, _all(faces), 32, AugmentConfig(), seed=1)
    s = BatchStream(ds, 8, seed=5)
    for _ in range(3):
        next(s)
    state = s.state_dict()
    n = len(ds)
    assert state == {"epoch": 24 // n, "position": 24 % n}
    expected = [next(s) for _ in range(n // 8 + 2)]  # crosses into the next epoch
    resumed = BatchStream(ds, 8, seed=5)
    resumed.load_state_dict(state)
    for want in expected:
        assert _same(next(resumed), want)
    assert resumed.state_dict() == s.state_dict()


def test_every_face_once_per_epoch_and_short_last_batch_without_drop_last(faces):
    ds = FaceDataset(faces, _all(faces), 16, None, seed=0)
    n = len(ds)
    s = BatchStream(ds, 8, seed=0)
    seen = torch.cat([next(s)["index"] for _ in range(n)])  # 8 epochs' worth, full batches
    assert torch.equal(torch.bincount(seen, minlength=n), torch.full((n,), 8))
    s = BatchStream(ds, 8, seed=0, drop_last=False)
    sizes = [len(next(s)["index"]) for _ in range(n // 8 + 1)]
    assert sizes == [8] * (n // 8) + [n % 8] and s.state_dict() == {"epoch": 1, "position": 0}
    assert not np.array_equal(BatchStream(ds, n, 0).order(0), BatchStream(ds, n, 0).order(1))


def test_workers_give_the_same_batches_as_the_main_process(faces):
    ds = FaceDataset(faces, _all(faces), 32, AugmentConfig(), seed=2)
    inline = BatchStream(ds, 6, seed=3)
    pooled = BatchStream(ds, 6, seed=3, num_workers=2)
    try:
        for _ in range(3):
            assert _same(next(inline), next(pooled))
        state = inline.state_dict()
        want = next(inline)
        pooled.load_state_dict(state)  # restart the workers' prefetch at the saved point
        assert _same(next(pooled), want)
    finally:
        pooled.close()


def test_device_augment_stream_is_resumable_and_shaped_like_the_cpu_one(faces):
    ds = FaceDataset(faces, _all(faces), 32, AugmentConfig(warp_to_landmarks=True), seed=0)
    s = BatchStream(ds, 4, seed=1, device_augment=True)
    cpu = next(BatchStream(ds, 4, seed=1))
    first = next(s)
    assert {k: v.shape for k, v in first.items()} == {k: v.shape for k, v in cpu.items()}
    assert torch.equal(first["index"], cpu["index"])  # same order, augmented elsewhere
    state = s.state_dict()
    want = next(s)
    again = BatchStream(ds, 4, seed=1, device_augment=True)
    again.load_state_dict(state)
    assert _same(next(again), want)


# ---- batched (device) augmentation ---------------------------------------------------------


def test_warp_batch_shapes_determinism_and_identity():
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cfg = AugmentConfig()
    a = warp_batch(images, torch.Generator().manual_seed(1), cfg)
    b = warp_batch(images, torch.Generator().manual_seed(1), cfg)
    c = warp_batch(images, torch.Generator().manual_seed(2), cfg)
    assert a.shape == images.shape and a.dtype == images.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a - images).abs().mean() > 0.01
    for off in (
        dataclasses.replace(cfg, warp_scale=0.0),
        dataclasses.replace(cfg, random_warp=False),
    ):
        assert torch.equal(warp_batch(images, torch.Generator().manual_seed(1), off), images)


def test_augment_batch_identity_when_off_and_target_clean_under_warp():
    g = torch.Generator().manual_seed(0)
    images, masks = torch.rand(3, 3, 32, 32, generator=g), torch.rand(3, 3, 32, 32, generator=g)
    out = augment_batch(images, masks, g, OFF)
    assert torch.equal(out["input"], images) and torch.equal(out["target"], images)
    assert torch.equal(out["mask"], masks[:, :1]) and out["eyes"].shape == (3, 1, 32, 32)
    warp = augment_batch(
        images, masks, g, dataclasses.replace(OFF, random_warp=True, warp_scale=0.03)
    )
    assert torch.equal(warp["target"], images) and not torch.equal(warp["input"], images)
    full = augment_batch(images, masks, torch.Generator().manual_seed(5), AugmentConfig())
    again = augment_batch(images, masks, torch.Generator().manual_seed(5), AugmentConfig())
    assert all(torch.equal(full[k], again[k]) for k in full)
    assert all(full[k].min() >= 0 and full[k].max() <= 1 for k in ("input", "target"))


def test_device_affine_matches_opencv():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (5, 5), 2)  # smooth, so both bilinear samplers agree
    u = np.random.default_rng(1).random((4, 19))
    mats = geometry_matrices(u, AugmentConfig(rotation=20, zoom=0.1, shift=0.1), 32)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().expand(4, -1, -1, -1) / 255
    theta = torch.tensor(pixel_to_theta(mats, 32), dtype=torch.float32)
    grid = F.affine_grid(theta, [4, 3, 32, 32], align_corners=False)
    got = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    for k in range(4):
        ref = cv2.warpAffine(img, mats[k], (32, 32), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        np.testing.assert_allclose(got[k].permute(1, 2, 0).numpy(), ref / 255.0, atol=3 / 255)


def test_benchmark_functions_report_a_rate(faces):
    ds = FaceDataset(faces, _all(faces), 32, AugmentConfig(), seed=0)
    assert loader_throughput(ds, 8, seconds=0.1) > 0
    assert gpu_augment_throughput(32, 8, seconds=0.1) > 0


def test_warps_end_at_warp_until():
    from faceswap.data.augment import AugmentConfig

    cfg = AugmentConfig(warp_until=0.75)
    assert cfg.at(0.0) is cfg and cfg.at(0.74) is cfg
    late = cfg.at(0.75)
    assert not late.has_warp and late.rotation == cfg.rotation and late.color == cfg.color
    assert AugmentConfig(warp_until=1.0).at(1.0).has_warp  # 1 = always on
    with pytest.raises(ValueError, match="warp_until"):
        AugmentConfig(warp_until=1.5)


def test_yaw_balanced_stream_draws_rare_poses_as_often(tmp_path):
    from faceswap.data.loader import REPEAT_KEY, BatchStream, balance_weights, repeats

    yaw = np.array([0.0] * 90 + [35.0] * 10)  # a talking head: 90 frontal, 10 turned
    w = balance_weights(yaw)
    assert w[0] == pytest.approx(1 / 90) and w[-1] == pytest.approx(1 / 10)

    class Items:  # the stream only needs the length and item access by key
        def __len__(self):
            return 100

        def __getitem__(self, key):
            return {"key": torch.tensor(key)}

    stream = BatchStream(Items(), 50, seed=0, weights=w)
    keys = [tuple(k) for _ in range(40) for k in next(stream)["key"].tolist()]
    turned = sum(1 for i, _ in keys if i >= 90) / len(keys)
    assert 0.4 < turned < 0.6  # half the draws, against 10% unbalanced
    assert len(set(keys)) == len(keys)  # a repeat gets its own augmentation key
    assert all(e // REPEAT_KEY < 40 for _, e in keys)
    assert repeats(np.array([3, 1, 3, 3, 1])).tolist() == [0, 0, 1, 2, 1]
    # a pure function of the seed and the position: a resumed stream draws the same
    again = BatchStream(Items(), 50, seed=0, weights=w)
    again.load_state_dict({"epoch": 0, "position": 0})
    assert [tuple(k) for k in next(again)["key"].tolist()] == keys[:50]
    with pytest.raises(ValueError, match="weights"):
        BatchStream(Items(), 50, seed=0, weights=w[:10])
