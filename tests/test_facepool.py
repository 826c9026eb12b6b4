"""Pooled face sets per side (a base model over several identities): keys that never collide,
files and stored masks read from the right member, a per-member validation split, repeatable
-A/-B on train and lr-find, the run record, resume, fit and weight import from a pooled base."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from faceswap import faceset as fsmod
from faceswap.data import FaceDataset, leak_report, split_train_val
from faceswap.data.facepool import FacePool, load_sets, paths_of, record_of, single_path
from faceswap.data.stored_masks import load_mask, write_mask
from faceswap.errors import BadInput
from faceswap.extract import alignment as al
from faceswap.synthetic import astronaut
from faceswap.train import checkpoint as ck

from helpers import TINY_TRAIN, cli, face_landmarks

FPS = 8.0  # 2 s blocks of 16 frames; faces every 3rd frame: 5 blocks in 24 faces


def make_set(root: Path, tint: tuple[float, float, float], n: int = 24, size: int = 64) -> Path:
    """A small face set without a detector: the astronaut's face region aligned from template
    landmarks that move a little frame to frame, tinted (another "identity"). Every set made
    here names its source "clip" and its faces alike, so two of them collide unless pooled
    with member keys."""
    fs = fsmod.create(root, size, "face", "png")
    frame_bgr = np.ascontiguousarray(astronaut()[..., ::-1], np.float32)
    frame_bgr = np.clip(frame_bgr * np.float32(tint), 0, 255).astype(np.uint8)
    frames = 3 * n
    fs.sources["clip"] = fsmod.Source(path="clip.mp4", sha256=hashlib.sha256(repr(tint).encode()).hexdigest(), kind="video", width=512,
                                      height=512, fps=FPS, frames=frames,
                                      processed=[[0, frames]])  # fmt: skip
    for k in range(n):
        frame = 3 * k
        lm = face_landmarks(scale=150.0 + k, angle=(k % 5) - 2.0,
                            shift=(220.0 + k % 3, 125.0 - k % 4))  # fmt: skip
        m = al.crop_matrix(lm, size, "face")
        crop = cv2.warpAffine(frame_bgr, m, (size, size), flags=cv2.INTER_AREA)
        file = f"faces/clip_cccccccc_f{frame:06d}_0.png"
        cv2.imwrite(str(root / file), crop)
        fs.faces.append(fsmod.Face(file=file, source="clip", frame=frame, time=frame / FPS,
                                   box=[150.0, 50.0, 290.0, 200.0], score=1.0, landmarks=lm,
                                   matrix=m, yaw=0.0, pitch=0.0, roll=0.0, blur=100.0,
                                   residual=0.02, jitter=0.0))  # fmt: skip
    fs.save()
    return root


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    """Five small 64 px face sets of five tints (p, q for side A; r, s for B; t a new one)."""
    root = tmp_path_factory.mktemp("pool")
    tints = {"p": (1, 1, 1), "q": (0.6, 0.9, 1.3), "r": (1.3, 0.8, 0.7), "s": (0.8, 1.2, 0.8),
             "t": (1.1, 1.1, 0.6)}  # fmt: skip
    return {k: make_set(root / k, v) for k, v in tints.items()}


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY_TRAIN, "steps": 2, "val_every": 2, "save_every": 2,
                                    "preview_every": 2}))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, sets, config) -> Path:
    """A 2-step base trained on p+q (A, repeated -A) and r+s (B, comma list)."""
    run = tmp_path_factory.mktemp("runs") / "base"
    code = _main("train", "-A", sets["p"], "-A", sets["q"], "-B", f"{sets['r']},{sets['s']}",
                 "-o", run, "--config", config, "--no-tensorboard", "--json")  # fmt: skip
    assert code == 0
    return run


def _main(*argv) -> int:
    from faceswap.cli import main

    return main([str(a) for a in argv])


def _files(folder: Path) -> dict[str, bytes]:
    return (
        {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        if folder.exists()
        else {}
    )


# ---- the pool --------------------------------------------------------------------------------
def test_pool_keys_never_collide_and_files_come_from_their_member(sets):
    p, q = fsmod.load(sets["p"]), fsmod.load(sets["q"])
    assert p.faces[0].file == q.faces[0].file and set(p.sources) == set(q.sources)  # colliding
    pool = FacePool([p, q])
    assert len(pool.faces) == len(p.faces) + len(q.faces)
    assert set(pool.sources) == {"0:clip", "1:clip"}
    assert len({(f.source, f.file) for f in pool.faces}) == len(pool.faces)
    assert pool.offsets == [0, len(p.faces)]
    first_q = pool.faces[len(p.faces)]
    assert pool.root_of(pool.faces[0]) == p.root and pool.root_of(first_q) == q.root
    # the same file name, two members: each pooled face decodes its own member's image
    assert np.array_equal(pool.load_image(first_q), q.load_image(q.faces[0]))
    assert not np.array_equal(pool.load_image(first_q), p.load_image(p.faces[0]))
    assert p.faces[0].source == "clip"  # members are left as they were
    fp = pool.fingerprint()
    assert fp == FacePool([fsmod.load(sets["p"]), fsmod.load(sets["q"])]).fingerprint()
    assert fp not in (p.fingerprint(), q.fingerprint(), FacePool([q, p]).fingerprint())
    with pytest.raises(TypeError):
        pool.save()
    assert load_sets([sets["p"]]).fingerprint() == p.fingerprint()  # one set: not a pool


def test_stored_masks_are_read_from_the_right_member(sets, tmp_path):
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(sets["p"], a)
    shutil.copytree(sets["q"], b)
    fb = fsmod.load(b)
    write_mask(b, fb.faces[0], np.zeros((64, 64), np.uint8))  # only member 1 has a mask
    pool = load_sets([a, b])
    n = len(fb.faces)
    assert load_mask(pool, pool.faces[0]) is None  # member 0's face of the same name
    assert load_mask(pool, pool.faces[n]) is not None
    ds = FaceDataset(pool, [0, n], 64, None, 0)
    assert ds.stored_masks == 1
    assert ds.masks[1].max() == 0 and ds.masks[0].max() == 255  # stored mask vs landmark hull


def test_split_is_per_member_deterministic_and_leak_free(sets, caplog):
    members = [fsmod.load(sets[k]) for k in "pq"]
    pool = FacePool(members)
    train, val = split_train_val(pool, 0.1, seed=3)
    assert (train, val) == split_train_val(FacePool([fsmod.load(sets[k]) for k in "pq"]), 0.1, 3)
    want_t, want_v = [], []
    for m, off in zip(members, pool.offsets, strict=True):
        t, v = split_train_val(m, 0.1, seed=3)  # each member as if trained alone
        want_t += [off + i for i in t]
        want_v += [off + i for i in v]
    assert (train, val) == (want_t, want_v)
    n0 = len(members[0].faces)
    assert any(i < n0 for i in val) and any(i >= n0 for i in val)  # both identities validate
    assert leak_report(pool, train, val) == 0
    # a member too small to hold out validation trains on all its faces...
    tiny = fsmod.load(sets["r"])
    tiny.faces = tiny.faces[:4]  # one block of frames
    with caplog.at_level(logging.WARNING):
        t2, v2 = split_train_val(FacePool([members[0], tiny]), 0.1, seed=3)
    assert set(range(n0, n0 + 4)) <= set(t2) and v2 and max(v2) < n0
    assert "too small to hold out validation" in caplog.text
    # ...unless no member can
    other = fsmod.load(sets["s"])
    other.faces = other.faces[:4]
    with pytest.raises(BadInput, match="no member is large enough"):
        split_train_val(FacePool([tiny, other]), 0.1, seed=3)


def test_pool_refuses_mismatched_empty_or_repeated_members(sets, tmp_path):
    big = make_set(tmp_path / "big", (1, 1, 1), n=2, size=80)
    empty = fsmod.create(tmp_path / "empty", 64, "face", "png")
    p = fsmod.load(sets["p"])
    with pytest.raises(BadInput, match=r"big: faces are 80px face"):
        FacePool([p, fsmod.load(big)])
    with pytest.raises(BadInput, match="has no faces"):
        FacePool([p, empty])
    with pytest.raises(BadInput, match="given twice"):
        FacePool([p, fsmod.load(sets["p"])])


def test_record_paths_of_single_and_pooled_sides(sets):
    p = fsmod.load(sets["p"])
    one = record_of(p)
    assert set(one) == {"path", "fingerprint", "faces", "size", "centering"}  # as before pools
    assert paths_of(one) == [one["path"]] and single_path(one) == one["path"]
    pooled = record_of(load_sets([sets["p"], sets["q"]]))
    assert "path" not in pooled and len(pooled["members"]) == 2
    assert pooled["paths"] == [str(sets[k].resolve()) for k in "pq"]
    assert pooled["faces"] == sum(m["faces"] for m in pooled["members"])
    assert paths_of(pooled) == pooled["paths"] and single_path(pooled) is None
    assert paths_of(None) == [] and single_path({}) is None


# ---- the command line ------------------------------------------------------------------------
def test_pooled_train_records_the_members_and_resume_warns_on_other_sets(
    capsys, sets, config, base_run, tmp_path
):
    import shutil

    state = ck.read_state(ck.latest_checkpoint(base_run))
    assert state["step"] == 2
    a, b = state["facesets"]["a"], state["facesets"]["b"]
    assert a["paths"] == [str(sets["p"].resolve()), str(sets["q"].resolve())]
    assert b["paths"] == [str(sets["r"].resolve()), str(sets["s"].resolve())]
    assert "path" not in a and a["faces"] == 48 and a["size"] == 64
    capsys.readouterr()
    # resumed on other sets for A: one warning line naming side A; B unchanged: no warning
    run = shutil.copytree(base_run, tmp_path / "base")
    code, out, err = cli(capsys, "train", "-A", sets["p"], "-B", sets["r"], "-B", sets["s"],
                         "-o", run, "--resume", "--steps", "3", "--no-tensorboard",
                         "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["step"] == 3
    warned = [ln for ln in err.splitlines() if "this resume gives" in ln]
    assert len(warned) == 1 and "face set A" in warned[0], err


def test_one_set_a_side_keeps_the_plain_record(capsys, sets, config, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "-A", sets["p"], "-B", sets["r"], "-o", run, "--config",
                       config, "--no-tensorboard", "--json")  # fmt: skip
    assert code == 0, err
    rec = ck.read_state(ck.latest_checkpoint(run))["facesets"]
    assert rec["a"] == record_of(fsmod.load(sets["p"]))
    assert set(rec["a"]) == {"path", "fingerprint", "faces", "size", "centering"}


@pytest.mark.parametrize("case, words", [
    ("missing", "does not exist"),
    ("missing-in-list", "does not exist"),
    ("empty-item", "empty face-set path"),
    ("mismatched", "faces are 80px"),
    ("twice", "given twice"),
])  # fmt: skip
def test_a_bad_member_is_one_line_exit_2_and_nothing_written(capsys, sets, config, tmp_path,
                                                             case, words):  # fmt: skip
    gone = str(tmp_path / "gone")
    side_a = {
        "missing": ["-A", sets["p"], "-A", gone],
        "missing-in-list": ["-A", f"{sets['p']},{gone}"],
        "empty-item": ["-A", f"{sets['p']},,{sets['q']}"],
        "mismatched": ["-A", sets["p"], "-A", make_set(tmp_path / "big", (1, 1, 1), 2, 80)],
        "twice": ["-A", sets["p"], "-A", f"{sets['p']}/"],
    }[case]
    for cmd in ("train", "lr-find"):
        out_dir = tmp_path / f"out-{cmd}"
        code, _, err = cli(capsys, cmd, *side_a, "-B", sets["r"], "-o", out_dir, "--config",
                           config)  # fmt: skip
        assert code == 2, err
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and words in lines[0] and "-A" in lines[0], err
        if case.startswith("missing"):
            assert gone in lines[0]
        assert not out_dir.exists()


def test_lr_find_on_pooled_sides(capsys, sets, config, tmp_path):
    out = tmp_path / "lr"
    code, stdout, err = cli(capsys, "lr-find", "-A", sets["p"], "-A", sets["q"], "-B",
                            f"{sets['r']},{sets['s']}", "-o", out, "--config", config,
                            "--steps", "10", "--json")  # fmt: skip
    assert code == 0, err
    assert len(json.loads(stdout)["losses"]) == 10 and (out / "lr_find.png").is_file()


def test_fit_and_init_from_a_pooled_base(capsys, sets, base_run, config, tmp_path):
    # fit: B becomes t; the kept side A is the recorded pool, reloaded member by member
    fit_run = tmp_path / "fit"
    code, out, err = cli(capsys, "fit", "--from", base_run, "-B", sets["t"], "-o", fit_run,
                         "--steps", "2", "--no-tensorboard", "--json")  # fmt: skip
    assert code == 0, err
    state = ck.read_state(ck.latest_checkpoint(fit_run))
    assert state["facesets"]["a"]["paths"] == [str(sets["p"].resolve()), str(sets["q"].resolve())]
    assert state["facesets"]["b"]["path"] == str(sets["t"].resolve())
    lin = state["lineage"]
    assert lin["kept_faceset"]["paths"] == state["facesets"]["a"]["paths"]
    assert lin["replaced_faceset"]["paths"] == [str(sets[k].resolve()) for k in "rs"]
    # and a fit run of a pooled side resumes from its record
    code, out, err = cli(capsys, "fit", "--resume", "-o", fit_run, "--steps", "3",
                         "--no-tensorboard", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["step"] == 3
    # weight import: a new pair starts from the base's weights
    new = tmp_path / "new"
    code, out, err = cli(capsys, "train", "-A", sets["p"], "-B", sets["t"], "-o", new,
                         "--config", config, "--init-from", base_run, "--no-tensorboard",
                         "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["import"]["loaded"] and not data["import"]["mismatched"]
    assert ck.read_state(ck.latest_checkpoint(new))["lineage"]["source_run"] == str(
        base_run.resolve()
    )


def test_a_pooled_member_that_is_gone_stops_a_fit_in_one_line(capsys, sets, base_run,
                                                              tmp_path):  # fmt: skip
    import shutil

    from faceswap.train.fit import FitConfig, plan_fit

    moved = tmp_path / "base"
    shutil.copytree(base_run, moved)
    for p in moved.rglob("state.json"):
        st = json.loads(p.read_text())
        st["facesets"]["a"]["paths"][1] = str(tmp_path / "gone")
        p.write_text(json.dumps(st))
    with pytest.raises(BadInput, match=r"gone: the run's face set A is gone; give its new place"):
        plan_fit(moved, "b", sets["t"], FitConfig(steps=2))


def test_convert_and_export_readers_of_a_pooled_record(sets, tmp_path):
    from types import SimpleNamespace

    from faceswap.convert.select import faceset_references
    from faceswap.export.onnx import _check_crops

    pooled = record_of(load_sets([sets["p"], sets["q"]]))
    with pytest.raises(BadInput, match="records no single training face set of A"):
        faceset_references(single_path(pooled), "a")
    swap = SimpleNamespace(source_faceset=None, direction="a2b", resolution=32, crop_size=64,
                           centering="face", state={"facesets": {"a": pooled}})  # fmt: skip
    crops, where = _check_crops(swap, None, 3)  # a member's faces, not the astronaut
    assert where == pooled["paths"][0] and crops.shape == (3, 32, 32, 3)
