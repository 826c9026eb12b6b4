"""The demo keeps to one wall-clock budget: the stages so far are spent, the ones after training
reserved from the target's extraction time, and training gets the rest at the measured step
time (plan_budget, a pure function), within a floor and a cap; it says what it cut."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from faceswap.cli.demo import _budget_words
from faceswap.demo.run import (
    PROFILES,
    SWAPPED,
    fit_steps_for,
    measure_step_seconds,
    plan_budget,
    plan_line,
    train_config,
)

CPU = PROFILES["cpu"]  # 8 minutes, 600 + 160 planned steps


def test_training_gets_what_the_other_stages_leave():
    # a quiet machine: 1 min of render + extraction, the target extracted in 10 s
    b = plan_budget(CPU, 60.0, 0.15, 10.0)
    assert b["reserved_seconds"] == {SWAPPED: 30.0, "convert, evaluate, report": 70.0}
    assert b["steps"] > 2 * CPU.steps and b["fit_steps"] > 2 * CPU.fit_steps
    assert b["estimated_minutes"] == pytest.approx(CPU.budget_minutes, rel=0.01)
    assert not b["floor"] and b["skipped"] == []
    # the same step time after slow extraction: fewer steps, the same total
    slow = plan_budget(CPU, 240.0, 0.15, 20.0)
    assert slow["steps"] < b["steps"] and slow["fit_steps"] < b["fit_steps"]
    assert slow["estimated_minutes"] == pytest.approx(CPU.budget_minutes, rel=0.01)
    # the training time is exactly what is left
    left = 60 * CPU.budget_minutes - 240.0 - sum(slow["reserved_seconds"].values())
    assert slow["training_seconds"] == pytest.approx(left, rel=0.01)


def test_training_keeps_its_share_of_the_time_itself():
    """The train stage gets a time budget (its planned steps' share), not a step count: the
    probe before training missed the pace by a fifth either way."""
    b = plan_budget(CPU, 60.0, 0.15, 10.0)
    share = CPU.steps / (CPU.steps + CPU.fit_steps)
    assert b["train_seconds"] == pytest.approx(share * b["training_seconds"], rel=0.01)
    data = train_config(replace(CPU, steps=b["steps"]), "cpu", budget_seconds=b["train_seconds"])
    assert data["budget"] == pytest.approx(b["train_seconds"], abs=0.1)
    assert data["steps"] == 2 * b["steps"]  # a cap: the time decides
    assert (data["schedule"]["total_steps"], data["schedule"]["warmup_steps"]) == (0, -1)
    from faceswap.train.config import train_config_from

    cfg = train_config_from(data, "train.yaml")  # what `faceswap train --config` reads
    assert cfg.budget == data["budget"] and cfg.budget_clock == "wall"
    # without a budget: the fixed plan, as before
    fixed = train_config(CPU, "cpu")
    assert "budget" not in fixed and fixed["schedule"]["total_steps"] == CPU.steps


def test_fit_gets_what_training_left_at_the_pace_it_kept():
    b = plan_budget(CPU, 60.0, 0.15, 10.0)
    # 60 s left at the 0.125 s a step training kept: 480 steps, within the cap of 4x 160
    assert fit_steps_for(b, 60.0, 0.125) == 480
    assert fit_steps_for(b, 900.0, 0.125) == 4 * CPU.fit_steps  # the cap
    assert fit_steps_for(b, -30.0, 0.125) == 16  # training ran over: the floor, 10%
    assert fit_steps_for(b, 90.0, float("nan")) == b["fit_steps"]  # no pace: the plan's
    off = plan_budget(replace(CPU, budget_minutes=0.0), 60.0, 0.15, 10.0)
    assert fit_steps_for(off, 90.0, 0.125) == CPU.fit_steps


def test_very_fast_machine_stops_at_the_cap():
    top = plan_budget(CPU, 30.0, 0.001, 5.0)
    assert (top["steps"], top["fit_steps"]) == (4 * CPU.steps, 4 * CPU.fit_steps)
    assert top["estimated_minutes"] < CPU.budget_minutes  # done early rather than overtrained


@pytest.mark.parametrize("step_seconds", [1.0, 1.5])
def test_loaded_machine_gets_fewer_steps_within_the_budget(step_seconds):
    b = plan_budget(CPU, 120.0, step_seconds, 20.0)
    assert b["steps"] < CPU.steps and b["fit_steps"] < CPU.fit_steps
    assert b["estimated_minutes"] == pytest.approx(CPU.budget_minutes, rel=0.01)
    # both cut by one factor
    assert b["steps"] / CPU.steps == pytest.approx(b["fit_steps"] / CPU.fit_steps, abs=0.02)
    assert "cut from 600 and 160" in plan_line(b)


def test_short_budget_cuts_the_optional_stage_before_the_floor():
    # at 1.5 s a step the plan (1.15 x 760 steps) takes 1311 s and its floor 131 s; a target
    # extracted in 20 s reserves 60 s for the swapped clip's extraction and 140 s for the rest
    room = plan_budget(CPU, 100.0, 1.5, 20.0)  # 180 s left: nothing cut
    assert room["skipped"] == [] and not room["floor"]
    cut = plan_budget(CPU, 190.0, 1.5, 20.0)  # 90 s left, 150 s without the swapped clip
    assert cut["skipped"] == [SWAPPED] and SWAPPED not in cut["reserved_seconds"]
    assert not cut["floor"] and cut["steps"] == round(600 * 150 / (1.5 * 1.15 * 760))
    assert "cut: extract swapped" in plan_line(cut)
    floor = plan_budget(CPU, 300.0, 1.5, 20.0)  # short even so: the floor
    assert floor["skipped"] == [SWAPPED] and floor["floor"]
    assert floor["steps"] == round(0.1 * CPU.steps) == 60 and "floor of 10%" in plan_line(floor)
    # the stages so far alone take longer than the budget: the floor still trains, and the
    # estimate says the demo will run over
    over = plan_budget(CPU, 600.0, 1.5, 20.0)
    assert over["steps"] == 60 and over["estimated_minutes"] > CPU.budget_minutes


def test_no_budget_runs_the_plan():
    off = plan_budget(replace(CPU, budget_minutes=0.0), 600.0, 60.0, 60.0)
    assert (off["steps"], off["fit_steps"]) == (CPU.steps, CPU.fit_steps)
    assert off["skipped"] == [] and not off["floor"]
    assert "as planned" in plan_line(off)
    with pytest.raises(ValueError):
        replace(CPU, budget_minutes=-1.0)


def test_summary_says_what_the_budget_did():
    b = plan_budget(CPU, 300.0, 1.5, 60.0)
    seconds = {"train": 150.0, "fit": 40.0, "total": 600.0}
    words = _budget_words({**b, "took_minutes": 10.0}, seconds)
    assert "training 600 -> 60 steps, fit 160 -> 16 at 1.50 s a step (the floor" in words
    assert "cut: extract swapped" in words
    assert "over the budget by 120 s: the stages other than training and fit took 410 s" in words
    quiet = plan_budget(CPU, 60.0, 0.15, 10.0)
    words = _budget_words({**quiet, "took_minutes": 7.5}, {"total": 450.0})
    assert "over" not in words and "cut" not in words
    # after training, the pace it kept (not the probe's)
    kept = {**quiet, "steps": 2500, "fit_steps": 700, "pace_seconds": 0.125}
    assert "at 0.12 s a step" in _budget_words(kept, {"total": 470.0})


def test_measured_step_time_is_real(faceset_pair, tmp_path):
    a, b = faceset_pair
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "a").symlink_to(a)
    (faces / "b").symlink_to(b)
    cfg = PROFILES["quick"]
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train_config(cfg, "cpu")))
    seconds = measure_step_seconds(faces, tmp_path / "train.yaml", cfg.model, probe=2)
    assert 0 < seconds < 30


def test_budget_option(tmp_path, capsys, monkeypatch):
    from faceswap.cli import main
    from faceswap.demo import run
    from faceswap.errors import BadInput

    assert main(["demo", "-o", str(tmp_path / "d"), "--budget", "soon"]) == 2
    err = capsys.readouterr().err
    assert "--budget: 'soon' is not a duration" in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()
    seen = []

    def record(out, profile, overwrite, budget_minutes):
        seen.append(budget_minutes)
        raise BadInput("recorded")

    monkeypatch.setattr(run, "run_demo", record)
    assert main(["demo", "-o", str(tmp_path / "d"), "--budget", "15m"]) == 2
    assert seen == [15.0]


def test_the_preview_pastes_at_the_reach_the_convert_chose(tmp_path):
    from faceswap.demo.run import _reach_of

    video = tmp_path / "target.mp4"
    assert _reach_of(video) == []  # no label: convert's own default
    label = tmp_path / "target.mp4.provenance.json"
    label.write_text('{"settings": {"forehead": 0.3, "forehead_auto": true}}')
    assert _reach_of(video) == ["--forehead", "0.3"]
    label.write_text('{"settings": {}}')
    assert _reach_of(video) == []
