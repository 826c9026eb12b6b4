"""scripts/bench_quality.py's own plumbing: the warm start (`--init-from`) and its bad input.
The benchmark itself runs for an hour on real clips and is recorded in docs/quality.md."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_quality", ROOT / "scripts/bench_quality.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("bench_quality", None)


def test_a_missing_base_is_one_line_and_exit_2(bench, tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    assert bench.main(["--init-from", str(missing), "--work", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0]
    assert not (tmp_path / "w").exists()  # nothing extracted or trained


def test_bad_init_parts_are_one_line_and_exit_2(bench, tiny_run, tmp_path, capsys):
    for argv, says in (
        (["--init-from", str(tiny_run), "--init-parts", "encoder,nose"], "--init-parts"),
        (["--init-parts", "encoder"], "--init-from"),
    ):
        assert bench.main([*argv, "--work", str(tmp_path / "w")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "w").exists()


def test_a_warm_start_loads_every_part_and_records_its_base(
    bench, faceset_pair, tiny_run, tmp_path
):
    import torch

    from faceswap import faceset as fsmod
    from faceswap.train import checkpoint as ck

    from helpers import tiny_train_config

    cfg = tiny_train_config(steps=12)
    cfg.schedule.lr = 1e-12  # next to nothing moves: the mark holds the base's weights
    fs_a, fs_b = fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1])
    marks = bench.train_with_marks(fs_a, fs_b, tmp_path / "run", cfg, [0.5], base=str(tiny_run))
    mark = marks[0.5]["checkpoint"]
    got, state = ck.load_model_weights(mark)
    want, _ = ck.load_model_weights(ck.resolve_checkpoint(tiny_run))
    assert state["lineage"]["kind"] == "init"
    assert state["lineage"]["mismatched"] == 0 and state["lineage"]["loaded"] == len(want)
    assert Path(state["lineage"]["source_run"]) == tiny_run.resolve()
    for name, tensor in want.items():
        if "running" in name or "num_batches" in name:
            continue  # normalisation statistics follow the batches whatever the LR
        assert torch.allclose(got[name], tensor, atol=1e-6), name


def test_a_warm_start_of_named_parts_leaves_the_others_fresh(
    bench, faceset_pair, tiny_run, tmp_path
):
    from faceswap import faceset as fsmod
    from faceswap.train import checkpoint as ck

    from helpers import tiny_train_config

    cfg = tiny_train_config(steps=12)
    fs_a, fs_b = fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1])
    marks = bench.train_with_marks(
        fs_a, fs_b, tmp_path / "run", cfg, [0.5], base=str(tiny_run), parts=("encoder",)
    )
    _, state = ck.load_model_weights(marks[0.5]["checkpoint"])
    assert state["lineage"]["parts"] == ["encoder"]


def test_the_bench_defaults_are_what_train_builds_with_no_options(bench, monkeypatch):
    """`--tag defaults` with no config means the model, LR and batch `faceswap train` picks on
    this device; a model named in --set or a config keeps the TrainConfig defaults around it."""
    import torch

    from faceswap.cli import build_parser
    from faceswap.cli.train import _train_config
    from faceswap.train import trainer

    for device in ("cpu", "cuda"):
        monkeypatch.setattr(trainer, "pick_device", lambda _, d=device: torch.device(d))
        cli = _train_config(build_parser().parse_args(["train", "-A", "a", "-B", "b", "-o", "r"]))
        ours = bench.train_config(None, [])
        assert (ours.model, ours.schedule.lr, ours.batch_size) == (
            cli.model, cli.schedule.lr, cli.batch_size)  # fmt: skip
    named = bench.train_config(None, ["model.arch=lightweight", "model.resolution=64"])
    assert named.model.resolution == 64 and named.batch_size == 4


def test_a_config_names_its_model_by_preset(bench, faceset_pair, tmp_path, capsys):
    """`model: lightweight-128` in a train config (or `--set model=...`) is that preset, as
    `--model` takes it, with no device defaults laid over; an unknown name is one line naming
    the file, exit 2, and no run folder."""
    from faceswap.cli import build_parser, main
    from faceswap.cli.train import _train_config
    from faceswap.models import load_preset

    good = tmp_path / "l128.yaml"
    good.write_text("model: lightweight-128\nschedule: {lr: 0.0005}\n")
    argv = ["train", "-A", "a", "-B", "b", "-o", "r", "--config", str(good)]
    cfg = _train_config(build_parser().parse_args(argv))
    assert cfg.model == load_preset("lightweight-128") and cfg.schedule.lr == 5e-4
    assert bench.train_config(None, ["model=lightweight-128"]).model == cfg.model
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: lightweight-96\n")
    run = tmp_path / "run"
    code = main(["train", "-A", str(faceset_pair[0]), "-B", str(faceset_pair[1]), "-o",
                 str(run), "--config", str(bad)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(bad) in err[0] and "lightweight-96" in err[0], err
    assert not run.exists()
