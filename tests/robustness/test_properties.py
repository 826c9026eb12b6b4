"""Property-based tests (hypothesis) of the loaders that read files, and of the alignment math.

Guarantees (docs/reliability.md):
- face-set index: a valid index survives save -> load -> save unchanged; any mutation of one
  value anywhere in it, and any bytes at all, either load into a well-formed set (every path
  inside the set, every field of its type) or raise FaceSetError, nothing else;
- configs (every config dataclass, nested sections included): any mapping either builds the
  config or raises BadInput, and a config that builds survives to_dict -> YAML -> load;
- alignment: umeyama recovers any similarity, invert/compose/transform_points round-trip.
Example counts are modest so the file runs in a few seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import typing

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from faceswap import faceset as fsmod
from faceswap.config import ExtractConfig, from_dict, load_yaml, to_dict
from faceswap.errors import BadInput
from faceswap.extract import alignment as al
from faceswap.train.config import TrainConfig

# derandomize: the same examples on every run (CI never flakes on a lucky draw); the strategies
# put edge values first, which is where hypothesis starts
FAST = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

# ---- face-set index ------------------------------------------------------------------------

finite = st.floats(-1e4, 1e4, allow_nan=False)
names = st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True)


@st.composite
def faces(draw, source: str, folder: str, name: str) -> fsmod.Face:
    emb = draw(st.none() | st.lists(finite, min_size=128, max_size=128))
    return fsmod.Face(
        file=f"{folder}/{name}.png", source=source, frame=draw(st.integers(0, 10**6)),
        time=draw(st.none() | st.floats(0, 1e5)), box=draw(st.lists(finite, min_size=4, max_size=4)),
        score=draw(finite), landmarks=draw(st.lists(st.lists(finite, min_size=2, max_size=2),
                                                    min_size=68, max_size=68)),
        matrix=draw(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=2, max_size=2)),
        yaw=draw(finite), pitch=draw(finite), roll=draw(finite), blur=draw(st.floats(0, 1e4)),
        residual=draw(st.floats(0, 1)), jitter=draw(st.floats(0, 10)), embedding=emb,
        embedding_frame=draw(st.none() | st.integers(0, 10**6)), track=draw(st.integers(0, 99)),
        reason="test" if folder == "rejected" else None,
    )  # fmt: skip


@st.composite
def face_sets(draw, root):
    fs = fsmod.FaceSet(root=root, size=draw(st.sampled_from([64, 128, 256])),
                       centering=draw(st.sampled_from(["face", "head", "legacy"])))  # fmt: skip
    key = draw(names)
    fs.sources[key] = fsmod.Source(
        path=draw(st.text(max_size=20)), sha256="ab" * 32, kind="video",
        width=draw(st.integers(1, 65536)), height=draw(st.integers(1, 65536)),
        fps=draw(st.none() | st.floats(1, 240)), frames=draw(st.none() | st.integers(0, 10**6)),
    )  # fmt: skip
    fs.sources[key].mark_processed(draw(st.lists(st.integers(0, 500), max_size=20)))
    file_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    for i, n in enumerate(file_names):
        folder = "rejected" if i % 3 == 2 else "faces"
        (fs.rejected if folder == "rejected" else fs.faces).append(draw(faces(key, folder, n)))
    return fs


@pytest.fixture
def root(tmp_path):
    return tmp_path


@settings(FAST, max_examples=20)
@given(data=st.data())
def test_index_survives_save_load_save(root, data):
    fs = data.draw(face_sets(root))
    fs.save()
    text = fs.index_path.read_text()
    back = fsmod.load(root)
    assert back.dumps() == json.dumps(json.loads(text), separators=(",", ":"))
    assert [f.file for f in back.faces] == [f.file for f in fs.faces]


def _paths(node, prefix=()):
    """Every (path, value) in a JSON tree."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["../../x.png", "faces/../../x.png", "/etc/passwd", "faces/", "faces/.",
                       "rejected/a.png", "faces/a\\b.png", 1e308, -1, 0, True, 10**9]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=12,
)  # fmt: skip


# values at the edges of what each field allows, drawn as often as everything else
edge_values = st.sampled_from([True, False, -1, 0, 1, 2**63, 1.5, float("1e308"), "", "x",
                               None, [], {}, [[5, 2]], [[True, 1]], [[-3, 2]], [0, 1],
                               "../../x.png", "faces/../x.png", "evil"])  # fmt: skip


def _well_formed(fs: fsmod.FaceSet) -> None:
    """What code after the loader relies on."""
    assert isinstance(fs.size, int) and not isinstance(fs.size, bool) and 16 <= fs.size <= 4096
    for s in fs.sources.values():
        assert s.kind in ("video", "image")
        assert s.frames is None or type(s.frames) is int and s.frames >= 0
        for v in (s.width, s.height):
            assert isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 65536
        for span in s.processed:
            a, b = span
            assert type(a) is int and type(b) is int and 0 <= a < b, span
    for f in fs.faces + fs.rejected:
        assert fsmod.safe_relpath(f.file, ("faces", "rejected"))
        assert (fs.root / f.file).resolve().is_relative_to(fs.root.resolve())
        assert f.source in fs.sources
        assert type(f.frame) is int and f.frame >= 0
        assert np.asarray(f.landmarks, np.float64).shape == (68, 2)
        assert np.asarray(f.matrix, np.float64).shape == (2, 3)
        for v in (f.score, f.yaw, f.pitch, f.roll, f.blur, f.residual, f.jitter):
            assert type(v) in (int, float) and math.isfinite(v)
        assert f.track is None or type(f.track) is int


def _sample_index(root) -> dict:
    """A small valid index with every optional part present: a source with processed spans,
    a face with an embedding, a rejected face with a reason. Saved in `root` (a temp folder
    when None), so the arrays file its index names is there."""
    if root is None:
        import tempfile
        from pathlib import Path

        root = Path(tempfile.mkdtemp(prefix="sample_index_"))
    fs = fsmod.FaceSet(root=root, size=64, centering="face")
    fs.sources["clip_0123abcd"] = fsmod.Source("clip.mp4", "ab" * 32, "video", 640, 360, 25.0,
                                                100, [[0, 10], [20, 21]])  # fmt: skip
    face = dict(source="clip_0123abcd", frame=3, time=0.12, box=[1.0, 2.0, 50.0, 60.0],
                score=1.5, landmarks=[[float(i), i / 2] for i in range(68)],
                matrix=[[1.0, 0.0, -1.0], [0.0, 1.0, -2.0]], yaw=1.0, pitch=-2.0, roll=3.0,
                blur=99.0, residual=0.02, jitter=0.01, embedding=[0.01] * 128,
                embedding_frame=0, track=0)  # fmt: skip
    fs.faces.append(fsmod.Face(file="faces/a.png", **face))
    fs.rejected.append(fsmod.Face(file="rejected/b.png", reason="blurry", **face))
    fs.save()
    return json.loads(fs.index_path.read_text())


def _kinds(tree) -> dict[tuple, list[tuple]]:
    """Places in the index by kind: list positions folded to '#', so that one kind is e.g.
    every landmark number, another a source's `processed` spans."""
    kinds: dict[tuple, list[tuple]] = {}
    for p, _ in _paths(tree):
        if p:
            kinds.setdefault(tuple("#" if isinstance(k, int) else k for k in p), []).append(p)
    return kinds


INDEX_PLACES = sorted(_kinds(_sample_index(None)), key=str)


@pytest.mark.parametrize("kind", INDEX_PLACES, ids=lambda k: ".".join(map(str, k)))
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_any_value_anywhere_in_an_index_loads_well_formed_or_fails_cleanly(root, kind, data):
    tree = _sample_index(root)
    where = data.draw(st.sampled_from(_kinds(tree)[kind]))
    node = tree
    for k in where[:-1]:
        node = node[k]
    if isinstance(node, dict) and data.draw(st.integers(0, 5)) == 0:
        del node[where[-1]]
    else:
        node[where[-1]] = data.draw(edge_values | json_values)
    fs_path = root / fsmod.INDEX
    fs_path.write_text(json.dumps(tree))
    try:
        loaded = fsmod.load(root)
    except fsmod.FaceSetError as exc:
        assert str(root) in str(exc) and "\n" not in str(exc)
        return
    _well_formed(loaded)


@FAST
@given(blob=st.binary(max_size=300))
def test_any_bytes_as_an_index_load_or_fail_cleanly(root, blob):
    (root / fsmod.INDEX).write_bytes(blob)
    with contextlib.suppress(fsmod.FaceSetError):
        _well_formed(fsmod.load(root))


# ---- configs ----------------------------------------------------------------------------------


def _config_classes() -> list[type]:
    """Every config dataclass: the stage configs and their sections."""
    roots: list[type] = [ExtractConfig, TrainConfig]
    try:
        from faceswap.convert.config import ConvertConfig

        roots.append(ConvertConfig)
    except ImportError:
        pass
    found: list[type] = []
    todo = list(roots)
    while todo:
        cls = todo.pop()
        if cls in found:
            continue
        found.append(cls)
        for tp in typing.get_type_hints(cls).values():
            if dataclasses.is_dataclass(tp):
                todo.append(tp)
    return sorted(found, key=lambda c: c.__name__)


CONFIGS = _config_classes()

any_yaml = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats()
    | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=8,
)  # fmt: skip


def _value_for(tp, draw, depth: int = 0):
    """A value aimed at type tp (often valid, often at the edges), or anything at all."""
    if draw(st.integers(0, 4)) == 4:  # the simplest draw (0) is a typed edge value
        return draw(any_yaml)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _mapping_for(tp, draw, depth + 1) if depth < 2 else {}
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return _value_for(draw(st.sampled_from(typing.get_args(tp))), draw, depth)
    if tp is type(None):
        return None
    if tp is bool:
        return draw(st.booleans())
    if tp is int:
        return draw(st.sampled_from([0, -1, 1, 64, 2**63, True]) | st.integers(-5, 5)
                    | st.integers(-(2**40), 2**40))  # fmt: skip
    if tp is float:
        return draw(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1.0, -1.0, 0.5, 1e308])
                    | st.floats(-10, 10) | st.floats())  # fmt: skip
    if tp is str:
        return draw(
            st.text(max_size=8)
            | st.sampled_from(
                ["auto", "cpu", "face", "png", "sae", "cosine", "a2b", "rct", "mae", "dlib"]
            )
        )
    if origin is dict:
        kt, vt = typing.get_args(tp)
        keys = st.sampled_from(["mae", "mse", "ssim", "ms_ssim", "encoder", "decoder_a", "x"])
        return draw(st.dictionaries(keys, st.integers(-2, 1000) | st.floats(-1, 10), max_size=3))
    if origin in (list, tuple):
        return draw(st.lists(st.integers(0, 100) | st.floats(0, 1), max_size=4))
    return draw(any_yaml)


def _mapping_for(cls, draw, depth: int = 0) -> dict:
    hints = typing.get_type_hints(cls)
    names = draw(st.lists(st.sampled_from(sorted(hints)), max_size=4, unique=True))
    out = {n: _value_for(hints[n], draw, depth) for n in names}
    if draw(st.integers(0, 9)) == 0:
        out[draw(st.text(min_size=1, max_size=8))] = draw(any_yaml)
    return out


CONFIG_FIELDS = [(cls, name) for cls in CONFIGS for name in sorted(typing.get_type_hints(cls))]


@pytest.mark.parametrize("cls, name", CONFIG_FIELDS, ids=lambda x: getattr(x, "__name__", x))
@settings(max_examples=5, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_value_of_any_config_field_builds_or_is_bad_input(cls, name, data):
    # one field aimed at (the others drawn too, sometimes): each field gets its edge cases
    mapping = _mapping_for(cls, data.draw) if data.draw(st.booleans()) else {}
    mapping[name] = _value_for(typing.get_type_hints(cls)[name], data.draw)
    try:
        cfg = from_dict(cls, mapping, "test.yaml")
    except BadInput as exc:
        assert str(exc).startswith("test.yaml") and "\n" not in str(exc)
        return
    assert isinstance(cfg, cls)
    # what a run folder stores (config.yaml) reads back as the same config
    again = from_dict(cls, yaml.safe_load(yaml.safe_dump(to_dict(cfg))), "again")
    assert to_dict(again) == to_dict(cfg)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_defaults_round_trip(cls):
    assert to_dict(from_dict(cls, to_dict(cls()), "defaults")) == to_dict(cls())


@FAST
@given(text=st.text(max_size=200) | st.sampled_from([
    "!!python/object/apply:os.system ['true']", "a: !!python/name:os.system", "{a: [", "- 1",
    "a: &x [*x]", "\x00", "a: 1\na: 2", "? [a]\n: 1"]))  # fmt: skip
def test_any_yaml_text_loads_a_mapping_or_is_bad_input(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        data = load_yaml(p)
    except BadInput as exc:
        assert str(p) in str(exc)
        return
    assert isinstance(data, dict)
    with contextlib.suppress(BadInput):
        from_dict(ExtractConfig, data, str(p))


# ---- alignment math -----------------------------------------------------------------------------

angles = st.floats(-math.pi, math.pi)
scales = st.floats(0.05, 20.0)
shifts = st.floats(-5000, 5000)


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


@FAST
@given(scale=scales, angle=angles, tx=shifts, ty=shifts, seed=st.integers(0, 2**32 - 1),
       n=st.integers(3, 68))  # fmt: skip
def test_umeyama_recovers_any_similarity(scale, angle, tx, ty, seed, n):
    src = np.random.default_rng(seed).uniform(-300, 300, size=(n, 2))
    assume(np.linalg.matrix_rank(src - src.mean(0)) == 2)  # not all on one line
    true = _similarity(scale, angle, tx, ty)
    got = al.umeyama(src, al.transform_points(true, src))
    np.testing.assert_allclose(got, true, rtol=1e-7, atol=1e-6 * max(1.0, abs(tx), abs(ty)))


@FAST
@given(a=st.tuples(scales, angles, shifts, shifts), b=st.tuples(scales, angles, shifts, shifts),
       pts=st.lists(st.tuples(shifts, shifts), min_size=1, max_size=20))  # fmt: skip
def test_invert_compose_and_transform_round_trip(a, b, pts):
    ma, mb = _similarity(*a), _similarity(*b)
    p = np.asarray(pts, np.float64)
    tol = 1e-6 * (1 + np.abs(p).max()) * max(1.0, a[0], 1 / a[0], b[0], 1 / b[0]) ** 2
    back = al.transform_points(al.invert(ma), al.transform_points(ma, p))
    np.testing.assert_allclose(back, p, atol=tol)
    both = al.transform_points(al.compose(ma, mb), p)
    np.testing.assert_allclose(both, al.transform_points(ma, al.transform_points(mb, p)),
                               atol=tol * (1 + 5000 * a[0]))  # fmt: skip
    np.testing.assert_allclose(al.compose(al.invert(ma), ma), [[1, 0, 0], [0, 1, 0]], atol=1e-8)
    assert al.matrix_scale(ma) == pytest.approx(a[0], rel=1e-9)


@FAST
@given(scale=scales, angle=angles, tx=shifts, ty=shifts, size=st.sampled_from([64, 256, 1024]),
       to=st.sampled_from([64, 128, 512]))  # fmt: skip
def test_rescale_matrix_scales_the_crop_only(scale, angle, tx, ty, size, to):
    m = _similarity(scale, angle, tx, ty)
    p = np.array([[10.0, 20.0], [-30.0, 400.0]])
    np.testing.assert_allclose(al.transform_points(al.rescale_matrix(m, size, to), p),
                               al.transform_points(m, p) * (to / size), rtol=1e-12, atol=1e-9)  # fmt: skip
