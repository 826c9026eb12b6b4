"""Untrusted files: checkpoints, face-set indexes, configs and images made to attack the loader.

Guarantee (docs/reliability.md): loading a checkpoint, a face-set index or a config never runs
code from it (safetensors, JSON and YAML's safe loader only), and a crafted file (a pickle
payload, `../../x` names, huge dimensions, wrong dtypes or shapes, fields of the wrong kind)
is refused with one clear line naming the file, exit 2 at the CLI. Payloads here would create
a marker file if anything executed them; every test checks that it does not exist.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from faceswap import faceset as fsmod
from faceswap.cli import main
from faceswap.errors import BadInput
from faceswap.media import read_image


def _bomb_png(path: Path, w: int, h: int) -> Path:
    """A 1-bit grey PNG of w x h zeros: tens of KB on disk, w*h*3 bytes once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + (w + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_image_that_declares_huge_dimensions_is_refused_before_decoding(tmp_path):
    bomb = _bomb_png(tmp_path / "bomb.png", 20000, 20000)  # ~50 KB; 1.2 GB decoded
    assert bomb.stat().st_size < 100_000
    before = _peak_rss_mb()
    with pytest.raises(BadInput, match="20000x20000, too large"):
        read_image(bomb)
    assert _peak_rss_mb() - before < 200  # never decoded


def test_face_image_of_the_wrong_size_is_refused_before_decoding(tmp_path, extracted, capsys):
    import shutil

    out = tmp_path / "set"
    shutil.copytree(extracted[0], out)
    fs = fsmod.load(out)
    _bomb_png(out / fs.faces[0].file, 16000, 16000)
    before = _peak_rss_mb()
    with pytest.raises(fsmod.FaceSetError, match="16000x16000, the face set says 64x64"):
        fs.load_image(fs.faces[0])
    assert _peak_rss_mb() - before < 200
    assert main(["faceset", "info", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "16000x16000" in err and fs.faces[0].name in err


# ---- checkpoints ------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates the marker file: proof that something executed the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _edit_tensors(folder: Path, name: str, edit) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / name))
    edit(tensors)
    save_file(tensors, str(folder / name))


def _edit_state(folder: Path, edit) -> None:
    import json

    state = json.loads((folder / "state.json").read_text())
    edit(state)
    (folder / "state.json").write_text(json.dumps(state))


def _first(tensors: dict) -> str:
    return sorted(k for k in tensors if tensors[k].dim() >= 2)[0]


def _raw_safetensors(header: bytes, body: bytes = b"\0" * 8) -> bytes:
    return struct.pack("<Q", len(header)) + header + body


def _pickle_payload(folder: Path, marker: Path) -> None:
    import pickle

    (folder / "model.safetensors").write_bytes(pickle.dumps({"w": _Payload(marker)}))


def _torch_payload(folder: Path, marker: Path) -> None:
    import torch

    torch.save({"w": _Payload(marker)}, folder / "model.safetensors")


def _set(key_path: tuple, value):
    def edit(state):
        d = state
        for k in key_path[:-1]:
            d = d[k]
        d[key_path[-1]] = value

    return edit


CHECKPOINT_ATTACKS = {
    # name: (tamper(folder, marker), words of the error)
    "pickle-as-safetensors": (_pickle_payload, "model.safetensors: corrupt or not a safetensors"),
    "torch-pickle-as-safetensors": (_torch_payload, "model.safetensors: corrupt or not a safet"),
    "huge-shape": (
        lambda f, m: (f / "model.safetensors").write_bytes(
            _raw_safetensors(
                b'{"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}}'
            )
        ),
        "model.safetensors: corrupt",
    ),  # fmt: skip
    "huge-header": (
        lambda f, m: (f / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 62) + b"{}"),
        "model.safetensors: corrupt",
    ),  # fmt: skip
    "wrong-dtype": (
        lambda f, m: _edit_tensors(
            f,
            "model.safetensors",
            lambda t: t.update({_first(t): t[_first(t)].to(__import__("torch").int8)}),
        ),
        "torch.int8",
    ),  # fmt: skip
    "wrong-shape": (
        lambda f, m: _edit_tensors(
            f, "model.safetensors", lambda t: t.update({_first(t): t[_first(t)][:1]})
        ),
        "does not fit this model",
    ),  # fmt: skip
    "optimizer-name-traversal": (
        lambda f, m: _edit_tensors(
            f, "optimizer.safetensors", lambda t: t.update({"../../x.exp_avg": t.pop(sorted(t)[0])})
        ),
        "malformed optimizer state",
    ),  # fmt: skip
    "optimizer-wrong-shape": (
        lambda f, m: _edit_tensors(
            f,
            "optimizer.safetensors",
            lambda t: t.update({"0.exp_avg": t["0.exp_avg"].flatten()[:3]}),
        ),
        "state does not fit this run",
    ),  # fmt: skip
    "rng-wrong-dtype": (
        lambda f, m: _edit_tensors(
            f,
            "rng.safetensors",
            lambda t: t.update(torch_cpu=t["torch_cpu"][:7].to(__import__("torch").float32)),
        ),
        "state does not fit this run",
    ),  # fmt: skip
    "code-in-step": (
        lambda f, m: _edit_state(f, _set(("step",), f"__import__('os').system('touch {m}')")),
        "state does not fit this run",
    ),  # fmt: skip
    "streams-wrong-kind": (
        lambda f, m: _edit_state(f, _set(("streams",), [1, 2])),
        "state does not fit this run",
    ),  # fmt: skip
    "python-rng-malformed": (
        lambda f, m: _edit_state(f, _set(("rng", "python"), [3, [1], None])),
        "state does not fit this run",
    ),  # fmt: skip
    "param-groups-string": (
        lambda f, m: _edit_state(f, _set(("optimizer", "param_groups"), "os.system")),
        "state does not fit this run",
    ),  # fmt: skip
    "other-version": (lambda f, m: _edit_state(f, _set(("version",), 2)), "version 2"),
    "state-is-pickle": (
        lambda f, m: (f / "state.json").write_bytes(__import__("pickle").dumps(_Payload(m))),
        "state.json: corrupt",
    ),  # fmt: skip
    "deeply-nested-json": (
        lambda f, m: (f / "state.json").write_text("[" * 100_000),
        "state.json: corrupt",
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def trainer(faceset_pair, tmp_path_factory):
    """A trainer of the tiny run's config, to restore crafted checkpoints into."""
    from faceswap.train.trainer import Trainer

    from helpers import tiny_train_config

    a, b = faceset_pair
    return Trainer(tiny_train_config(steps=12), fsmod.load(a), fsmod.load(b),
                   tmp_path_factory.mktemp("untrusted") / "run")  # fmt: skip


@pytest.mark.parametrize("attack", list(CHECKPOINT_ATTACKS))
def test_crafted_checkpoint_is_refused_and_never_executed(attack, trainer, tiny_run, tmp_path):
    import shutil

    from faceswap.train import checkpoint as ck

    tamper, words = CHECKPOINT_ATTACKS[attack]
    marker = tmp_path / "EXECUTED"
    ckpt = tmp_path / "step-00000012"
    shutil.copytree(ck.latest_checkpoint(tiny_run), ckpt)
    tamper(ckpt, marker)
    with pytest.raises(BadInput, match=_re(words)) as exc:
        trainer.restore(ckpt)
    assert str(ckpt) in str(exc.value) and "\n" not in str(exc.value)
    assert not marker.exists()


def _re(words: str) -> str:
    import re

    return re.escape(words)


def _one_line(err: str, *words: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if "error" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def _run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("logs", "previews"))
    return run


# the commands that load a checkpoint from a run folder (the run's `best` and its latest)
LOADERS = {
    "train --resume": lambda ctx, run, out: ["train", "-A", str(ctx["faceset_pair"][0]), "-B",
                                             str(ctx["faceset_pair"][1]), "-o", str(run),
                                             "--resume", "--steps", "13", "--no-tensorboard"],
    "convert": lambda ctx, run, out: ["convert", str(ctx["clip"]), "-m", str(run), "-o",
                                      str(out / "swapped.mp4"), "--frames", "0-2"],
}  # fmt: skip


@pytest.mark.parametrize("command", list(LOADERS))
def test_cli_refuses_a_checkpoint_with_a_pickle_payload(command, robust_inputs, tiny_run,
                                                        tmp_path, capsys):  # fmt: skip
    from faceswap.train import checkpoint as ck

    marker = tmp_path / "EXECUTED"
    run = _run_copy(tiny_run, tmp_path)
    for folder in (ck.latest_checkpoint(run), run / "checkpoints" / "best"):
        _pickle_payload(folder, marker)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(LOADERS[command](robust_inputs, run, tmp_path)) == 2
    _one_line(capsys.readouterr().err, "model.safetensors", "not a safetensors file")
    assert not marker.exists()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "swapped.mp4").exists()


# ---- face-set indexes ---------------------------------------------------------------------------


def _tamper_index(root: Path, edit) -> None:
    import json

    data = json.loads((root / "faceset.json").read_text())
    edit(data)
    (root / "faceset.json").write_text(json.dumps(data))


INDEX_ATTACKS = {
    "path-traversal": (lambda d: d["faces"][0].update(file="../../outside.png"), "unsafe file"),
    "absolute-path": (lambda d: d["faces"][0].update(file="/etc/passwd"), "unsafe file path"),
    "huge-size": (lambda d: d.update(size=1 << 40), "size 1099511627776 is out of range"),
    "huge-frame-size": (
        lambda d: [s.update(width=1 << 40) for s in d["sources"].values()],
        "width must be a positive integer",
    ),  # fmt: skip
    # face-set v2: the arrays live in a binary file the index names by row
    "row-out-of-range": (lambda d: d["faces"][0].update(row=10**6), "bad arrays row 1000000"),
    "row-as-code": (
        lambda d: d["faces"][0].update(row="__import__('os').system('x')"),
        "bad arrays row",
    ),  # fmt: skip
    "arrays-path-traversal": (
        lambda d: d["arrays"].update(file="../../outside.png"),
        "arrays must name a faceset.N.arrays file",
    ),  # fmt: skip
    "frame-as-float": (lambda d: d["faces"][0].update(frame=1.5), "bad frame number"),
}

# the commands that read a face set
INDEX_READERS = {
    "faceset info": lambda ctx, fs: ["faceset", "info", str(fs)],
    "train -A": lambda ctx, fs: ["train", "-A", str(fs), "-B", str(ctx["faceset_pair"][1]), "-o",
                                 str(fs.parent / "run"), "--no-tensorboard"],
    "extract (resume)": lambda ctx, fs: ["extract", str(ctx["clip"]), "-o", str(fs), "--size",
                                         "64", "--frames", "0-1"],
}  # fmt: skip


@pytest.mark.parametrize("attack", list(INDEX_ATTACKS))
@pytest.mark.parametrize("reader", list(INDEX_READERS))
def test_crafted_face_set_index_is_refused(reader, attack, robust_inputs, extracted, tmp_path,
                                           capsys):  # fmt: skip
    import shutil

    fs = tmp_path / "sets" / "set"
    shutil.copytree(extracted[0], fs)
    outside = tmp_path / "outside.png"  # where ../../outside.png points from faces/
    outside.write_bytes(b"precious")
    edit, words = INDEX_ATTACKS[attack]
    _tamper_index(fs, edit)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(INDEX_READERS[reader](robust_inputs, fs)) == 2
    _one_line(capsys.readouterr().err, "faceset.json", words)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not (fs.parent / "run").exists()


# ---- configs ------------------------------------------------------------------------------------


def _python_tag(marker: Path) -> str:
    return (f"steps: 2\nseed: !!python/object/apply:os.system ['touch {marker}']\n"
            f"size: !!python/object/apply:os.system ['touch {marker}']\n")  # fmt: skip


CONFIG_READERS = {
    "extract --config": lambda ctx, cfg, out: ["extract", str(ctx["clip"]), "-o", str(out / "s"),
                                               "--config", str(cfg)],
    "train --config": lambda ctx, cfg, out: ["train", "-A", str(ctx["faceset_pair"][0]), "-B",
                                             str(ctx["faceset_pair"][1]), "-o", str(out / "r"),
                                             "--config", str(cfg)],
    "convert --config": lambda ctx, cfg, out: ["convert", str(ctx["clip"]), "-m",
                                               str(ctx["run"]), "-o", str(out / "x.mp4"),
                                               "--config", str(cfg)],
}  # fmt: skip


@pytest.mark.parametrize("reader", list(CONFIG_READERS))
def test_config_with_python_tags_is_refused_and_never_executed(reader, robust_inputs, tiny_run,
                                                               tmp_path, capsys):  # fmt: skip
    marker = tmp_path / "EXECUTED"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(_python_tag(marker))
    out = tmp_path / "out"
    out.mkdir()
    assert main(CONFIG_READERS[reader]({**robust_inputs, "run": tiny_run}, cfg, out)) == 2
    _one_line(capsys.readouterr().err, "evil.yaml", "not valid YAML")
    assert not marker.exists() and not any(out.iterdir())


def test_run_config_with_python_tags_is_refused_on_resume(robust_inputs, tiny_run, tmp_path,
                                                          capsys):  # fmt: skip
    marker = tmp_path / "EXECUTED"
    run = _run_copy(tiny_run, tmp_path)
    (run / "config.yaml").write_text(_python_tag(marker))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    a, b = robust_inputs["faceset_pair"]
    assert main(["train", "-A", str(a), "-B", str(b), "-o", str(run), "--resume"]) == 2
    _one_line(capsys.readouterr().err, "config.yaml", "not valid YAML")
    assert not marker.exists()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    import time

    from faceswap.config import ExtractConfig, load_config

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(BadInput, match="unknown key 'a0'"):
        load_config(ExtractConfig, cfg, {})
    assert time.perf_counter() - t0 < 5
