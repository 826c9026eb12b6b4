"""The face-set index: round trip, atomic saves and rejection of tampered files."""

from __future__ import annotations

import contextlib
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceswap import faceset as fsmod


def _face(name: str, source: str = "clip_00000000") -> fsmod.Face:
    return fsmod.Face(
        file=f"faces/{name}.png", source=source, frame=3, time=0.12, box=[1.0, 2.0, 50.0, 60.0],
        score=1.5, landmarks=[[float(i), float(i) / 2] for i in range(68)],
        matrix=[[1.0, 0.0, -1.0], [0.0, 1.0, -2.0]], yaw=1.0, pitch=-2.0, roll=3.0, blur=99.0,
        residual=0.02, jitter=0.01, embedding=[0.01] * 128, embedding_frame=0, track=0,
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
        (lambda d: d["faces"][0].update(landmarks=[[0, 0]] * 5), "landmarks"),
        (lambda d: d["faces"][0].update(matrix="__import__('os')"), "matrix"),
        (lambda d: d["faces"][0].update(yaw="1"), "yaw"),
        (lambda d: d["faces"][0].update(embedding=[0.0] * 3), "embedding"),
        (lambda d: d["faces"][0].update(evil=1), "unknown field"),
        (lambda d: d["faces"][0].update(source="nowhere"), "unknown source"),
        (lambda d: d["faces"][1].update(file=d["faces"][0]["file"]), "listed twice"),
        (lambda d: d.update(size=10**9), "size"),
        (lambda d: d.update(version=2), "version 2"),
        (lambda d: d.update(format="pickle"), "not a faceswap"),
        (lambda d: d["sources"]["clip_00000000"].update(width=10**7), "width"),
    ],
)
def test_tampered_index_is_rejected_with_a_clear_error(saved, edit, words):
    _tamper(saved, edit)
    with pytest.raises(fsmod.FaceSetError, match=words.replace("(", r"\(")):
        fsmod.load(saved.root)


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
