"""Time- and step-based training cadence (faceswap.train.cadence): pure functions."""

from __future__ import annotations

import pytest

from faceswap.train.cadence import Due, is_due, mark


def _run(d: Due, steps: int, step_seconds: float) -> list[int]:
    """Steps at which the task runs when each step takes step_seconds."""
    fired = []
    for step in range(d.last_step + 1, steps + 1):
        now = step * step_seconds
        if is_due(d, step, now):
            mark(d, step, now)
            fired.append(step)
    return fired


def test_slow_cpu_gets_time_based_feedback():
    """7 s a step, 250-step interval: by steps alone the first preview is at 29 minutes."""
    assert _run(Due(250, 0.0), 300, 7.0) == [250]
    fired = _run(Due(250, 90.0), 100, 7.0)
    assert fired[0] * 7.0 <= 120.0  # the first one inside 2 minutes
    assert fired == [13, 26, 39, 52, 65, 78, 91]  # every 13 steps = 91 s


def test_fast_gpu_keeps_its_fixed_steps():
    # 0.05 s a step: the step interval comes first, at the same multiples as before
    assert _run(Due(250, 90.0), 1000, 0.05) == [250, 500, 750, 1000]


def test_either_interval_restarts_both_and_multiples_survive_a_resume():
    d = Due(100, 60.0, last_step=230, last_time=0.0)  # a run resumed at step 230
    assert not is_due(d, 231, 10.0)
    assert is_due(d, 300, 10.0)  # crossed 300, a multiple of 100 as in the uninterrupted run
    assert is_due(d, 240, 61.0)  # or a minute passed
    mark(d, 240, 61.0)
    assert not is_due(d, 241, 100.0) and is_due(d, 241, 121.0)
    assert not is_due(d, 240, 1e9)  # never twice at one step


def test_off_and_bad_values():
    assert not is_due(Due(0, 0.0), 10_000, 1e9)  # both off: only the run's end saves
    with pytest.raises(ValueError):
        Due(-1, 0.0)
    with pytest.raises(ValueError):
        Due(10, -1.0)
