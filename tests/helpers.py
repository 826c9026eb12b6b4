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
    # fp32 whatever the CPU: `auto` picks bf16 on one with native bf16, and the tests' exact
    # comparisons (resume, DDP against one process) must not depend on the machine.
    "precision": "fp32",
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


def tiny_trainer(a: Path, b: Path, run: Path, **over):
    """A Trainer of tiny_train_config(**over) on the face sets in folders a and b, in a new
    run folder."""
    from faceswap import faceset as fsmod
    from faceswap.train.trainer import Trainer, open_run

    cfg = open_run(run, tiny_train_config(**over), resume=False)
    return Trainer(cfg, fsmod.load(a), fsmod.load(b), run)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`faceswap ARGV` in this process: (exit code, stdout, stderr)."""
    from faceswap.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def face_landmarks(scale=200.0, angle=0.0, shift=(300.0, 200.0)):
    """A plausible 68-point face: the mean template for 17..67 plus a jaw arc, placed in a frame
    (scaled, rotated by `angle` degrees, centred at `shift`)."""
    import numpy as np

    from faceswap.extract import alignment as al

    pts = np.zeros((68, 2))
    pts[17:] = al.MEAN_FACE
    t = np.linspace(np.pi, 0, 17)
    pts[:17] = np.stack([0.49 + 0.5 * np.cos(t), 0.35 + 0.6 * np.sin(t)], 1)
    a = np.radians(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (pts - 0.5) @ rot.T * scale + shift


def read_frames(path):
    """Every frame of a video, decoded by OpenCV (BGR); [] when it cannot be opened."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return frames
            frames.append(frame)
    finally:
        cap.release()
