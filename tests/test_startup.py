"""Train start-up and run-folder safety: the FLOP-count cache and the one-writer run lock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faceswap import faceset as fsmod
from faceswap.models import measure
from faceswap.models.config import ModelConfig
from faceswap.train.runlock import RunLocked, run_lock
from faceswap.train.trainer import Trainer, open_run

from helpers import tiny_train_config


def test_flop_count_is_cached_per_config(tmp_path, monkeypatch):
    monkeypatch.setenv(measure.CACHE_ENV, str(tmp_path))
    cfg = tiny_train_config().model
    first = measure.cached_flops_per_sample(cfg)
    with __import__("torch").device("meta"):
        direct = measure.flops_per_sample(measure.build_model(cfg))
    assert first == direct and first["forward_backward"] > first["forward"] > 0
    assert (tmp_path / "flops.json").is_file()

    def boom(*a, **k):
        raise AssertionError("counted again although cached")

    monkeypatch.setattr(measure, "flops_per_sample", boom)
    assert measure.cached_flops_per_sample(cfg) == first
    # another config (here: another resolution) is a miss, not a wrong hit
    with pytest.raises(AssertionError, match="counted again"):
        measure.cached_flops_per_sample(cfg, cfg.resolution * 2)


def test_corrupt_flop_cache_only_costs_a_recount(tmp_path, monkeypatch):
    monkeypatch.setenv(measure.CACHE_ENV, str(tmp_path))
    (tmp_path / "flops.json").write_text("{not json")
    cfg = ModelConfig(arch="lightweight", resolution=64)
    flops = measure.cached_flops_per_sample(cfg)
    assert flops["forward"] > 0
    assert measure.cached_flops_per_sample(cfg) == flops


def test_run_lock_names_the_other_process(tmp_path):
    run = tmp_path / "run"
    code = (
        "import sys, time; from faceswap.train.runlock import run_lock\n"
        f"with run_lock({str(run)!r}):\n"
        "    print('held', flush=True); time.sleep(30)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env=env)  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"pid {child.pid} on") as exc, run_lock(run):
            pass
        assert str(run) in str(exc.value)
    finally:
        child.kill()
        child.wait()
    t0 = time.monotonic()
    with run_lock(run):  # the kernel freed it when the holder died (kill -9)
        pass
    assert time.monotonic() - t0 < 1.0


def test_second_trainer_on_one_run_folder_is_refused(faceset_pair, tmp_path):
    run = tmp_path / "run"
    cfg = open_run(run, tiny_train_config(steps=1), resume=False)
    trainer = Trainer(cfg, fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1]), run)
    # the outer lock stands in for a trainer already running there
    with run_lock(run), pytest.raises(RunLocked, match="another trainer is writing"):
        trainer.train(tensorboard=False)
    assert not (run / "checkpoints").exists()  # it wrote nothing
    summary = trainer.train(tensorboard=False)  # once free, it runs
    assert summary.step == 1
    assert Path(run / ".lock").read_text() == ""
