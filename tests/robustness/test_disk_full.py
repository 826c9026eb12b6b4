"""A full disk (or any failing write) while saving.

Guarantee (docs/reliability.md): the save that fails leaves the previous checkpoint, or the face
set as it was at its last save, intact and loadable; the command ends with one line that says
what happened and what is still there, exit code 2 (the user can fix it: free space, run
again), no traceback; and running again after the space is back finishes the job.

Decision: a full disk is the user's environment, not a bug of ours, so it is reported like bad
input (exit 2), as an unwritable output folder already was.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import uuid

import pytest
from robust import JOBS, check_faceset, check_run, run_faultrun

from faceswap import faceset as fsmod
from faceswap.cli import main
from faceswap.train import checkpoint as ck


def _one_line(err: str, *words: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if "error" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture
def small_disk(tmp_path):
    """A 30 MiB tmpfs when this process may mount one (root in a container), else None: the
    realest full disk there is, ENOSPC from the kernel."""
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mnt)],
                         capture_output=True, check=False)  # fmt: skip
    if res.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_train_on_a_full_disk_keeps_the_last_checkpoint_and_resumes(
    robust_inputs, tiny_run, small_disk, tmp_path, capsys
):
    job = JOBS["train"]
    if small_disk is not None:
        # the tiny run needs about 12 MiB per checkpoint folder: best and step-3 fit, step 6
        # does not
        out = small_disk / "run"
        o = run_faultrun(job.argv(robust_inputs, out), tmp_path)
        words = ["disk full while saving checkpoint", "step-00000006", "step-00000003 is intact"]
    else:
        # no mount here: from the first file of the step-6 save on, files cannot grow past
        # 64 KiB (a real write error in the OS, inside safetensors' own writer)
        out = tmp_path / "run"
        o = run_faultrun(job.argv(robust_inputs, out), tmp_path, full="ck.tensors:7:65536")
        words = ["cannot write while saving checkpoint", "step-00000006", "(File too large)",
                 "step-00000003 is intact"]  # fmt: skip
    assert o.rc == 2, o.stderr
    _one_line(o.stderr, *words)
    check_run(out)
    assert ck.latest_checkpoint(out).name == "step-00000003"
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    # space is back (the run moved to a roomy disk): the same command resumes and finishes
    # exactly as if nothing had happened
    roomy = tmp_path / "roomy"
    shutil.copytree(out, roomy)
    assert main(job.argv(robust_inputs, roomy)) == 0
    capsys.readouterr()
    job.same(roomy, tiny_run)


def test_preview_write_on_a_full_disk_is_one_line(robust_inputs, tmp_path, capsys, monkeypatch):
    from faceswap.train import trainer as tr

    real = tr.fsmod.atomic_write_bytes

    def full(path, data):
        if str(path).endswith(".png"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(tr.fsmod, "atomic_write_bytes", full)
    out = tmp_path / "run"
    assert main(JOBS["train"].argv(robust_inputs, out)) == 2
    _one_line(capsys.readouterr().err, str(out), "disk full at step 3", "no checkpoint yet")
    assert (out / "config.yaml").is_file() and ck.latest_checkpoint(out) is None


def test_extract_on_a_full_disk_keeps_the_last_saved_set_and_resumes(
    robust_inputs, tmp_path, capsys, monkeypatch
):
    ctx = {**robust_inputs, "frames": "0-8"}
    out = tmp_path / "set"
    real = fsmod.atomic_write_bytes
    calls = {"n": 0}

    def fills_up(path, data, **kw):
        # the 8th write on fails: the empty set's arrays and index (1, 2), frames 0-3's images
        # (3-6) and the index that lists them (7; its arrays are appended, not rewritten) are
        # written; the later images and every later index save (the error path's too) fail
        calls["n"] += 1
        if calls["n"] >= 8:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data, **kw)

    monkeypatch.setattr(fsmod, "atomic_write_bytes", fills_up)
    assert main(JOBS["extract"].argv(ctx, out)) == 2
    _one_line(capsys.readouterr().err, str(out), "disk full while saving faces",
              "as it was at its last save")  # fmt: skip
    check_faceset(out)
    assert sorted(f.frame for f in fsmod.load(out).faces) == [0, 1, 2, 3]
    monkeypatch.setattr(fsmod, "atomic_write_bytes", real)
    assert main(JOBS["extract"].argv(ctx, out)) == 0
    capsys.readouterr()
    check_faceset(out)
    assert sorted(f.frame for f in fsmod.load(out).faces) == list(range(8))
