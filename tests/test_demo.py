"""`faceswap demo --profile quick`: the whole pipeline end to end on generated clips."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from faceswap.cli import main
from faceswap.demo.run import PROFILES, DemoConfig, prepare_folder
from faceswap.errors import BadInput
from faceswap.media import probe_audio, read_tags


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "d"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        # with a budget: the path a user's demo takes (the quick profile's steps cap it)
        assert main(["demo", "--profile", "quick", "-o", str(out), "--json", "--budget", "2m"]) == 0
    summary = json.loads(stdout.getvalue())  # --json: nothing but the summary on stdout
    assert summary == json.loads((out / "demo.json").read_text())
    return out, summary


def test_demo_produces_every_result(demo):
    out, summary = demo
    assert summary["profile"] == "quick"
    assert summary["identity_distance"] > 0.6  # two different-looking people to dlib
    for key in ("video", "provenance", "preview", "training_preview", "report"):
        assert Path(summary[key]).is_file(), key
        assert Path(summary[key]).is_relative_to(out)
    assert probe_audio(summary["video"]) == "aac"  # the target clip's tone came through
    assert read_tags(summary["video"])["synthetic"] == "true"
    label = json.loads(Path(summary["provenance"]).read_text())
    assert label["synthetic"] is True and label["output"]["path"].endswith("target.mp4")
    assert summary["evaluation"], "evaluate wrote no evaluation.json into the run"
    for stage in ("render", "extract a", "train", "fit", "convert", "evaluate", "report"):
        assert stage in summary["seconds"]
    # training kept its own share of the budget; fit took its steps from the pace training kept
    budget = summary["budget"]
    train_yaml = yaml.safe_load((out / "train.yaml").read_text())
    assert train_yaml["budget"] == pytest.approx(budget["train_seconds"], abs=0.1)
    assert budget["pace_seconds"] > 0 and 1 <= budget["steps"] <= train_yaml["steps"]
    assert budget["steps"] == json.loads(_last_state(out / "runs" / "ab"))["step"]
    fit = json.loads(_last_state(out / "runs" / "ab-target"))
    assert fit["step"] == budget["fit_steps"]  # a fit counts from 0


def _last_state(run: Path) -> str:
    from faceswap.train import checkpoint as ck

    return (ck.latest_checkpoint(run) / "state.json").read_text()


def test_demo_refuses_a_previous_demo_without_overwrite(demo, capsys):
    out, _ = demo
    assert main(["demo", "--profile", "quick", "-o", str(out)]) == 2
    assert "previous demo" in capsys.readouterr().err


def test_prepare_folder_removes_only_what_the_demo_made(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(BadInput):
        prepare_folder(tmp_path, overwrite=False)
    prepare_folder(tmp_path, overwrite=True)
    assert not (tmp_path / "clips").exists() and (tmp_path / "mine.txt").read_text() == "keep"


def test_profiles_are_valid_and_checked():
    assert {"cpu", "cuda", "quick"} <= set(PROFILES)
    with pytest.raises(ValueError):
        DemoConfig(frames=10)
    assert main(["demo", "--profile", "huge", "-o", "/nonexistent/x"]) == 2
