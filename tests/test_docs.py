"""The generated configuration reference matches the config dataclasses."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_current():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_config_docs.py"), "--check"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_configuration_reference_names_every_train_field():
    from faceswap.train.config import TrainConfig

    text = (ROOT / "docs" / "configuration.md").read_text()
    for f in dataclasses.fields(TrainConfig):
        assert f"| `{f.name}` |" in text
