"""The face-set index: round trip, atomic saves and rejection of tampered files."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceswap import faceset as fsmod


def _face(name: str, source: str = "clip_00000000") -> fsmod.Face:
    return fsmod.Face(
        file=f"faces/{name}.png", source=source, frame=3, time=0.12, box=[1.0, 2.0, 50.0, 60.0],
        score=1.5, landmarks=[[float(i), float(i) / 2] for i in range(68)],
        matrix=[[1.0, 0.0, -1.0], [0.0, 1.0, -2.0]], yaw=1.0, pitch=-2.0, roll=3.0, blur=99.0,
        residual=0.02, jitter=0.01, embedding=[0.25] * 128, embedding_frame=0, track=0,
    )  # fmt: skip


@pytest.fixture
def saved(tmp_path):
    fs = fsmod.create(tmp_path / "set", 64, "face", "png")
    fs.sources["clip_00000000"] = fsmod.Source("clip.mp4", "0" * 64, "video", 640, 360, 25.0, 10)
    fs.faces = [_face("a"), _face("b")]
    fs.sources["clip_00000000"].mark_processed([0, 1, 2, 5])
    fs.save()
    return fs


def test_round_trip(saved):
    back = fsmod.load(saved.root)
    assert back.faces == saved.faces
    assert back.sources["clip_00000000"].processed == [[0, 3], [5, 6]]
    assert back.sources["clip_00000000"].is_processed(2)
    assert not back.sources["clip_00000000"].is_processed(3)
    assert len(back.fingerprint()) == 16


def test_save_is_atomic_when_the_write_fails(saved, monkeypatch):
    before = saved.index_path.read_bytes()

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsmod.os, "replace", fail)
    saved.faces.append(_face("c"))
    with pytest.raises(OSError):
        saved.save()
    assert saved.index_path.read_bytes() == before
    assert [p.name for p in saved.root.iterdir() if p.name.endswith(".tmp")] == []


def _tamper(fs, edit) -> None:
    data = json.loads(fs.index_path.read_text())
    edit(data)
    fs.index_path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda d: d["faces"][0].update(file="../../etc/passwd"), "unsafe file path"),
        (lambda d: d["faces"][0].update(file="/etc/passwd"), "unsafe file path"),
        (lambda d: d["faces"][0].update(file="faces/../../x.png"), "unsafe file path"),
        (lambda d: d["faces"][0].update(landmarks=[[0, 0]] * 68), "unknown field 'landmarks'"),
        (lambda d: d["faces"][0].update(row=2), "bad arrays row 2"),
        (lambda d: d["faces"][0].update(row=-1), "bad arrays row"),
        (lambda d: d["faces"][0].update(row="0"), "bad arrays row"),
        (lambda d: d["faces"][0].pop("row"), "lacks 'row'"),
        (lambda d: d["arrays"].update(file="../../etc/passwd"), "arrays must name"),
        (lambda d: d["arrays"].update(rows=10**9), "arrays must name"),
        (lambda d: d["arrays"].update(rows=5), "shorter"),
        (lambda d: d["arrays"].update(file="faceset.7.arrays"), "missing"),
        (lambda d: d["faces"][0].update(yaw="1"), "yaw"),
        (lambda d: d["faces"][0].update(evil=1), "unknown field"),
        (lambda d: d["faces"][0].update(source="nowhere"), "unknown source"),
        (lambda d: d["faces"][1].update(file=d["faces"][0]["file"]), "listed twice"),
        (lambda d: d.update(size=10**9), "size"),
        (lambda d: d.update(version=3), "version 3"),
        (lambda d: d.update(format="pickle"), "not a faceswap"),
        (lambda d: d["sources"]["clip_00000000"].update(width=10**7), "width"),
    ],
)
def test_tampered_index_is_rejected_with_a_clear_error(saved, edit, words):
    _tamper(saved, edit)
    with pytest.raises(fsmod.FaceSetError, match=words.replace("(", r"\(")) as exc:
        fsmod.load(saved.root)
    assert str(saved.root) in str(exc.value) and "\n" not in str(exc.value)


def _arrays_file(fs) -> Path:
    return fs.root / json.loads(fs.index_path.read_text())["arrays"]["file"]


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda b: b"PICKLE\x00\x00" + b[8:], "not a face-set arrays file"),
        (lambda b: b[:100], "shorter"),
        # a NaN landmark in the first record: its face is refused, not loaded with a NaN
        (lambda b: b[:64] + np.float32("nan").tobytes() + b[68:], "non-finite"),
        # has_embedding must be 0 or 1
        (lambda b: b[: 64 + 1136] + b"\x07" + b[64 + 1137 :], "non-finite"),
    ],
)
def test_tampered_arrays_file_is_rejected_with_a_clear_error(saved, edit, words):
    path = _arrays_file(saved)
    path.write_bytes(edit(path.read_bytes()))
    with pytest.raises(fsmod.FaceSetError, match=words):
        fsmod.load(saved.root)


V1_SET = Path(__file__).parent / "data" / "faceset_v1"


def test_v1_set_loads_and_is_upgraded_to_v2_by_its_first_write(tmp_path):
    root = tmp_path / "v1"
    shutil.copytree(V1_SET, root)
    assert json.loads((root / fsmod.INDEX).read_text())["version"] == 1
    v1 = fsmod.load(root)
    assert len(v1.faces) == 3 and all(f.embedding is not None for f in v1.faces)
    assert v1.load_image(v1.faces[0]).shape == (64, 64, 3)
    v1.faces[1].blur = 12.5  # a curation-like change, then the first write
    v1.save()
    data = json.loads((root / fsmod.INDEX).read_text())
    assert data["version"] == 2 and "landmarks" not in data["faces"][0]
    v2 = fsmod.load(root)
    assert [f.file for f in v2.faces] == [f.file for f in v1.faces]
    assert v2.faces[1].blur == 12.5
    for a, b in zip(v1.faces, v2.faces, strict=True):
        # v1 kept 1/1000 px in JSON; v2 keeps float32 landmarks and embeddings
        assert np.abs(np.asarray(a.landmarks) - b.landmarks).max() < 1e-3
        assert np.array_equal(np.asarray(a.matrix), b.matrix)
        assert np.abs(np.asarray(a.embedding) - b.embedding).max() < 1e-6
        assert a.track == b.track and a.frame == b.frame and a.source == b.source


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda d: d["faces"][0].update(landmarks=[[0, 0]] * 5), "landmarks"),
        (lambda d: d["faces"][0].update(matrix="__import__('os')"), "matrix"),
        (lambda d: d["faces"][0].update(embedding=[0.0] * 3), "embedding"),
        (lambda d: d["faces"][0].update(row=0), "unknown field 'row'"),
    ],
)
def test_tampered_v1_index_is_rejected_with_a_clear_error(tmp_path, edit, words):
    root = tmp_path / "v1"
    shutil.copytree(V1_SET, root)
    data = json.loads((root / fsmod.INDEX).read_text())
    edit(data)
    (root / fsmod.INDEX).write_text(json.dumps(data))
    with pytest.raises(fsmod.FaceSetError, match=words):
        fsmod.load(root)


def test_saves_write_only_what_changed(saved):
    path = _arrays_file(saved)
    size = path.stat().st_size
    assert size == fsmod.ARRAYS_HEADER + 2 * fsmod.RECORD.itemsize
    fs = fsmod.load(saved.root)
    fs.faces[0].blur = 1.0  # a scalar: the index only
    fs.save()
    assert path.stat().st_size == size
    fs.faces.append(_face("c"))  # a new face: one record appended
    fs.faces[1].landmarks = np.zeros((68, 2))  # new arrays: appended too, old row is garbage
    fs.save()
    assert path.stat().st_size == size + 2 * fsmod.RECORD.itemsize
    back = fsmod.load(saved.root)
    assert back.faces == fs.faces and not back.faces[1].landmarks.any()
    assert not back.faces[0].landmarks.flags.writeable  # edits must replace, not mutate


def test_mostly_garbage_arrays_are_compacted_into_a_new_generation(saved, monkeypatch):
    monkeypatch.setattr(fsmod, "_compact_at", lambda live: live)
    fs = fsmod.load(saved.root)
    for _ in range(2):  # the 1st save appends (1 garbage row), the 2nd compacts (2 > 1 live)
        fs.faces[0].landmarks = np.ones((68, 2))
        fs.save()
    old = _arrays_file(saved)
    assert old.name == "faceset.1.arrays"
    assert not (saved.root / "faceset.0.arrays").exists()
    assert old.stat().st_size == fsmod.ARRAYS_HEADER + 2 * fsmod.RECORD.itemsize
    assert fsmod.load(saved.root).faces == fs.faces


def test_load_of_a_large_set_is_fast(tmp_path):
    import time

    fs = fsmod.create(tmp_path / "big", 64, "face", "png")
    fs.sources["clip_00000000"] = fsmod.Source("clip.mp4", "0" * 64, "video", 640, 360, 25.0, 10)
    base = _face("x")
    fs.faces = [dataclasses.replace(base, file=f"faces/{i}.png", frame=i) for i in range(20000)]
    fs.save()
    t0 = time.process_time()
    back = fsmod.load(fs.root)
    cpu = time.process_time() - t0
    assert len(back.faces) == 20000
    # v1 took 5.5 s for 20,000 faces (mostly parsing JSON floats); docs/faceset.md has 50,000.
    # Today's 0.3 s on a quiet machine took 1.02 s in a CI run on a loaded one (a shared core
    # halves a CPU-second's work), so the bound leaves that room and still catches v1 2.7x over
    assert cpu < 2.0, f"{cpu:.2f} s of CPU to load 20,000 faces"


def test_not_json_and_missing(tmp_path, saved):
    saved.index_path.write_bytes(b"\x80\x04\x95 pickle payload")
    with pytest.raises(fsmod.FaceSetError, match="not valid JSON"):
        fsmod.load(saved.root)
    with pytest.raises(fsmod.FaceSetError, match="does not exist"):
        fsmod.load(tmp_path / "nothing")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=20,
)


def _loads_or_fails_cleanly(fs, data) -> None:
    fs.index_path.write_text(json.dumps(data))
    with contextlib.suppress(fsmod.FaceSetError):
        fsmod.load(fs.root)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st.sampled_from(["faces", "sources", "size", "centering", "rejected", "extract"]),
       value=json_values, face_key=st.sampled_from(list(fsmod._FACE_FIELDS)))  # fmt: skip
def test_fuzzed_index_loads_or_fails_cleanly(saved, key, value, face_key):
    base = saved.to_json()
    top = json.loads(json.dumps(base))
    top[key] = value
    _loads_or_fails_cleanly(saved, top)
    one_face = json.loads(json.dumps(base))
    one_face["faces"][0][face_key] = value
    _loads_or_fails_cleanly(saved, one_face)


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    # mkstemp alone would leave 0600: face sets and outputs unreadable to other users
    fsmod.atomic_write_bytes(tmp_path / "x.bin", b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o666 & ~mask
