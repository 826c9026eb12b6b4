"""Shared fixtures: clips rendered from a real portrait, and face sets of the real clips in
../shared/data, made once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceswap.synthetic import render_clip

from helpers import shared_data

# The models in tests are tiny: one intra-op thread runs them as fast as two on a quiet
# machine and many times faster on a busy one (OpenMP threads spin waiting for a lost core).
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Derived-facts caches (FLOP counts) go to a temp folder, not the user's ~/.cache."""
    import os

    from faceswap.models.measure import CACHE_ENV

    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(autouse=True)
def _cli_logging_restored():
    """`faceswap.cli.main` points the "faceswap" logger at the sys.stderr of its call (capsys's
    stream in a test): put the logger back after each test, so a later test's library logs do
    not go to a closed stream ("--- Logging error ---")."""
    import logging

    logger = logging.getLogger("faceswap")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A command's `main` sets PyTorch's intra-op threads for its own process (bench_quality's
    sets every core): put the count back after each test. A leaked count changes the reduction
    order of every later test's convolutions, and a test that compares two trainings to 1e-4
    (torchrun against one process) then fails only when it runs after such a test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def astronaut_clip(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """A 640x360 clip, 24 frames, the astronaut's face moving, turning and scaling."""
    folder = tmp_path_factory.mktemp("clip")
    path = folder / "astronaut.mp4"
    mats = render_clip(path, 24, frame_size=(640, 360), base_scale=1.0, seed=3)
    return path, mats


@pytest.fixture(scope="session")
def extracted(tmp_path_factory, astronaut_clip):
    """The clip above, extracted once with the default CPU backends at 64 px."""
    from faceswap.config import ExtractConfig
    from faceswap.extract.pipeline import extract

    out = tmp_path_factory.mktemp("fs") / "set"
    cfg = ExtractConfig(size=64, workers=1)
    summary = extract([str(astronaut_clip[0])], out, cfg)
    return out, summary


@pytest.fixture(scope="session")
def faceset_pair(tmp_path_factory) -> tuple[Path, Path]:
    """Two face sets of two looks (the portrait and a recoloured copy), 120 frames each at
    64 px: enough for a train/validation split of whole blocks of frames."""
    from faceswap.config import ExtractConfig
    from faceswap.extract.pipeline import extract
    from faceswap.synthetic import astronaut, recolor_identity

    root = tmp_path_factory.mktemp("pair")
    out = []
    for name, face, seed in (("a", None, 1), ("b", recolor_identity(astronaut()), 2)):
        clip = root / f"{name}.mp4"
        render_clip(clip, 120, frame_size=(480, 270), base_scale=0.75, seed=seed, face_rgb=face)
        extract([str(clip)], root / name, ExtractConfig(size=64, embed=False, workers=1))
        out.append(root / name)
    return out[0], out[1]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, faceset_pair) -> Path:
    """A run folder with a tiny model trained 12 steps on `faceset_pair` (checkpoints, best,
    previews, metrics): what convert, evaluate and fit tests start from."""
    from faceswap import faceset as fsmod
    from faceswap.train.trainer import Trainer, open_run

    from helpers import tiny_train_config

    run = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = open_run(run, tiny_train_config(steps=12), resume=False)
    Trainer(cfg, fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1]), run).train(
        tensorboard=False
    )
    return run


# Face sets of the real clips (../shared/data): name -> (clip, [start, end) frames, every nth).
# d9 and d6 keep every frame of 100 (3.3 s): dedupe and the landmark-jump test need neighbours,
# and training needs two 2-second blocks for its validation split. The others are a few faces
# of two more people (planted outliers, other identities).
REAL_SETS = {
    "d9": ("liveportrait_d9.mp4", (100, 200), 1),  # a man with glasses, talking
    "d6": ("liveportrait_d6.mp4", (300, 400), 1),  # a woman, grimaces
    "face2": ("retalking_face2_man.mp4", (0, 125), 5),
    "face4": ("retalking_face4_woman.mp4", (0, 199), 8),
}


@pytest.fixture(scope="session")
def real_faceset(tmp_path_factory):
    """name in REAL_SETS -> the folder of that clip's face set (128 px, default CPU backends),
    extracted on first use and shared by every test of the session (~5 s a set). Tests read
    it; one that changes a set works on a copy. Skips when ../shared/data is absent."""
    from faceswap.config import ExtractConfig
    from faceswap.extract.pipeline import extract

    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            clip, (start, end), nth = REAL_SETS[name]
            path = shared_data("clips", clip)
            out = tmp_path_factory.mktemp(f"real-{name}") / name
            cfg = ExtractConfig(size=128, every_nth=nth, start_frame=start, end_frame=end,
                                workers=1)  # fmt: skip
            extract([str(path)], out, cfg)
            made[name] = out
        return made[name]

    return get
