"""Data-parallel training: torchrun with 2 CPU processes (gloo) trains like one process on the
global batch, and only rank 0 writes the run folder and prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file
from test_train import TINY, _cfg

from faceswap import faceset as fsmod
from faceswap.data import BatchStream
from faceswap.train import checkpoint as ck
from faceswap.train.trainer import Trainer, open_run

REPO = Path(__file__).resolve().parents[1]
# A plain mean over pixels: the mean of the two ranks' losses is then exactly the loss of the
# global batch (a mask-weighted mean normalises by each rank's own weight sum, so it is not).
PLAIN = {"loss": {"masked": False, "eye_multiplier": 1.0, "mouth_multiplier": 1.0}}


def test_ranks_take_contiguous_slices_of_one_global_plan(faceset_pair):
    from faceswap.data import FaceDataset

    fs = fsmod.load(faceset_pair[0])
    ds = FaceDataset(fs, list(range(20)), 64, None, 0)
    whole = BatchStream(ds, 6, seed=3)
    ranks = [BatchStream(ds, 3, seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(5):  # crosses an epoch boundary
        keys, *_ = whole.plan(whole.epoch, whole.position)
        parts = [s.local(s.plan(s.epoch, s.position)[0]) for s in ranks]
        assert parts[0] + parts[1] == keys
        got = [next(s)["index"] for s in ranks]
        assert torch.equal(torch.cat(got), next(whole)["index"])
        assert ranks[0].state_dict() == ranks[1].state_dict() == whole.state_dict()


def test_torchrun_two_ranks_match_one_process_on_the_global_batch(faceset_pair, tmp_path):
    steps = 4
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, **PLAIN, "steps": steps}))
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("FACESWAP_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "faceswap", "train", "-A", str(faceset_pair[0]), "-B", str(faceset_pair[1]),
         "-o", str(run), "--config", str(config), "--no-tensorboard", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # one JSON document: rank 1 printed nothing
    assert summary["step"] == steps
    latest = ck.latest_checkpoint(run)
    assert latest is not None and latest.name == f"step-{steps:08d}"
    assert (run / "config.yaml").is_file() and (run / "preview.png").is_file()
    assert not (run / "logs").exists()

    # one process, the same global batch (2 x batch_size per side), on one thread as each rank
    # runs (OMP_NUM_THREADS=1): another thread count sums the convolutions' gradients in another
    # order, and Adam's normalised step turns those last-bit differences into ~1e-4 weight changes
    assert torch.get_num_threads() == 1
    single = tmp_path / "single"
    cfg = open_run(
        single, _cfg(**PLAIN, steps=steps, batch_size=2 * TINY["batch_size"]), resume=False
    )
    t = Trainer(cfg, fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1]), single)
    t.train(tensorboard=False)
    ddp = load_file(str(latest / "model.safetensors"))
    ref = t.model.state_dict()
    assert ddp.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(ddp[k], ref[k], rtol=1e-4, atol=1e-5, msg=k)
    state = json.loads((latest / "state.json").read_text())
    assert state["streams"] == {side: s.state_dict() for side, s in t.streams.items()}
