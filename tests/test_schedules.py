"""LR schedules (pure functions of the step), reduce-on-plateau, the overfitting monitor and the
LR range test."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from faceswap.config import from_dict
from faceswap.errors import BadInput
from faceswap.train.lr_find import lr_range, plot_lr_find, run_lr_find, suggest_lr
from faceswap.train.monitor import (
    MonitorState,
    event_kind,
    flat_output,
    generalization_gap,
    generalization_ratio,
    monitor_update,
)
from faceswap.train.schedules import PlateauState, ScheduleConfig, lr_at, plateau_update

LR = 1e-3


def _cfg(name: str, **kw) -> ScheduleConfig:
    base = {"lr": LR, "warmup_steps": 100, "total_steps": 1100, "min_lr_ratio": 0.01}
    base.update(kw)
    return ScheduleConfig(name=name, **base)


# --------------------------------------------------------------------------- schedules


def test_warmup_is_linear_from_zero():
    for name in ("constant", "cosine", "step", "plateau"):
        cfg = _cfg(name)
        assert lr_at(cfg, 0) == 0.0, name
        assert lr_at(cfg, 50) == pytest.approx(LR / 2), name
        assert lr_at(cfg, 100) == pytest.approx(LR), name


def test_constant():
    cfg = _cfg("constant", warmup_steps=0)
    assert {lr_at(cfg, s) for s in (0, 1, 500, 10**7)} == {LR}


def test_cosine_midpoint_and_end():
    cfg = _cfg("cosine")
    min_lr = LR * 0.01
    assert lr_at(cfg, 600) == pytest.approx((LR + min_lr) / 2)  # halfway through the decay
    assert lr_at(cfg, 1100) == pytest.approx(min_lr)
    assert lr_at(cfg, 5000) == pytest.approx(min_lr)
    values = [lr_at(cfg, s) for s in range(100, 1101, 10)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_step_decay_boundaries():
    cfg = _cfg("step", warmup_steps=0, step_every=300, step_gamma=0.5, min_lr_ratio=0.1)
    assert lr_at(cfg, 299) == pytest.approx(LR)
    assert lr_at(cfg, 300) == pytest.approx(LR / 2)
    assert lr_at(cfg, 599) == pytest.approx(LR / 2)
    assert lr_at(cfg, 600) == pytest.approx(LR / 4)
    assert lr_at(cfg, 900) == pytest.approx(LR / 8)
    assert lr_at(cfg, 1200) == pytest.approx(LR * 0.1)  # 1/16 is below the floor


def test_onecycle_start_peak_end():
    cfg = _cfg("onecycle", total_steps=1000, onecycle_pct=0.3, onecycle_div=25, warmup_steps=0)
    start = LR / 25
    assert lr_at(cfg, 0) == pytest.approx(start)
    assert lr_at(cfg, 300) == pytest.approx(LR)
    assert max(lr_at(cfg, s) for s in range(1000)) == pytest.approx(LR)
    assert lr_at(cfg, 150) == pytest.approx((start + LR) / 2)
    assert lr_at(cfg, 1000) == pytest.approx(start / 1e4)
    assert lr_at(cfg, 2000) == pytest.approx(start / 1e4)
    # onecycle has its own warmup: warmup_steps is ignored.
    assert lr_at(_cfg("onecycle", total_steps=1000), 0) == pytest.approx(start)


def test_plateau_schedule_uses_scale_others_ignore_it():
    assert lr_at(_cfg("plateau"), 500, plateau_scale=0.25) == pytest.approx(LR / 4)
    assert lr_at(_cfg("plateau"), 50, plateau_scale=0.25) == pytest.approx(LR / 2)  # warmup
    for name in ("constant", "cosine", "step", "onecycle"):
        assert lr_at(_cfg(name), 500, 0.25) == lr_at(_cfg(name), 500), name


def test_lr_at_is_pure():
    for name in ("constant", "cosine", "step", "onecycle", "plateau"):
        cfg = _cfg(name)
        steps = [0, 1, 99, 100, 101, 333, 600, 1099, 1100, 4000]
        forward = [lr_at(cfg, s) for s in steps]
        backward = [lr_at(cfg, s) for s in reversed(steps)][::-1]
        assert forward == backward, name  # order of calls does not matter: no hidden state
        assert cfg == _cfg(name)  # config untouched
    with pytest.raises(ValueError):
        lr_at(_cfg("cosine"), -1)


def test_schedule_config_validation():
    with pytest.raises(ValueError, match=r"unknown schedule 'linear'.*constant, cosine"):
        ScheduleConfig(name="linear")
    for bad in (
        {"lr": 0.0},
        {"warmup_steps": -2},
        {"total_steps": -1},
        {"warmup_steps": 100, "total_steps": 100},
        {"min_lr_ratio": 1.5},
        {"step_gamma": 0.0},
        {"onecycle_pct": 1.0},
        {"plateau_factor": 1.0},
        {"plateau_patience": 0},
    ):
        with pytest.raises(ValueError):
            ScheduleConfig(**bad)
    with pytest.raises(BadInput, match="schedule"):
        from_dict(ScheduleConfig, {"name": "exp"}, "train.yaml")
    assert from_dict(ScheduleConfig, {"name": "step", "lr": 1}, "x").lr == 1.0


# --------------------------------------------------------------------------- plateau


def _run_plateau(cfg, losses, state=None):
    state = state or PlateauState()
    scales = []
    for v in losses:
        state = plateau_update(cfg, state, v)
        scales.append(state.scale)
    return state, scales


def test_plateau_reduces_after_patience_bad_evals():
    cfg = _cfg("plateau", plateau_patience=3, plateau_factor=0.5, plateau_min_delta=0.0)
    state, scales = _run_plateau(cfg, [1.0, 0.9, 0.95, 0.95, 0.95, 0.96, 0.97, 0.98])
    # Bad evaluations 3, 4, 5 -> third bad one (index 4) halves; 6, 7, 8 -> halves again.
    assert scales == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert state.best == 0.9


def test_plateau_is_pure_and_serializable():
    cfg = _cfg("plateau")
    s0 = PlateauState()
    s1 = plateau_update(cfg, s0, 1.0)
    assert s0 == PlateauState() and s1 != s0
    assert plateau_update(cfg, s0, 1.0) == s1
    d = json.loads(json.dumps(s0.to_dict(), allow_nan=False))
    assert PlateauState.from_dict(d) == s0
    assert PlateauState.from_dict(json.loads(json.dumps(s1.to_dict()))) == s1


def test_plateau_min_delta():
    cfg = _cfg("plateau", plateau_patience=2, plateau_min_delta=0.01)
    # Improvements smaller than min_delta count as bad evaluations.
    state, scales = _run_plateau(cfg, [1.0, 0.995, 0.991])
    assert scales == [1, 1, 0.5] and state.best == 1.0
    state, scales = _run_plateau(cfg, [1.0, 0.98, 0.96])
    assert scales == [1, 1, 1] and state.best == 0.96


def test_plateau_cooldown_and_floor():
    cfg = _cfg("plateau", plateau_patience=1, plateau_cooldown=2, min_lr_ratio=0.2)
    state, scales = _run_plateau(cfg, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    # Reduce, 2 evaluations of cooldown (bad ones not counted), reduce again, ...
    assert scales == [1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    _, no_cooldown = _run_plateau(_cfg("plateau", plateau_patience=1), [1.0] * 4)
    assert no_cooldown == [1, 0.5, 0.25, 0.125]
    _, scales = _run_plateau(cfg, [1.0] * 20)
    assert min(scales) == pytest.approx(0.2)


# --------------------------------------------------------------------------- monitor


def test_overfitting_monitor_on_constructed_curve():
    k = 3
    val = [1.0, 0.8, 0.6, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9]
    train = [1.0, 0.8, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25]
    state = MonitorState()
    events = []
    for i, (t, v) in enumerate(zip(train, val)):
        step = (i + 1) * 100
        state, ev = monitor_update(state, step, t, v, k)
        events += [(step, e) for e in ev]
    over = [(s, e) for s, e in events if event_kind(e) == "overfitting"]
    assert len(over) == 1
    step, msg = over[0]
    assert step == 700  # the third rise in a row: 0.5 -> 0.55 -> 0.6 -> 0.7
    assert "0.5 -> 0.7" in msg and "0.5 -> 0.35" in msg and "3 evaluations" in msg
    best = [s for s, e in events if event_kind(e) == "best"]
    assert best == [100, 200, 300, 400]
    assert state.best_val == 0.5 and state.best_step == 400
    assert state.rising == 5  # the caller stops early on rising >= patience
    assert MonitorState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_monitor_no_overfitting_when_train_rises_too():
    state = MonitorState()
    seen = []
    for i, v in enumerate([0.5, 0.6, 0.7, 0.8, 0.9]):
        state, ev = monitor_update(state, i, v - 0.1, v, k=2)  # both rising: not overfitting
        seen += ev
    assert [event_kind(e) for e in seen] == ["best"]
    assert state.rising == 4


def test_flat_output_is_one_colour_on_every_face():
    import torch
    from skimage import data

    flat = torch.zeros(3, 3, 32, 32)
    flat[:, 0] = 1.0  # the red a collapsed decoder draws
    assert flat_output(flat)
    assert flat_output(flat * 0.995 + 0.004 * torch.rand(3, 3, 32, 32))  # a grey level off
    speckled = flat.clone()
    speckled[:, :, ::16, ::16] = 0.5  # a few stray pixels, as the collapsed run's preview had
    assert flat_output(speckled)
    face = torch.from_numpy(data.astronaut()[::8, ::8].copy()).permute(2, 0, 1).float() / 255
    assert not flat_output(face[None])
    assert not flat_output(torch.cat([flat[:2], face[None, :, :32, :32]]))  # one face drawn
    assert not flat_output(torch.rand(2, 3, 32, 32))
    assert not flat_output(torch.full((2, 3, 32, 32), 0.5))  # an untrained decoder's grey


def test_monitor_new_streak_warns_again():
    state = MonitorState()
    kinds = []
    vals = [0.5, 0.6, 0.7, 0.65, 0.7, 0.8]
    for i, v in enumerate(vals):
        state, ev = monitor_update(state, i, 1.0 - 0.1 * i, v, k=2)
        kinds += [event_kind(e) for e in ev]
    assert kinds.count("overfitting") == 2
    with pytest.raises(ValueError):
        monitor_update(MonitorState(), 0, 1.0, 1.0, k=0)
    assert MonitorState().to_dict()["best_val"] is None


def test_generalization_gap():
    assert generalization_gap(0.05, 0.08) == pytest.approx(0.03)
    assert generalization_ratio(0.05, 0.08) == pytest.approx(1.6)
    assert generalization_ratio(0.0, 0.1) == math.inf


# --------------------------------------------------------------------------- LR finder


def _u_curve(lr: float) -> float:
    """Flat, then a descent centred at 1e-4, a minimum near 1e-3, then a blow-up."""
    x = math.log10(lr)
    return 1.0 - 0.8 / (1 + math.exp(-3 * (x + 4))) + 0.05 * math.exp(2.5 * (x + 2.5))


def test_lr_range():
    lrs = lr_range(1e-6, 1e-1, 6)
    assert lrs == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    with pytest.raises(ValueError):
        lr_range(1e-3, 1e-4, 10)
    with pytest.raises(ValueError):
        lr_range(1e-4, 1e-3, 1)


def test_suggest_lr_on_u_curve():
    lrs = lr_range(1e-7, 1, 100)
    rng = np.random.default_rng(0)
    losses = [_u_curve(lr) * (1 + 0.01 * rng.standard_normal()) for lr in lrs]
    s = suggest_lr(lrs, losses)
    true_min = lrs[int(np.argmin([_u_curve(lr) for lr in lrs]))]
    assert 1e-5 < s["suggested"] < true_min  # in the descending region
    assert s["steepest"] == s["suggested"]
    # The EMA lags behind the raw curve, so only loose bounds on the smoothed minimum.
    assert 1e-5 < s["min_loss_lr"] < s["diverged_at"] / 10
    assert s["diverged_at"] is not None and s["diverged_at"] > true_min


def test_run_lr_find_stops_on_divergence_and_nan():
    calls = []

    def step(lr):
        calls.append(lr)
        return _u_curve(lr)

    lrs, losses = run_lr_find(step, 1e-7, 10.0, 120)
    assert len(lrs) == len(losses) == len(calls) < 120
    assert suggest_lr(lrs, losses)["diverged_at"] == lrs[-1]

    def nan_step(lr):
        return float("nan") if lr > 1e-3 else 1.0

    lrs, losses = run_lr_find(nan_step, 1e-6, 1e-1, 50)
    assert max(lrs) <= 1e-3 and all(math.isfinite(v) for v in losses)


def test_plot_writes_png(tmp_path):
    lrs = lr_range(1e-7, 1, 80)
    losses = [_u_curve(lr) for lr in lrs]
    suggestion = suggest_lr(lrs, losses)
    path = tmp_path / "lr_find.png"
    plot_lr_find(lrs, losses, suggestion, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_lr_find(lrs, losses, suggestion["suggested"], tmp_path / "b.png")
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_resolve_lays_the_schedule_over_the_run():
    from faceswap.train.schedules import resolve

    auto = ScheduleConfig()  # total 0 = the run's, warmup -1 = auto
    with pytest.raises(ValueError, match="resolve"):
        lr_at(auto, 0)
    short = resolve(auto, 400)
    assert (short.total_steps, short.warmup_steps) == (400, 12)  # 3% of the run
    assert resolve(auto, 100_000).warmup_steps == 300  # capped
    # the LR has reached its floor when the run ends, whatever its length
    for run in (50, 400, 20_000):
        r = resolve(auto, run)
        assert lr_at(r, run) == pytest.approx(r.lr * r.min_lr_ratio)
        assert lr_at(r, r.warmup_steps) == pytest.approx(r.lr)
    # explicit fields are kept
    fixed = resolve(ScheduleConfig(warmup_steps=7, total_steps=900), 400)
    assert (fixed.total_steps, fixed.warmup_steps) == (900, 7)


def test_parse_duration():
    from faceswap.train.budget import estimate_total, parse_duration

    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1.5h") == 5400
    assert parse_duration("120") == 120
    for bad in ("", "10 minutes", "0s", "h", "5x", "-3m"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert estimate_total(100, spent=60.0, budget=600.0, pace=2.0) == 370
