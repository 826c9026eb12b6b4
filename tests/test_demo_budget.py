"""The demo adapts its training steps to the measured step time and states the budget."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from faceswap.demo.run import PROFILES, adapt_steps, measure_step_seconds, train_config


def test_fast_machine_fills_the_budget():
    cfg = PROFILES["cpu"]
    b = adapt_steps(cfg, 0.2)  # 380 steps x 0.2 s x 1.15 = 1.5 min: room for 2.7x as many
    assert b["steps"] > 2 * cfg.steps and b["fit_steps"] > 2 * cfg.fit_steps
    assert b["estimated_minutes"] == pytest.approx(cfg.budget_minutes, rel=0.02)
    top = adapt_steps(cfg, 0.001)  # a very fast machine: at most 4x the plan
    assert (top["steps"], top["fit_steps"]) == (4 * cfg.steps, 4 * cfg.fit_steps)


@pytest.mark.parametrize("step_seconds", [1.5, 3.0])
def test_loaded_machine_gets_fewer_steps_within_the_budget(step_seconds):
    cfg = PROFILES["cpu"]
    b = adapt_steps(cfg, step_seconds)
    assert b["steps"] < cfg.steps and b["fit_steps"] < cfg.fit_steps
    assert b["estimated_minutes"] == pytest.approx(cfg.budget_minutes, rel=0.02)
    # both cut by one factor
    assert b["steps"] / cfg.steps == pytest.approx(b["fit_steps"] / cfg.fit_steps, abs=0.02)


def test_floor_and_off():
    cfg = PROFILES["cpu"]
    b = adapt_steps(cfg, 60.0)  # a minute a step: the floor, not zero
    assert b["steps"] == round(0.05 * cfg.steps) and b["fit_steps"] >= 1
    off = adapt_steps(replace(cfg, budget_minutes=0.0), 60.0)
    assert off["steps"] == cfg.steps
    with pytest.raises(ValueError):
        replace(cfg, budget_minutes=-1.0)


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
