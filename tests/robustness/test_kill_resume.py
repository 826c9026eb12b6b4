"""Kill -9 at random moments, and inside saves, then run the same command again.

Guarantees (docs/reliability.md): after any SIGKILL the output is valid as it stands (a face
set that loads with no face twice; a run folder whose checkpoints all load), the next run
continues from the last complete save, at most one save interval of work is lost, and the
finished output equals that of a run that was never interrupted (bit for bit for training on
the CPU; for extraction, every face, landmark and image, with new track ids after a resume).

The fast tests make two kills per command (one inside a save, one at a seeded random time);
the `slow` loop makes 20 and prints the figures.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from robust import JOBS, Job, run_faultrun

from faceswap.config import ExtractConfig, from_dict
from faceswap.extract.pipeline import extract
from faceswap.synthetic import render_clip

from helpers import TINY_TRAIN, read_frames


@dataclass
class Kill:
    """Where the kill lands: a save point "POINT:K" (the process kills itself there), or a
    time after the run's first unit of work (we kill it from outside)."""

    point: str | None = None
    after: float | None = None
    from_start: bool = False  # count `after` from the start, not from the first unit of work


@dataclass
class Stats:
    kills: int = 0  # SIGKILLs that hit a live process
    finished_first: int = 0  # runs that completed before their kill time
    resumes_ok: int = 0  # runs after a kill that carried on from the last save without error
    lost_max: int = 0  # most work units (steps, frames) done but not saved at a kill
    lost: list[int] = field(default_factory=list)

    def line(self, job: str) -> str:
        return (f"{job}: kills {self.kills}, resumes that succeeded {self.resumes_ok}, "
                f"finished before the kill {self.finished_first}, "
                f"{'steps' if job == 'train' else 'frames'} lost at most {self.lost_max} "
                f"(each kill: {self.lost})")  # fmt: skip


def crash_and_resume(job: Job, ctx: dict, out: Path, kills: list[Kill], tmp: Path,
                     save_interval: int | None) -> Stats:  # fmt: skip
    """Run the job under each kill in turn, checking the output after every crash, then run
    it to the end. Returns the figures; asserts the guarantees on the way. save_interval:
    the most work a kill may lose (None: the job starts over, as convert does)."""
    stats = Stats()
    after_kill = False
    for k in kills + [Kill()]:
        saved_before = job.saved(out)
        o = run_faultrun(job.argv(ctx, out), tmp, kill_point=k.point, kill_after=k.after,
                         wait_for=None if k.from_start else job.progress)  # fmt: skip
        if after_kill:
            # carried on from the last complete save: its first unit is the one after it
            done = [int(ln.split()[1]) for ln in o.trace if ln.startswith(job.progress + " ")]
            assert o.killed or o.rc == 0, o.stderr
            assert not done or done[0] > saved_before, (done[:1], saved_before)
            if job.name == "train" and done:
                assert done[0] == saved_before + 1, (done[0], saved_before)
            stats.resumes_ok += 1
        if k.point is None and k.after is None:
            assert o.rc == 0, o.stderr  # the final run completes
            break
        if not o.killed:
            assert o.rc == 0, o.stderr
            stats.finished_first += 1
            after_kill = False
            continue
        stats.kills += 1
        job.check(out)
        lost = max(0, o.last(job.progress) - job.saved(out))
        stats.lost.append(lost)
        stats.lost_max = max(stats.lost_max, lost)
        assert save_interval is None or lost <= save_interval, (k, lost)
        after_kill = True
    job.check(out)
    return stats


def _extract_reference(ctx: dict, out: Path) -> Path:
    start, _, end = ctx["frames"].partition("-")
    cfg = from_dict(ExtractConfig, {**yaml.safe_load(ctx["extract_yaml"].read_text()),
                                    "size": 64, "embed": False, "workers": 1,
                                    "start_frame": int(start), "end_frame": int(end)}, "ref")  # fmt: skip
    extract([str(ctx["clip"])], out, cfg)
    return out


def test_train_killed_inside_a_save_resumes_to_the_uninterrupted_run(
    robust_inputs, tiny_run, tmp_path
):
    job = JOBS["train"]
    out = tmp_path / "run"
    # the first time a published checkpoint folder is moved aside: `best` is being replaced
    # (its new version complete in a temp folder, the old one hidden, neither named best).
    # Kills at random times are the slow loop's (each costs a process start of seconds).
    kills = [Kill(point="ck.retire:1")]
    stats = crash_and_resume(job, robust_inputs, out, kills, tmp_path, save_interval=3)
    print(stats.line("train"))
    assert stats.kills == 1 and stats.resumes_ok == 1
    job.same(out, tiny_run)


def test_extract_killed_in_a_save_and_at_random_resumes_to_the_uninterrupted_set(
    robust_inputs, tmp_path
):
    rng = random.Random(3)
    ctx = {**robust_inputs, "frames": "0-8"}
    ref = _extract_reference(ctx, tmp_path / "ref")
    job = JOBS["extract"]
    out = tmp_path / "set"
    # a face image or the index caught between its temp file and its rename
    point = f"{rng.choice(job.save_points)}:{rng.randint(2, 3)}"
    kills = [Kill(point=point), Kill(after=rng.uniform(0.0, 1.5))]
    # extract saves its index every chunk here (save_every 0.01 s, chunk 4): at most a chunk
    stats = crash_and_resume(job, ctx, out, kills, tmp_path, save_interval=4)
    print(stats.line("extract"), point)
    assert stats.kills >= 1 and stats.resumes_ok == stats.kills
    job.same(out, ref)


def test_convert_killed_mid_clip_leaves_no_output_then_completes(robust_inputs, tmp_path):
    job = JOBS["convert"]
    out = tmp_path / "swapped.mp4"
    # killed once frames are flowing into the encoder: the output is not there (or complete)
    stats = crash_and_resume(job, robust_inputs, out, [Kill(after=0.0)], tmp_path,
                             save_interval=None)  # fmt: skip
    print(stats.line("convert"))
    assert stats.kills == 1 and stats.resumes_ok == 1
    assert len(read_frames(out)) == 12
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".swapped.mp4.")]
    assert not leftovers, leftovers


# ---- the long loop (slow): 20 kills per command -----------------------------------------------


def _kills(rng: random.Random, job: Job, n: int, window: float, max_hit: int) -> list[Kill]:
    """Mostly kills at random times; every fourth one inside a save, at a random save point."""
    out = []
    for i in range(n):
        if i % 4 == 3:
            out.append(Kill(point=f"{rng.choice(job.save_points)}:{rng.randint(1, max_hit)}"))
        else:
            out.append(Kill(after=rng.uniform(0.0, window)))
    return out


@pytest.mark.slow
def test_train_survives_20_kills(robust_inputs, tmp_path):
    from faceswap import faceset as fsmod
    from faceswap.train.trainer import Trainer, open_run

    from helpers import tiny_train_config

    over = {"steps": 200, "save_every": 4, "val_every": 4, "preview_every": 8}
    cfg_file = tmp_path / "long.yaml"
    cfg_file.write_text(yaml.safe_dump({**TINY_TRAIN, **over}))
    ctx = {**robust_inputs, "train_yaml": cfg_file}
    a, b = robust_inputs["faceset_pair"]
    ref = tmp_path / "ref"
    Trainer(open_run(ref, tiny_train_config(**over), resume=False), fsmod.load(a),
            fsmod.load(b), ref).train(tensorboard=False)  # fmt: skip
    job = JOBS["train"]
    kills = _kills(random.Random(20), job, 20, window=4.0, max_hit=6)
    stats = crash_and_resume(job, ctx, tmp_path / "run", kills, tmp_path, save_interval=4)
    print(stats.line("train"))
    job.same(tmp_path / "run", ref)


@pytest.mark.slow
def test_convert_survives_20_kills(robust_inputs, tmp_path):
    ctx = {**robust_inputs, "frames": "0-24"}
    ref = tmp_path / "ref.mp4"
    o = run_faultrun(JOBS["convert"].argv(ctx, ref), tmp_path)
    assert o.rc == 0, o.stderr
    job = JOBS["convert"]
    # convert writes its frames in a burst at the end of a short clip: kill at random times
    # over the whole run (start-up, detection, swapping, encoding, the final rename)
    rng = random.Random(22)
    kills = [Kill(after=rng.uniform(0.0, o.seconds), from_start=True) for _ in range(20)]
    out = tmp_path / "out" / "swapped.mp4"
    out.parent.mkdir()
    stats = crash_and_resume(job, ctx, out, kills, tmp_path, save_interval=None)
    print(stats.line("convert"))
    job.same(out, ref)


@pytest.mark.slow
def test_extract_survives_20_kills(robust_inputs, tmp_path):
    # extraction runs at tens of frames/s here: a clip long enough for 20 kills a second apart
    clip = tmp_path / "long.mp4"
    render_clip(clip, 600, frame_size=(480, 270), base_scale=0.75, seed=4)
    ctx = {**robust_inputs, "clip": clip, "frames": "0-600"}
    ref = _extract_reference(ctx, tmp_path / "ref")
    job = JOBS["extract"]
    kills = _kills(random.Random(21), job, 20, window=1.0, max_hit=12)
    stats = crash_and_resume(job, ctx, tmp_path / "set", kills, tmp_path, save_interval=4)
    print(stats.line("extract"))
    job.same(tmp_path / "set", ref)
