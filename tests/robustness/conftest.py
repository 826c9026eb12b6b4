"""Fixtures of the robustness suite. The session fixtures of tests/conftest.py (astronaut_clip,
faceset_pair, tiny_run) are reused, not rebuilt; shared code is in robust.py."""

from __future__ import annotations

import pytest
import yaml

from helpers import TINY_TRAIN


@pytest.fixture(scope="session")
def robust_inputs(tmp_path_factory, astronaut_clip, faceset_pair, tiny_run) -> dict:
    """The context the JOBS build their command lines from: a 24-frame clip, the face-set pair,
    an extract config that saves the index after every chunk of 4 frames, and the TINY train
    config for 12 steps (saves every 3), the one `tiny_run` was trained with, and that run (the
    model convert uses)."""
    root = tmp_path_factory.mktemp("robust")
    ex = root / "extract.yaml"
    ex.write_text(yaml.safe_dump({"save_every": 0.01, "chunk": 4}))
    tr = root / "train.yaml"
    tr.write_text(yaml.safe_dump({**TINY_TRAIN, "steps": 12}))
    return {"clip": astronaut_clip[0], "faceset_pair": faceset_pair, "extract_yaml": ex,
            "train_yaml": tr, "run": tiny_run}  # fmt: skip
