"""Checkpoints: exact round trip, atomic writes, pruning, and refusing files that are not ours."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from faceswap.train import checkpoint as ck


def _trained_optimizer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
    return model, opt


def test_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    model, opt = _trained_optimizer()
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    path = ck.save_checkpoint(tmp_path, 3, model.state_dict(), opt.state_dict(), {"note": "x"})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = ck.load_checkpoint(path)
    ck.set_rng_state(*loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    model2, opt2 = _trained_optimizer()
    model2.load_state_dict(loaded["model"])
    opt2.load_state_dict(loaded["optimizer"])
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    # the next optimizer step is identical: moments and step counts came back exactly
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert loaded["state"]["step"] == 3 and loaded["state"]["note"] == "x"


def test_keep_last_and_best(tmp_path):
    model, opt = _trained_optimizer()
    for step in (1, 2, 3, 4):
        ck.save_checkpoint(tmp_path, step, model.state_dict(), opt.state_dict(), {},
                           keep_last=2, best=step == 2)  # fmt: skip
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]
    assert ck.load_checkpoint(tmp_path / "checkpoints" / "best")["state"]["step"] == 2
    assert ck.resolve_checkpoint(tmp_path).name == "best"
    assert ck.resolve_checkpoint(tmp_path, "latest").name == "step-00000004"


def test_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, opt = _trained_optimizer()
    good = ck.save_checkpoint(tmp_path, 1, model.state_dict(), opt.state_dict(), {})
    before = {p.name: p.read_bytes() for p in good.iterdir()}

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "save_file", disk_full)
    with pytest.raises(ck.CheckpointError, match="disk full while saving"):
        ck.save_checkpoint(tmp_path, 2, model.state_dict(), opt.state_dict(), {}, best=True)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-00000001"]
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


def test_files_that_are_not_ours_are_refused(tmp_path):
    model, opt = _trained_optimizer()
    path = ck.save_checkpoint(tmp_path, 1, model.state_dict(), opt.state_dict(), {})
    (path / "model.safetensors").write_bytes(pickle.dumps({"evil": "payload"}))
    with pytest.raises(ck.CheckpointError, match="model.safetensors"):
        ck.load_checkpoint(path)
    (path / "state.json").write_text("{not json")
    with pytest.raises(ck.CheckpointError, match="corrupt"):
        ck.load_checkpoint(path)
    (path / "state.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ck.CheckpointError, match="not a faceswap checkpoint"):
        ck.load_checkpoint(path)
    with pytest.raises(ck.CheckpointError, match="no such run"):
        ck.resolve_checkpoint(tmp_path / "missing")
    empty = tmp_path / "empty-run"
    empty.mkdir()
    with pytest.raises(ck.CheckpointError, match="no checkpoint"):
        ck.resolve_checkpoint(empty)
