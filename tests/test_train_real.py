"""Training that talks, on real faces (../shared/data; skipped when absent): A is d9 (a man
talking), B is d6 (a woman grimacing), 100 frames each (conftest.REAL_SETS), a tiny model.

Each test is one point of the workflow a user meets: feedback by the clock, SIGTERM saves and
names the real resume command, a resume says where it is, the preview grid is labelled and
shows different faces, convert and evaluate warn about an untrained model, and the report's
coverage has A covering its own clip."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from faceswap import faceset as fsmod
from faceswap.cli.common import PROGRESS_ENV
from faceswap.train import checkpoint as ck
from faceswap.train.trainer import PREVIEW_COLUMNS, preview_header

from helpers import TINY_TRAIN, cli, shared_data, tiny_trainer

ROOT = Path(__file__).resolve().parents[1]
CELL = TINY_TRAIN["model"]["resolution"]


@pytest.fixture(scope="module")
def real_pair(real_faceset) -> tuple[Path, Path]:
    return real_faceset("d9"), real_faceset("d6")


@pytest.fixture(scope="module")
def real_run(real_pair, tmp_path_factory) -> Path:
    """A tiny model trained 3 steps on the real pair: far from trained."""
    run = tmp_path_factory.mktemp("real-run") / "run"
    tiny_trainer(*real_pair, run, steps=3).train(tensorboard=False)
    return run


def test_time_based_cadence_gives_early_preview_and_validation(real_pair, tmp_path):
    """A slow machine (every step made 0.2 s longer) and step intervals that never come: the
    clock (0.01 min = 0.6 s) brings previews and validation rows within a few steps."""
    run = tmp_path / "run"
    never = {"val_every": 1000, "preview_every": 1000, "save_every": 1000, "save_minutes": 0}
    t = tiny_trainer(*real_pair, run, steps=10, preview_minutes=0.01, val_minutes=0.01, **never)
    t.train(lambda step, _d: time.sleep(0.2), tensorboard=False)
    previews = sorted(int(p.stem.split("-")[1]) for p in (run / "previews").glob("step-*.png"))
    rows = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    # 0.6 s have passed by step 3 (each step takes > 0.2 s); by steps alone only the end, 10
    assert previews[0] <= 3 and rows[0] <= 3, (previews, rows)
    assert len(previews) >= 3 and len(rows) >= 3  # and again by the clock, then at the end
    assert previews[-1] == rows[-1] == 10


def _trained_steps(progress: Path) -> int:
    """The train bar's count in a FACESWAP_PROGRESS file (0 before the first line)."""
    try:
        lines = progress.read_text().splitlines()
    except OSError:
        return 0
    counts = [json.loads(x)["n"] for x in lines if x.endswith("}") and '"train"' in x]
    return int(counts[-1]) if counts else 0


def test_sigterm_saves_names_resume_and_resume_says_where(real_pair, tmp_path, capsys,
                                                          monkeypatch):  # fmt: skip
    a, b = map(str, real_pair)
    run = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY_TRAIN, "steps": 100_000, "save_every": 100_000,
                                      "val_every": 100_000, "preview_every": 100_000,
                                      "save_minutes": 0, "val_minutes": 0,
                                      "preview_minutes": 0}))  # fmt: skip
    progress = tmp_path / "progress.jsonl"
    env = {**os.environ, PROGRESS_ENV: str(progress), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "faceswap", "train", "-A", a, "-B", b, "-o",
                             str(run), "--config", str(config), "--no-tensorboard"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    deadline = time.monotonic() + 120
    while _trained_steps(progress) < 2:  # a step or two in, nothing saved yet
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    assert ck.list_checkpoints(run) == []
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    # one line says what happened, what was saved and the command that resumes
    lines = [x for x in err.splitlines() if "resume with:" in x]
    assert len(lines) == 1 and lines[0] == err.splitlines()[-1], err
    m = re.fullmatch(r"faceswap train: terminated \(SIGTERM\) at step (\d+); saved (\S+); "
                     r"resume with: (.+)", lines[0])  # fmt: skip
    assert m, lines[0]
    step, saved, command = int(m[1]), Path(m[2]), shlex.split(m[3])
    assert step >= 2 and saved == run / "checkpoints" / f"step-{step:08d}"
    assert [p.name for p in ck.list_checkpoints(run)] == [saved.name]
    assert command == ["faceswap", "train", "-A", a, "-B", b, "-o", str(run), "--resume"]

    # that command (two more steps) resumes, saying the step, the checkpoint and its age; its
    # progress bar counts from the step
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path / "resume.jsonl"))
    code, _, err = cli(capsys, *command[1:], "--steps", str(step + 2), "--no-tensorboard")
    assert code == 0, err
    m = re.search(r"resuming (\S+) at step (\d+) from (\S+) \(written \d+ (s|min) ago\)", err)
    assert m and (m[1], int(m[2]), m[3]) == (str(run), step, str(saved)), err
    counts = [json.loads(x)["n"] for x in (tmp_path / "resume.jsonl").read_text().splitlines()]
    assert counts[0] == step and counts[-1] == step + 2, counts


def test_preview_is_labelled_and_rows_are_different_faces(real_pair, tmp_path):
    t = tiny_trainer(*real_pair, tmp_path / "run", steps=2)
    grid = t.preview()
    head = grid.shape[0] - 4 * CELL
    assert grid.shape[1] == len(PREVIEW_COLUMNS) * CELL and 0 < head < CELL
    assert np.array_equal(grid[:head], preview_header(CELL))
    for k in range(len(PREVIEW_COLUMNS)):  # every column's title is drawn (light on dark)
        assert grid[:head, k * CELL : (k + 1) * CELL].max() > 200

    def inputs(g: np.ndarray, col: int) -> list[np.ndarray]:
        return [g[head + r * CELL : head + (r + 1) * CELL, col * CELL : (col + 1) * CELL]
                .astype(np.float64) for r in range(4)]  # fmt: skip

    def spread(faces) -> float:
        """The mean absolute pixel difference of the two most alike of the faces."""
        return min(np.abs(p - q).mean() for i, p in enumerate(faces) for q in faces[i + 1 :])

    for col, side in ((0, "a"), (3, "b")):  # the A and B input columns
        # against four neighbouring frames of the same clip (what a held-out block shows):
        # each row is a different face, not the next frame of one
        faces = t.train_sets[side].images.astype(np.float64)  # (N, R, R, 3) in frame order
        near = np.median([spread(faces[i : i + 4]) for i in range(len(faces) - 3)])
        assert spread(inputs(grid, col)) > 2 * near, (side, spread(inputs(grid, col)), near)
    t.train(tensorboard=False)  # the same faces after training: progress is comparable
    after = t.preview()
    for col in (0, 3):
        assert all(np.array_equal(p, q) for p, q in zip(inputs(grid, col), inputs(after, col)))


@pytest.mark.parametrize("command", ["convert", "evaluate"])
def test_untrained_model_is_called_far_from_trained(real_run, real_pair, tmp_path, capsys,
                                                    command):  # fmt: skip
    run = Path(shutil.copytree(real_run, tmp_path / "run"))
    a, b = real_pair
    if command == "convert":
        clip = shared_data("clips", "liveportrait_d9.mp4")
        argv = ["convert", clip, "-m", run, "--alignments", a, "-o", tmp_path / "check.png",
                "--preview", "2", "--frames", "100-200"]  # fmt: skip
    else:
        argv = ["evaluate", "-m", run, "-A", a, "-B", b, "--max-faces", "4", "--no-tensorboard"]
    code, _, err = cli(capsys, *argv)
    assert code == 0, err
    warned = [x for x in err.splitlines() if "far from trained" in x]
    assert len(warned) == 1 and f"{run}: the model is far from trained: 3 steps" in warned[0], err


def test_report_coverage_of_a_own_clip(real_faceset, tmp_path, capsys):
    """The target is A's own clip (all 100 frames of d9); A was curated to every other face:
    A covers the target (its own faces, and their neighbours in pose), ~0% uncovered."""
    target, b = real_faceset("d9"), real_faceset("d6")
    a = Path(shutil.copytree(target, tmp_path / "a"))
    fs = fsmod.load(a)
    fs.faces = fs.faces[::2]
    fs.save()
    code, out, err = cli(capsys, "report", a, b, "--target", target, "-o", tmp_path / "report",
                         "--identity-sample", "0", "--json")  # fmt: skip
    assert code == 0, err
    cov = json.loads(out)["coverage"]
    assert cov["faces"] == 100 and cov["sets"]["A"]["share"] <= 0.01, cov["sets"]["A"]
    # one definition: nothing is outside that neither set leaves uncovered
    shares = [s["share"] for s in cov["sets"].values()]
    assert max(shares) <= cov["outside_share"] <= sum(shares) + 1e-6
