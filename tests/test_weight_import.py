"""Weight import (by name and shape, the loaded/skipped/mismatched report) and per-part freezing
(no gradients, no optimizer updates, thaw at STEPS, kept across a resume)."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file

from faceswap import faceset as fsmod
from faceswap.cli import main
from faceswap.config import from_dict
from faceswap.errors import BadInput
from faceswap.models import ModelConfig, build_model
from faceswap.train import checkpoint as ck
from faceswap.train.trainer import Trainer, open_run
from faceswap.train.weight_import import (
    DF_PARTS,
    frozen_parts,
    import_weights,
    init_from,
    parse_freeze,
    parse_parts,
)

from helpers import TINY_TRAIN, tiny_train_config


def _model(**over):
    torch.manual_seed(123)  # another init than the source run's
    return build_model(from_dict(ModelConfig, {**TINY_TRAIN["model"], **over}, "test"))


def test_parse_parts_and_freeze_specs():
    assert parse_parts("decoder_b, encoder") == ("encoder", "decoder_b")  # PARTS order
    assert parse_freeze("encoder:500,decoder_a") == {"encoder": 500, "decoder_a": 0}
    for bad, words in [("encoder,decoder_c", "unknown part 'decoder_c'"), ("", "at least one"),
                       ("encoder,encoder", "twice")]:  # fmt: skip
        with pytest.raises(BadInput, match=words):
            parse_parts(bad)
    for bad, words in [("encoder:x", "PART:STEPS"), ("encoder:0", ">= 1"), ("dec:5", "unknown"),
                       ("encoder:5,encoder", "twice")]:  # fmt: skip
        with pytest.raises(BadInput, match=words):
            parse_freeze(bad)
    with pytest.raises(BadInput, match="nothing to train"):
        tiny_train_config(freeze={p: 10 for p in DF_PARTS})


def test_frozen_parts_is_a_function_of_the_step():
    spec = {"encoder": 3, "decoder_a": 0}
    assert frozen_parts(spec, 0) == frozen_parts(spec, 2) == ("encoder", "decoder_a")
    assert frozen_parts(spec, 3) == frozen_parts(spec, 10**6) == ("decoder_a",)
    assert frozen_parts({}, 0) == ()


def test_same_model_loads_every_tensor_and_records_lineage(tiny_run):
    model = _model()
    report, lineage = init_from(model, tiny_run, DF_PARTS)
    best = tiny_run / "checkpoints" / "best"
    source = load_file(str(best / "model.safetensors"))
    own = model.state_dict()
    assert sorted(report.loaded) == sorted(own) and not report.partial
    for k, v in own.items():
        assert torch.equal(v, source[k]), k
    assert lineage["kind"] == "init" and lineage["source_checkpoint"] == str(best)
    assert lineage["source_run"] == str(tiny_run.resolve()) and lineage["source_step"] == 12


def test_wider_decoder_is_a_partial_load_with_the_list(tiny_run, caplog):
    # decoder_dims 8 -> 16 changes the encoder's last upscale (latent channels 8D) and every
    # decoder conv but the output biases; the encoder's down convs and dense layers still fit
    model = _model(decoder_dims=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="faceswap.train.weight_import"):
        report, _ = init_from(model, tiny_run, ["encoder", "decoder_b"])
    counts = report.counts()
    assert set(counts) == {"encoder", "decoder_b"}
    assert counts["encoder"] == {"loaded": 12, "skipped": 0, "mismatched": 2}
    assert counts["decoder_b"] == {"loaded": 2, "skipped": 0, "mismatched": 20}
    assert {n for n in report.loaded if n.startswith("decoder")} == {
        "decoder_b.rgb.bias", "decoder_b.mask.bias"}  # fmt: skip
    mism = {n: (s, d) for n, s, d in report.mismatched}
    assert mism["encoder.upscale.0.weight"] == ([256, 64, 3, 3], [512, 64, 3, 3])
    for name in mism:  # shape-mismatched tensors keep their fresh init
        assert torch.equal(model.state_dict()[name], before[name])
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "partial weight import" in warning and "encoder.upscale.0.weight" in warning
    table = report.table()
    assert "mismatched  encoder.upscale.0.weight: source (256, 64, 3, 3)" in table
    assert "decoder_a" not in table  # not asked for, not reported


def test_skipped_tensors_are_listed_both_ways():
    src = {"encoder.extra.weight": torch.zeros(2), "encoder.down.0.0.bias": torch.zeros(8)}
    report = import_weights(_model(), src, ["encoder"], "src")
    skipped = dict(report.skipped)
    assert skipped["encoder.extra.weight"] == "not in this model"
    assert skipped["encoder.down.0.0.weight"] == "not in the source"
    assert report.loaded == ["encoder.down.0.0.bias"]


def test_nothing_loaded_is_an_error(tiny_run):
    with pytest.raises(BadInput, match="no tensor of encoder matches this model"):
        init_from(_model(encoder_dims=16, decoder_dims=16, bottleneck=64), tiny_run, ["encoder"])


def test_corrupt_or_foreign_checkpoints_are_refused(tiny_run, tmp_path):
    best = tmp_path / "best"
    shutil.copytree(tiny_run / "checkpoints" / "best", best)
    (best / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ck.CheckpointError, match="corrupt"):
        init_from(_model(), best, DF_PARTS)
    (best / "state.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ck.CheckpointError, match="not a faceswap checkpoint"):
        init_from(_model(), best, DF_PARTS)
    with pytest.raises(ck.CheckpointError, match="no such run"):
        init_from(_model(), tmp_path / "missing", DF_PARTS)


def _params(model, part):
    return {n: p.detach().clone() for n, p in model.parts()[part].named_parameters()}


def test_frozen_part_gets_no_grads_no_updates_then_thaws(faceset_pair, tmp_path):
    cfg = open_run(tmp_path / "run", tiny_train_config(steps=5, freeze={"encoder": 2}), False)
    t = Trainer(cfg, fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1]), tmp_path / "run")
    enc0, dec0 = _params(t.model, "encoder"), _params(t.model, "decoder_a")
    ids = {id(p) for p in t.model.encoder.parameters()}
    for _ in range(2):
        t.train_step()
        assert t.frozen == ("encoder",)
        assert all(p.grad is None for p in t.model.encoder.parameters())
        # AdamW never touched them: no moments, so no drift from momentum or weight decay
        assert not any(id(p) in ids for p in t.optimizer.state)
    for n, v in _params(t.model, "encoder").items():
        assert torch.equal(v, enc0[n]), n  # bit-identical
    assert any(not torch.equal(v, dec0[n]) for n, v in _params(t.model, "decoder_a").items())
    t.train_step()  # step index 2: thawed
    assert t.frozen == () and any("encoder unfrozen" in e for e in t.events)
    assert all(p.grad is not None for p in t.model.encoder.parameters())
    assert any(not torch.equal(v, enc0[n]) for n, v in _params(t.model, "encoder").items())


def test_resume_with_freezing_equals_uninterrupted_run(faceset_pair, tmp_path):
    fa, fb = fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1])
    spec = {"encoder": 4, "decoder_b": 0}

    def trainer(run, steps, resume=False):
        cfg = open_run(run, tiny_train_config(steps=steps, freeze=spec), resume)
        if resume:
            cfg.steps = steps
        return Trainer(cfg, fa, fb, run)

    straight = trainer(tmp_path / "straight", 6)
    straight.train(tensorboard=False)
    trainer(tmp_path / "split", 3).train(tensorboard=False)
    latest = ck.latest_checkpoint(tmp_path / "split")
    state = json.loads((latest / "state.json").read_text())
    assert state["freeze"] == {"spec": spec, "frozen": ["encoder", "decoder_b"]}
    resumed = trainer(tmp_path / "split", 6, resume=True)
    resumed.restore(latest)
    assert resumed.frozen == ("encoder", "decoder_b")
    resumed.train(tensorboard=False)
    assert resumed.frozen == ("decoder_b",)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_init_from_prints_the_table_and_json(capsys, faceset_pair, tiny_run, tmp_path):
    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY_TRAIN, "steps": 2}))
    base = ["train", "-A", str(faceset_pair[0]), "-B", str(faceset_pair[1]), "--config", str(cfg),
            "--no-tensorboard", "--init-from", str(tiny_run)]  # fmt: skip
    code, out, err = _cli(capsys, *base, "-o", str(tmp_path / "r1"), "--load", "encoder",
                          "--freeze", "encoder:1")  # fmt: skip
    assert code == 0, err
    assert "encoder         14        0           0" in out and "decoder_a" not in out.split(
        "trained")[0]  # fmt: skip
    assert "step 1: encoder unfrozen" in out
    code, out, err = _cli(capsys, *base, "-o", str(tmp_path / "r2"), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["import"]["counts"]["decoder_b"] == {"loaded": 22, "skipped": 0, "mismatched": 0}
    assert data["lineage"]["kind"] == "init" and "start_val" in data["lineage"]
    # the imported weights are kept as step 0, so a resume never starts from a random init
    assert ck.list_checkpoints(tmp_path / "r2")[0].name == "step-00000000"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--init-from", "RUN", "--load", "encoder,decoder_x"], "--load: unknown part"),
        (["--load", "encoder"], "--load: only with --init-from"),
        (["--init-from", "RUN", "--freeze", "everything"], "--freeze: unknown part"),
        (["--init-from", "MISSING"], "no such run or checkpoint"),
    ],
)
def test_cli_bad_import_options(capsys, faceset_pair, tiny_run, tmp_path, extra, words):
    extra = [str(tiny_run) if e == "RUN" else str(tmp_path / "nope") if e == "MISSING" else e
             for e in extra]  # fmt: skip
    run = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "-A", str(faceset_pair[0]), "-B", str(faceset_pair[1]),
                        "-o", str(run), "--steps", "2", *extra)  # fmt: skip
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and words in lines[0], err
    assert not run.exists()
