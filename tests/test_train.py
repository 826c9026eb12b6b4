"""Training: exact resume, NaN rollback, previews, the overfitting monitor wiring, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from faceswap import faceset as fsmod
from faceswap.cli import main
from faceswap.train import checkpoint as ck
from faceswap.train.budget import CALIBRATE
from faceswap.train.config import TrainConfig
from faceswap.train.schedules import lr_at
from faceswap.train.trainer import Trainer, open_run

from helpers import TINY_TRAIN as TINY
from helpers import tiny_train_config


def _cfg(**over) -> TrainConfig:
    return tiny_train_config(**over)


def _trainer(pair, run, **over) -> Trainer:
    cfg = open_run(run, _cfg(**over), resume=False)
    return Trainer(cfg, fsmod.load(pair[0]), fsmod.load(pair[1]), run)


def test_resumed_run_equals_uninterrupted_run(faceset_pair, tmp_path):
    straight = _trainer(faceset_pair, tmp_path / "straight", steps=6)
    straight.train(tensorboard=False)
    first = _trainer(faceset_pair, tmp_path / "split", steps=3)
    first.train(tensorboard=False)
    cfg = open_run(tmp_path / "split", _cfg(steps=6), resume=True)  # only the step count changes
    resumed = Trainer(cfg, fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1]),
                      tmp_path / "split")  # fmt: skip
    resumed.restore(ck.latest_checkpoint(tmp_path / "split"))
    assert resumed.step == 3
    resumed.train(tensorboard=False)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_resume_validates_on_the_faces_its_run_held_out(faceset_pair, tmp_path, monkeypatch):
    from faceswap.errors import BadInput
    from faceswap.train import split_record

    run = tmp_path / "run"
    first = _trainer(faceset_pair, run, steps=2)
    first.train(tensorboard=False)
    recorded = split_record.read_split(run)
    assert set(recorded) == {"a", "b"} and all(recorded.values())
    faces = {side: first.fs[side].faces for side in "ab"}
    for side, idx in first.val_idx.items():
        assert recorded[side] == [split_record.face_key(faces[side][i]) for i in idx]

    # a newer split rule (or a grown face set) must not move faces across: the record wins
    def other_rule(*_a, **_k):
        raise AssertionError("a run with a recorded split split its faces anew")

    monkeypatch.setattr(split_record, "split_train_val", other_rule)
    cfg = open_run(run, _cfg(steps=3), resume=True)
    resumed = Trainer(cfg, fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1]), run)
    assert resumed.val_idx == first.val_idx
    for side in "ab":
        assert set(resumed.train_sets[side].face_indices.tolist()).isdisjoint(resumed.val_idx[side])

    (run / split_record.SPLIT_FILE).write_text("{not json")
    with pytest.raises(BadInput, match="split.json"):
        Trainer(cfg, fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1]), run)


def test_non_finite_losses_are_skipped_then_rolled_back(faceset_pair, tmp_path, monkeypatch):
    t = _trainer(faceset_pair, tmp_path / "run", steps=12, nan_patience=2, nan_lr_factor=0.25)
    t.train(tensorboard=False)  # a good checkpoint at step 12 to roll back to
    t.cfg.steps = 20
    good = {k: v.clone() for k, v in t.model.state_dict().items()}
    real = t.losses

    def poisoned(a, b):
        loss, parts = real(a, b)
        return loss * float("nan"), parts

    monkeypatch.setattr(t, "losses", poisoned)
    out1 = t.train_step()
    assert out1.get("skipped") == 1.0 and t.nan_streak == 1
    t.train_step()  # second in a row: roll back
    assert t.lr_scale == 0.25 and t.step == 12
    assert any("rollback" in e for e in t.events)
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, good[k])


def test_run_folder_has_checkpoints_previews_metrics_and_logs(faceset_pair, tmp_path):
    t = _trainer(faceset_pair, tmp_path / "run", steps=6, keep_last=1)
    summary = t.train(tensorboard=True)
    run = tmp_path / "run"
    assert [p.name for p in ck.list_checkpoints(run)] == ["step-00000006"]
    assert (run / "checkpoints" / "best" / "model.safetensors").is_file()
    assert (run / "config.yaml").is_file() and (run / "preview.png").is_file()
    assert len(list((run / "previews").glob("*.png"))) == 2
    assert any((run / "logs").iterdir())
    assert (run / "metrics.jsonl").read_text().count("\n") == 2
    import cv2

    grid = cv2.imread(str(run / "preview.png"))
    assert grid.shape[1] == 6 * 64  # A, A->A, A->B, B, B->B, B->A
    assert summary.parameters > 0 and summary.flops_per_sample > 0
    assert math.isfinite(summary.val_loss["a"]) and summary.best_step is not None


def test_loss_clearly_falls_on_real_faces(faceset_pair, tmp_path):
    t = _trainer(faceset_pair, tmp_path / "run", steps=40, val_every=40, save_every=40,
                 preview_every=40, batch_size=8,
                 schedule={"name": "constant", "lr": 1e-3, "warmup_steps": 0})  # fmt: skip
    before = t.validate()
    t.train(tensorboard=False)
    after = t.validate()
    for side in ("a", "b"):
        assert after[side] < 0.75 * before[side], (before, after)


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_json_and_resume(capsys, faceset_pair, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({**TINY, "steps": 3}))
    a, b = map(str, faceset_pair)
    run = str(tmp_path / "run")
    code, out, err = _cli(capsys, "train", "-A", a, "-B", b, "-o", run, "--config", str(cfg),
                          "--no-tensorboard", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["step"] == 3
    code, out, err = _cli(capsys, "train", "-A", a, "-B", b, "-o", run, "--resume", "--steps", "5",
                          "--no-tensorboard", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["start_step"] == 3 and json.loads(out)["step"] == 5


@pytest.mark.parametrize(
    "case, words",
    [
        ("mismatched", "face sets differ"),
        ("batch", "fewer than a batch"),
        ("unknown-key", "unknown key"),
        ("exists", "--resume"),
        ("other-model", "another model"),
        ("nothing-to-resume", "nothing to resume"),
    ],
)
def test_bad_train_input(capsys, faceset_pair, tmp_path, case, words):
    import yaml

    a, b = map(str, faceset_pair)
    run = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "steps": 2}))
    argv = ["train", "-A", a, "-B", b, "-o", str(run), "--config", str(cfg), "--no-tensorboard"]
    if case == "mismatched":
        other = tmp_path / "other"
        fsmod.create(other, 128, "face", "png")
        fs = fsmod.load(other)
        src = fsmod.load(b)
        fs.sources, fs.faces = src.sources, src.faces[:1]
        fs.save()
        argv[4] = str(other)
    elif case == "batch":
        argv += ["--batch-size", "500"]
    elif case == "unknown-key":
        cfg.write_text("steps: 2\nlearning_rate: 0.1\n")
    elif case in ("exists", "other-model"):
        assert main(argv) == 0
        capsys.readouterr()
        if case == "other-model":
            argv += ["--resume", "--model", "lightweight"]
    elif case == "nothing-to-resume":
        argv += ["--resume"]
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} if run.exists() else {}
    code, _, err = _cli(capsys, *argv)
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and words in lines[0], err
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} if run.exists() else {}
    assert after == before


def test_shipped_train_presets_load(monkeypatch):
    """Every configs/train file loads; cpu-small.yaml holds what `faceswap train` builds on a
    CPU with no options (its header says so)."""
    from faceswap.cli import build_parser
    from faceswap.cli.train import _train_config
    from faceswap.config import load_yaml
    from faceswap.train import trainer
    from faceswap.train.config import TrainConfig, train_config_from

    presets = sorted((Path(__file__).resolve().parents[1] / "configs" / "train").glob("*.yaml"))
    assert presets
    loaded = {p.name: train_config_from(load_yaml(p), str(p)) for p in presets}
    assert all(isinstance(cfg, TrainConfig) for cfg in loaded.values())
    monkeypatch.setattr(trainer, "pick_device", lambda _: torch.device("cpu"))
    default = _train_config(build_parser().parse_args(["train", "-A", "a", "-B", "b", "-o", "r"]))
    small = loaded["cpu-small.yaml"]
    assert (small.model, small.schedule.lr, small.batch_size, small.augment) == (
        default.model, default.schedule.lr, default.batch_size, default.augment)  # fmt: skip


def test_lr_find_writes_plot_and_suggestion(capsys, faceset_pair, tmp_path):
    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    a, b = map(str, faceset_pair)
    code, out, err = _cli(capsys, "lr-find", "-A", a, "-B", b, "-o", str(tmp_path / "lr"),
                          "--config", str(cfg), "--steps", "12", "--min-lr", "1e-5",
                          "--max-lr", "1", "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert (tmp_path / "lr" / "lr_find.png").stat().st_size > 1000
    assert len(data["lrs"]) == len(data["losses"]) >= 3
    assert data["suggested"] is None or 1e-5 <= data["suggested"] <= 1
    code, _, err = _cli(capsys, "lr-find", "-A", a, "-B", b, "-o", str(tmp_path / "lr2"),
                        "--min-lr", "1", "--max-lr", "0.1")  # fmt: skip
    assert code == 2 and "--min-lr" in err


def test_budget_ends_the_run_with_the_lr_at_its_floor(faceset_pair, tmp_path, capsys):
    """--budget: the run stops when its time is spent, with a final checkpoint, and the
    schedule was laid over the steps that time held: the LR ends near its floor, not at its
    peak as a fixed-length cosine would leave it. (The CPU clock: as many steps on a loaded
    machine as on a quiet one.)"""
    run = tmp_path / "run"
    sched = {"name": "cosine", "lr": 1e-3}  # total and warmup automatic
    code = main(["train", "-A", str(faceset_pair[0]), "-B", str(faceset_pair[1]), "-o", str(run),
                 "--config", _yaml(tmp_path, schedule=sched, save_every=10_000, val_every=10_000,
                                   preview_every=10_000, budget_clock="cpu"), "--budget", "8s",
                 "--no-tensorboard", "--json"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    # calibration done and at least one step under its estimate (a slow CI machine fits ~16
    # steps of this model in 8 CPU-seconds, previews and checkpoints included)
    assert summary["step"] > 2 + CALIBRATE
    latest = ck.latest_checkpoint(run)
    state = json.loads((latest / "state.json").read_text())
    assert state["step"] == summary["step"]  # the final save
    budget, schedule = state["budget"], state["schedule"]
    # it ends at the budget, or a little before where the estimated steps are done
    assert 4.0 <= budget["spent"] < 14.0 and budget["estimates"] >= 1
    # the estimate was within a factor of 2 of what the time held
    assert 0.5 < schedule["total_steps"] / summary["step"] < 2.0
    from faceswap.config import from_dict as fd
    from faceswap.train.schedules import ScheduleConfig, lr_at

    last_lr = lr_at(fd(ScheduleConfig, schedule, "s"), summary["step"] - 1)
    assert last_lr < 0.5 * sched["lr"]
    for bad in ("0s", "soon"):
        assert main(["train", "-A", str(faceset_pair[0]), "-B", str(faceset_pair[1]), "-o",
                     str(tmp_path / "x"), "--budget", bad]) == 2  # fmt: skip
        assert "--budget" in capsys.readouterr().err


def _yaml(tmp_path: Path, **over) -> str:
    import yaml

    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**TINY, **over}))
    return str(path)


def test_warps_stop_at_warp_until_and_resume_the_same(faceset_pair, tmp_path):
    aug = {**TINY.get("augment", {}), "warp_until": 0.25}  # tiny schedule: 12 steps -> step 3
    straight = _trainer(faceset_pair, tmp_path / "straight", steps=6, augment=aug)
    straight.train(tensorboard=False)
    assert not straight.train_sets["a"].augment.random_warp
    first = _trainer(faceset_pair, tmp_path / "split", steps=2, augment=aug)
    first.train(tensorboard=False)
    assert first.train_sets["a"].augment.random_warp  # not there yet
    cfg = open_run(tmp_path / "split", _cfg(steps=6, augment=aug), resume=True)
    resumed = Trainer(cfg, fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1]),
                      tmp_path / "split")  # fmt: skip
    resumed.restore(ck.latest_checkpoint(tmp_path / "split"))
    resumed.train(tensorboard=False)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_yaw_balanced_training_runs(faceset_pair, tmp_path):
    t = _trainer(faceset_pair, tmp_path / "run", steps=2, balance_yaw=True)
    assert t.streams["a"].weights is not None and t.streams["b"].weights is not None
    assert t.train(tensorboard=False).step == 2


def test_time_based_cadence_previews_and_validates_by_the_clock(faceset_pair, tmp_path):
    """Step intervals far away, minutes tiny: previews and validations come by the clock."""
    t = _trainer(faceset_pair, tmp_path / "run", steps=3, val_every=1000, preview_every=1000,
                 save_every=1000, preview_minutes=1e-9, val_minutes=1e-9, save_minutes=0)  # fmt: skip
    t.train(tensorboard=False)
    run = tmp_path / "run"
    assert len(list((run / "previews").glob("*.png"))) == 3
    assert (run / "metrics.jsonl").read_text().count("\n") == 3
    # checkpoints: by steps only (save_minutes 0): the run's end and new bests only
    assert "step-00000003" in [p.name for p in ck.list_checkpoints(run)]


def test_a_budget_spent_during_a_preview_still_ends_with_a_final_save(faceset_pair, tmp_path):
    """The clock runs out while step 3 writes its preview, after the step decided it was not
    the last: the run still ends with a checkpoint of its last step (once it ended at step 56
    with its last checkpoint at 51)."""
    t = _trainer(faceset_pair, tmp_path / "run", steps=50, val_every=1000, save_every=1000,
                 preview_every=3, val_minutes=0, save_minutes=0, preview_minutes=0)  # fmt: skip
    spent = []
    preview = t._save_preview

    def slow_preview():
        spent.append(t.step)  # the budget runs out while it draws
        return preview()

    t._save_preview = slow_preview
    t.finished = lambda: bool(spent)
    summary = t.train(tensorboard=False)
    assert summary.step == 4
    assert [p.name for p in ck.list_checkpoints(tmp_path / "run")] == ["step-00000004"]


def test_sigterm_saves_and_stops_like_ctrl_c(faceset_pair, tmp_path):
    import os
    import signal

    t = _trainer(faceset_pair, tmp_path / "run", steps=50, val_every=1000, save_every=1000,
                 preview_every=1000, val_minutes=0, save_minutes=0, preview_minutes=0)  # fmt: skip

    def progress(step, _d):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        t.train(progress, tensorboard=False)
    assert [p.name for p in ck.list_checkpoints(tmp_path / "run")] == ["step-00000002"]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_preview_has_labels_and_fixed_varied_faces(faceset_pair, tmp_path):
    t = _trainer(faceset_pair, tmp_path / "run", steps=1)
    picks = t.preview_faces("a", 4)
    assert len(set(picks)) == 4 and picks == t.preview_faces("a", 4)  # distinct, fixed
    # farthest-point over all of A's faces: further apart than four neighbouring val faces
    sets = {"val": t.val_sets["a"], "train": t.train_sets["a"]}

    def lm(key):
        return sets[key[0]].landmarks[key[1]].ravel()

    def spread(keys):
        return min(float(((lm(p) - lm(q)) ** 2).sum()) for p in keys for q in keys if p < q)

    assert spread(picks) > spread([("val", i) for i in range(4)])
    grid = t.preview()
    header = grid[: grid.shape[0] - 4 * 64]
    assert grid.shape[1] == 6 * 64 and 0 < header.shape[0] < 64
    # each column's title is drawn (bright text on the dark strip)
    for k in range(6):
        assert header[:, k * 64 : (k + 1) * 64].max() > 200


def test_cli_interrupt_names_resume_and_resume_says_where(capsys, faceset_pair, tmp_path,
                                                          monkeypatch):  # fmt: skip
    import os
    import signal

    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "steps": 50, "save_every": 1000}))
    a, b = map(str, faceset_pair)
    run = str(tmp_path / "run")
    real_step = Trainer.train_step

    def step_then_term(self, lr=None):
        out = real_step(self, lr)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_term)
    code, _, err = _cli(capsys, "train", "-A", a, "-B", b, "-o", run, "--config", str(cfg),
                        "--no-tensorboard")  # fmt: skip
    assert code == 143, err
    assert "terminated (SIGTERM) at step 2" in err and "step-00000002" in err
    assert f"resume with: faceswap train -A {a} -B {b} -o {run} --resume" in err
    monkeypatch.setattr(Trainer, "train_step", real_step)
    code, _, err = _cli(capsys, "train", "-A", a, "-B", b, "-o", run, "--resume", "--steps", "3",
                        "--no-tensorboard")  # fmt: skip
    assert code == 0, err
    assert "resuming" in err and "at step 2 from" in err and "step-00000002" in err
    assert "ago)" in err


@pytest.mark.parametrize(
    ("device", "argv", "model", "lr", "batch"),
    [
        ("cpu", [], "lightweight-128", 8e-4, 4),
        ("cuda", [], "liae-128", 4e-4, 8),  # the GPU default keeps its old LR and batch
        ("cuda", ["--lr", "1e-3", "--batch-size", "16"], "liae-128", 1e-3, 16),
        ("cpu", ["--model", "original"], "original", 8e-4, 4),
    ],
)
def test_the_default_model_comes_with_its_lr_and_batch(monkeypatch, device, argv, model, lr,
                                                       batch):  # fmt: skip
    """Without a model named, train builds the device's default preset with its peak LR and
    batch (presets.DEFAULT_PRESET, DEFAULT_LR, DEFAULT_BATCH); given values always win."""
    from faceswap.cli import build_parser
    from faceswap.cli.train import _train_config
    from faceswap.models import model_config_from
    from faceswap.train import trainer

    monkeypatch.setattr(trainer, "pick_device", lambda _: torch.device(device))
    args = build_parser().parse_args(["train", "-A", "a", "-B", "b", "-o", "r", *argv])
    cfg = _train_config(args)
    assert cfg.model == model_config_from(model, {}) and cfg.schedule.lr == pytest.approx(lr)
    assert cfg.batch_size == batch


def test_train_help_names_the_default_models(capsys):
    from faceswap.models.presets import DEFAULT_PRESET

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{DEFAULT_PRESET['cpu']} on a CPU, {DEFAULT_PRESET['cuda']} on CUDA" in text


def _saturate(decoder) -> None:
    with torch.no_grad():
        decoder.rgb.bias.copy_(torch.tensor([60.0, -60.0, -60.0]))  # red, whatever comes in


def test_a_collapsed_decoder_rolls_back_to_the_last_validation_that_drew_faces(
    faceset_pair, tmp_path
):
    """A collapse rolls the weights and optimizer back to the last healthy validation's and
    halves the LR; the step count goes on, and training continues from the restored weights."""
    t = _trainer(faceset_pair, tmp_path / "run")
    t.run_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        t.train_step()
    t._evaluate()  # healthy: step 2's weights are kept
    kept = {k: v.clone() for k, v in t.model.state_dict().items()}
    moments = {k: v.clone() for k, v in t.optimizer.state_dict()["state"][0].items()}
    for _ in range(2):
        t.train_step()
    _saturate(t.model.decoder_b)
    t._evaluate()
    said = [e for e in t.events if "rollback" in e]
    assert len(said) == 1, t.events
    assert "decoder B collapsed to one flat colour at step 4" in said[0]
    assert "back to step 2's" in said[0] and "LR x0.5" in said[0]
    assert t.lr_scale == 0.5 and t.step == 4 and t.flat == set()
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, kept[k]), k
    for k, v in t.optimizer.state_dict()["state"][0].items():
        assert torch.equal(v, moments[k]), k
    assert t.healthy is not None and t.healthy[0] == 2  # kept: a new collapse goes back there
    assert math.isfinite(t.train_step()["loss"])  # the fused AdamW takes the restored state
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(
        lr_at(t.schedule, 4, t.plateau.scale) * 0.5
    )


def test_a_collapse_at_the_start_of_training_goes_back_to_the_initial_weights(
    faceset_pair, tmp_path, monkeypatch
):
    """No validation yet: the start's weights are the ones kept, so a collapse within the first
    validation interval still has somewhere to go."""
    t = _trainer(faceset_pair, tmp_path / "run", steps=3)
    start = {k: v.clone() for k, v in t.model.state_dict().items()}
    real_step = Trainer.train_step

    def step_then_collapse(self, lr=None):
        out = real_step(self, lr)
        _saturate(self.model.decoder_a)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_collapse)
    summary = t.train(tensorboard=False)
    said = [e for e in summary.events if "rollback" in e]
    assert said and all("decoder A collapsed" in e and "back to step 0's" in e for e in said)
    # the last step's validation rolled back too: the run ends on the start's weights
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, start[k]), k
    assert t.lr_scale == 0.5 ** len(said)


def test_a_decoder_that_collapses_to_a_flat_colour_is_said_once(faceset_pair, tmp_path):
    """Without the rollback (collapse_rollback: false), saturated sigmoids give a flat colour
    and a loss that stops moving; the run says so once (not at every evaluation), for that side
    only, and notes when it draws faces again."""
    t = _trainer(faceset_pair, tmp_path / "run", collapse_rollback=False)
    t.run_dir.mkdir(parents=True, exist_ok=True)  # train() makes it; _evaluate writes there
    rgb = t.model.decoder_b.rgb
    saved = rgb.bias.detach().clone()
    with torch.no_grad():
        rgb.bias.copy_(torch.tensor([60.0, -60.0, -60.0]))  # red, whatever comes in
    t._evaluate()
    t._evaluate()
    said = [e for e in t.events if "collapsed" in e]
    assert len(said) == 1 and "decoder B draws one flat colour" in said[0]
    assert t.flat == {"b"}
    with torch.no_grad():
        rgb.bias.copy_(saved)
    t._evaluate()
    assert t.flat == set() and len([e for e in t.events if "collapsed" in e]) == 1
