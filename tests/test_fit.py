"""Fit-training: lineage, the source run left untouched, exact resume (with freezing), a new
identity learnt faster than from scratch, and bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import pytest
import torch

from faceswap import faceset as fsmod
from faceswap.cli import main
from faceswap.train import checkpoint as ck
from faceswap.train.fit import FitConfig, fit_train_config, plan_fit, resume_fit, start_fit
from faceswap.train.trainer import Trainer, open_run

from helpers import tiny_train_config


@pytest.fixture(scope="module")
def third_faceset(tmp_path_factory, faceset_pair) -> Path:
    """A third look: face set A's aligned faces recoloured (another hue, darker skin). The
    geometry is unchanged, so its landmarks and matrices still hold."""
    from faceswap.synthetic import recolor_identity

    out = tmp_path_factory.mktemp("third") / "c"
    shutil.copytree(faceset_pair[0], out)
    fs = fsmod.load(out)
    for face in fs.faces:
        rgb = fs.load_image(face)[..., ::-1]
        new = recolor_identity(rgb, hue_shift=100, saturation=1.3, skin_tone=0.7, seed=7)
        cv2.imwrite(str(fs.path_of(face)), new[..., ::-1])
    return out


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_config_keeps_the_source_and_sets_the_fit_schedule():
    src = tiny_train_config(steps=10_000, val_every=250)
    cfg = fit_train_config(src, FitConfig(steps=400, freeze={"encoder": 50}))
    assert cfg.model == src.model and cfg.loss == src.loss and cfg.seed == src.seed
    assert (cfg.steps, cfg.schedule.name, cfg.schedule.total_steps) == (400, "cosine", 400)
    assert cfg.schedule.lr == 0.5 * src.schedule.lr and cfg.schedule.warmup_steps == 20
    assert cfg.augment.flip == 0.0 and src.augment.flip > 0
    assert cfg.freeze == {"encoder": 50} and cfg.val_every == 20
    other = fit_train_config(src, FitConfig(steps=400, lr=1e-5, flip=True))
    assert other.augment.flip > 0 and other.schedule.lr == 1e-5
    # a source trained under --budget: the fit runs its steps, not what is left of that time
    # (the demo's fit once stopped a step short, its 2.5 s spent)
    timed = fit_train_config(tiny_train_config(budget=2.5), FitConfig(steps=400))
    assert timed.budget == 0.0 and timed.steps == 400


def test_fit_records_lineage_and_never_touches_the_source(capsys, tiny_run, third_faceset,
                                                           tmp_path):  # fmt: skip
    before = _hashes(tiny_run)
    out_run = tmp_path / "fit"
    code, out, err = _cli(capsys, "fit", "--from", str(tiny_run), "-B", str(third_faceset),
                          "-o", str(out_run), "--steps", "3", "--no-tensorboard", "--json")  # fmt: skip
    assert code == 0, err
    assert _hashes(tiny_run) == before
    data = json.loads(out)
    lin = data["lineage"]
    best = tiny_run / "checkpoints" / "best"
    assert lin["kind"] == "fit" and lin["replaced"] == "B"
    assert lin["source_run"] == str(tiny_run.resolve()) and lin["source_checkpoint"] == str(best)
    assert lin["source_step"] == json.loads((best / "state.json").read_text())["step"]
    assert lin["faceset"]["path"] == str(third_faceset)
    assert lin["replaced_faceset"]["path"] != str(third_faceset)
    assert set(lin["start_val"]) == {"a", "b"} and set(data["change"]) == {"a", "b"}
    assert data["import"]["counts"]["encoder"]["loaded"] == 14
    state = json.loads((ck.latest_checkpoint(out_run) / "state.json").read_text())
    assert state["lineage"] == lin  # every checkpoint carries it
    assert state["facesets"]["b"]["path"] == str(third_faceset)
    cfg = state["config"]
    assert cfg["steps"] == 3 and cfg["augment"]["flip"] == 0.0
    first = json.loads((out_run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 0 and first["val_b"] == lin["start_val"]["b"]  # the baseline
    # a fit run is a normal run: `fit --resume` continues it on the face sets it records
    code, out, err = _cli(capsys, "fit", "--resume", "-o", str(out_run), "--steps", "4",
                          "--no-tensorboard", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["start_step"] == 3 and json.loads(out)["step"] == 4
    assert _hashes(tiny_run) == before


def test_fit_resume_with_freezing_equals_uninterrupted(tiny_run, third_faceset, tmp_path):
    fit = FitConfig(steps=4, freeze={"encoder": 3}, reset_decoder=True)
    straight, _ = start_fit(plan_fit(tiny_run, "a", third_faceset, fit), tmp_path / "straight")
    straight.train(tensorboard=False)
    first, _ = start_fit(plan_fit(tiny_run, "a", third_faceset, fit), tmp_path / "split")

    def interrupt(step, _):
        if step == 2:
            raise KeyboardInterrupt  # Ctrl-C: the trainer saves step 2 and re-raises

    with pytest.raises(KeyboardInterrupt):
        first.train(interrupt, tensorboard=False)
    resumed = resume_fit(tmp_path / "split")
    assert resumed.step == 2 and resumed.frozen == ("encoder",)
    assert resumed.lineage["replaced"] == "A" and resumed.lineage["reset_decoder"]
    resumed.train(tensorboard=False)
    assert resumed.frozen == ()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_fit_learns_a_new_identity_faster_than_scratch(faceset_pair, third_faceset, tmp_path):
    fa, fb, fc = (fsmod.load(p) for p in (*faceset_pair, third_faceset))
    fast = dict(val_every=4, save_every=16, preview_every=16,
                schedule={"name": "constant", "lr": 1e-3, "warmup_steps": 0})  # fmt: skip
    base = tmp_path / "base"  # a base model that has learnt a little about faces (16 steps)
    Trainer(open_run(base, tiny_train_config(steps=16, **{**fast, "val_every": 16}), False),
            fa, fb, base).train(tensorboard=False)  # fmt: skip
    steps = 8
    scratch_run = tmp_path / "scratch"
    scratch = Trainer(open_run(scratch_run, tiny_train_config(steps=steps, **fast), False),
                      fa, fc, scratch_run)  # fmt: skip
    scratch.train(tensorboard=False)
    fitted, _ = start_fit(plan_fit(base, "b", third_faceset, FitConfig(steps=steps, evaluations=2)),
                          tmp_path / "fit")  # fmt: skip
    fitted.train(tensorboard=False)

    def curve(run):  # step -> validation loss of the new identity (side B)
        rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["val_b"] for r in rows}

    s, f = curve(scratch_run), curve(tmp_path / "fit")
    assert set(s) == {4, 8} and {4, 8} <= set(f)
    assert f[4] < s[4] and f[8] < 0.8 * s[8], (s, f)
    assert f[4] < s[8]  # half the steps reach further than scratch's end


def _tiny_copy(tiny_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "src"
    shutil.copytree(tiny_run, copy)
    return copy


@pytest.mark.parametrize(
    "case, words",
    [
        ("no-source", "no such run or checkpoint"),
        ("corrupt", "corrupt"),
        ("not-ours", "not a faceswap checkpoint"),
        ("size", "extract them with --size 64 --centering face"),
        ("inside-source", "inside the source run"),
        ("step", "no checkpoint of that step"),
        ("no-faceset", "give the new face set with -A or -B"),
    ],
)
def test_bad_fit_input(capsys, tiny_run, third_faceset, tmp_path, case, words):
    src = _tiny_copy(tiny_run, tmp_path)
    out_run = tmp_path / "out"
    argv = ["fit", "--from", str(src), "-B", str(third_faceset), "-o", str(out_run), "--steps", "2",
            "--no-tensorboard"]  # fmt: skip
    if case == "no-source":
        argv[2] = str(tmp_path / "missing")
    elif case == "corrupt":
        (src / "checkpoints" / "best" / "model.safetensors").write_bytes(b"garbage" * 10)
    elif case == "not-ours":
        (src / "checkpoints" / "best" / "state.json").write_text('{"format": "x"}')
    elif case == "size":
        other = tmp_path / "big"
        fsmod.create(other, 128, "face", "png")
        argv[4] = str(other)
    elif case == "inside-source":
        out_run = src / "fits" / "c"
        argv[6] = str(out_run)
    elif case == "step":
        argv += ["--checkpoint", "7"]
    elif case == "no-faceset":
        argv[3:5] = []
    before = _hashes(src)
    code, _, err = _cli(capsys, *argv)
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and words in lines[0], err
    assert _hashes(src) == before
    assert not out_run.exists()
