"""The optional patch-GAN term (loss.gan_power): the discriminator, its switch-on share of the
run, its checkpoints and exact resume, and runs without it left as they were."""

from __future__ import annotations

import json

import pytest
import torch

from faceswap import faceset as fsmod
from faceswap.train import checkpoint as ck
from faceswap.train.discriminator import GanTerm, PatchDiscriminator
from faceswap.train.losses import LossConfig
from faceswap.train.trainer import Trainer, open_run

from helpers import TINY_TRAIN, cli, tiny_train_config, tiny_trainer

GAN = {"gan_power": 0.1, "gan_dims": 8, "gan_lr": 2e-4}


def _loss(**over) -> dict:
    return {**GAN, **over}


def test_discriminator_gives_one_logit_per_patch():
    d = PatchDiscriminator(8)
    assert d(torch.rand(2, 3, 64, 64)).shape == (2, 1, 8, 8)
    assert d(torch.rand(1, 3, 128, 128)).shape == (1, 1, 16, 16)


def test_discriminator_learns_real_from_obviously_fake():
    torch.manual_seed(0)
    gan = GanTerm(LossConfig(gan_power=0.1, gan_dims=8, gan_lr=2e-3), torch.device("cpu"), 0)
    x = torch.linspace(0, 1, 32)
    real = (torch.sin(40 * x)[None, :] * torch.cos(25 * x)[:, None] * 0.5 + 0.5).expand(
        8, 3, 32, 32
    )
    fake = torch.full((8, 3, 32, 32), 0.5)  # flat grey: what a blurred decoder gives
    losses = [gan.discriminator_step(real, fake, lr=0.0) for _ in range(30)]
    assert losses[0] == pytest.approx(0.693, abs=0.05)  # ln 2: it cannot tell them apart yet
    assert losses[-1] < 0.4, losses
    with torch.no_grad():
        assert gan.net(real).mean() > 0 > gan.net(fake).mean()


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_gan_off_creates_and_saves_no_discriminator(faceset_pair, tmp_path):
    t = tiny_trainer(*faceset_pair, tmp_path / "run", steps=3)
    assert t.gan is None
    t.train(tensorboard=False)
    folder = ck.latest_checkpoint(tmp_path / "run")
    assert _files(folder) == ["model.safetensors", "optimizer.safetensors", "rng.safetensors",
                              "state.json"]  # fmt: skip
    assert "discriminator_optimizer" not in json.loads((folder / "state.json").read_text())


def test_gan_term_waits_for_gan_start(faceset_pair, tmp_path):
    # TINY's schedule is 12 steps long: gan_start 0.25 switches the term on at step 3
    plain = tiny_trainer(*faceset_pair, tmp_path / "plain", steps=12)
    gan = tiny_trainer(*faceset_pair, tmp_path / "gan", steps=12, loss=_loss(gan_start=0.25))
    d0 = {k: v.clone() for k, v in gan.gan.net.state_dict().items()}
    for _ in range(3):
        assert "gan_g" not in plain.train_step()
        assert "gan_g" not in gan.train_step()
    # nothing of the GAN before its start: the same model, an untouched discriminator
    for k, v in plain.model.state_dict().items():
        assert torch.equal(v, gan.model.state_dict()[k]), k
    for k, v in gan.gan.net.state_dict().items():
        assert torch.equal(v, d0[k]), k
    out, ref = gan.train_step(), plain.train_step()
    assert out["gan_g"] > 0 and out["gan_d"] > 0
    assert out["loss"] == pytest.approx(ref["loss"])  # "loss" stays the reconstruction loss
    changed = [k for k, v in plain.model.state_dict().items()
               if not torch.equal(v, gan.model.state_dict()[k])]  # fmt: skip
    assert any(k.startswith("decoder_b") for k in changed)
    assert any(not torch.equal(v, d0[k]) for k, v in gan.gan.net.state_dict().items())
    # metrics.jsonl carries the GAN's two sides (means since the last row); the plain run not
    for t in (gan, plain):
        t.run_dir.mkdir(parents=True, exist_ok=True)
        t._evaluate()
    row = json.loads((tmp_path / "gan" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["gan_g"] == pytest.approx(out["gan_g"]) and row["gan_d"] == pytest.approx(
        out["gan_d"]
    )
    assert "gan_g" not in (tmp_path / "plain" / "metrics.jsonl").read_text()
    assert gan.gan_losses == []


def test_gan_run_saves_discriminator_and_resumes_exactly(faceset_pair, tmp_path):
    loss = _loss(gan_start=0.0, gan_sides="ab")
    seen: list[set] = []
    straight = tiny_trainer(*faceset_pair, tmp_path / "straight", steps=4, loss=loss)
    straight.train(progress=lambda step, last: seen.append(set(last)), tensorboard=False)
    assert all({"gan_g", "gan_d"} <= keys for keys in seen)
    tiny_trainer(*faceset_pair, tmp_path / "split", steps=2, loss=loss).train(tensorboard=False)
    folder = ck.latest_checkpoint(tmp_path / "split")
    assert {"discriminator.safetensors", "discriminator_optimizer.safetensors"} <= set(
        _files(folder)
    )
    cfg = open_run(tmp_path / "split", tiny_train_config(steps=4), resume=True)
    assert cfg.loss.gan_power == 0.1  # the run's own config comes back
    resumed = Trainer(cfg, fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1]),
                      tmp_path / "split")  # fmt: skip
    resumed.restore(folder)
    assert resumed.step == 2
    resumed.train(tensorboard=False)
    for ours, theirs in ((straight.model, resumed.model), (straight.gan.net, resumed.gan.net)):
        a, b = ours.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    a, b = straight.gan.optimizer.state_dict(), resumed.gan.optimizer.state_dict()
    for pid, st in a["state"].items():
        for key, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["state"][pid][key])), key


def test_discriminator_runs_in_fp32_under_autocast(faceset_pair, tmp_path):
    t = tiny_trainer(*faceset_pair, tmp_path / "run", steps=12, precision="bf16",
                     loss=_loss(gan_start=0.0))  # fmt: skip
    seen = []
    t.gan.net.register_forward_hook(lambda m, inp, out: seen.append((inp[0].dtype, out.dtype)))
    out = t.train_step()
    assert t.amp_dtype == torch.bfloat16
    assert seen and all(d == (torch.float32, torch.float32) for d in seen), seen
    assert all(v.dtype == torch.float32 for v in t.gan.net.state_dict().values())
    assert out["gan_g"] > 0 and out["gan_d"] > 0
    # and inside an autocast region too (a caller may judge faces under it)
    seen.clear()
    fake, real = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert t.gan.generator_loss(fake).dtype == torch.float32
        t.gan.discriminator_step(real, fake, lr=1e-4)
    assert len(seen) == 2 and all(d == (torch.float32, torch.float32) for d in seen), seen


def test_resume_without_saved_discriminator_starts_a_fresh_one(faceset_pair, tmp_path):
    tiny_trainer(*faceset_pair, tmp_path / "run", steps=2).train(tensorboard=False)
    cfg = tiny_train_config(steps=4, loss=_loss())
    t = Trainer(cfg, fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1]), tmp_path / "run")
    fresh = {k: v.clone() for k, v in t.gan.net.state_dict().items()}
    t.restore(ck.latest_checkpoint(tmp_path / "run"))
    assert t.step == 2
    assert all(torch.equal(v, fresh[k]) for k, v in t.gan.net.state_dict().items())


@pytest.mark.parametrize(
    "key, value",
    [
        ("gan_power", -0.1),
        ("gan_start", 1.0),
        ("gan_sides", "a"),
        ("gan_lr", -1e-4),
        ("gan_dims", 0),
        ("gan_dims", 2.5),
        ("gan_power", "lots"),
    ],
)
def test_bad_gan_option_exits_2_naming_it(capsys, faceset_pair, tmp_path, key, value):
    import yaml

    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump({**TINY_TRAIN, "steps": 2, "loss": {key: value}}))
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "-A", faceset_pair[0], "-B", faceset_pair[1], "-o", run,
                       "--config", conf, "--no-tensorboard")  # fmt: skip
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and key in lines[0], err
    assert not run.exists()
