"""Helpers shared by tests (importable as `helpers`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


# A train config small enough for tests: 64 px, 8-wide SAE, batch 4, validation and saves
# every 3 steps. Dict form so tests can override fields before building the dataclass.
TINY_TRAIN = {
    "batch_size": 4,
    "val_fraction": 0.1,
    "val_every": 3,
    "save_every": 3,
    "preview_every": 3,
    "val_batches": 1,
    "model": {
        "arch": "sae",
        "resolution": 64,
        "encoder_dims": 8,
        "decoder_dims": 8,
        "bottleneck": 32,
    },  # fmt: skip
    "schedule": {"name": "cosine", "lr": 1e-3, "warmup_steps": 2, "total_steps": 12},
}


def tiny_train_config(**over):
    """TINY_TRAIN with top-level fields replaced, as a TrainConfig."""
    from faceswap.config import from_dict
    from faceswap.train.config import TrainConfig

    return from_dict(TrainConfig, {**TINY_TRAIN, **over}, "test")
