"""The errors a user meets on real files: one line naming the file or option, exit code 2."""

from __future__ import annotations

import pytest

from faceswap.cli import main

from helpers import shared_data


def _run(capfd, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, err


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_train_output_that_is_a_file(capfd, tmp_path):
    (tmp_path / "run.txt").write_text("x")
    code, err = _run(capfd, "train", "-A", tmp_path, "-B", tmp_path, "-o", tmp_path / "run.txt")
    assert code == 2 and "-o" in _one_line(err) and "is a file" in err


def test_video_or_file_where_a_face_set_goes(capfd, tmp_path):
    clip = shared_data("clips", "liveportrait_d9.mp4")
    code, err = _run(capfd, "train", "-A", clip, "-B", tmp_path, "-o", tmp_path / "run")
    line = _one_line(err)
    assert code == 2 and "-A" in line and "is a video" in line and "faceswap extract" in line
    (tmp_path / "notes.txt").write_text("x")
    code, err = _run(capfd, "faceset", "info", tmp_path / "notes.txt")
    assert code == 2 and "is a file" in _one_line(err)


def test_folder_of_face_sets_names_them(capfd, tmp_path):
    for name in ("alice", "bob"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "faceset.json").write_text("{}")
    code, err = _run(capfd, "faceset", "info", tmp_path)
    line = _one_line(err)
    assert code == 2 and "holds face sets (alice, bob)" in line


def test_folder_of_subfolders_suggests_them(capfd, tmp_path):
    photos = shared_data("photos")
    code, err = _run(capfd, "extract", photos, "-o", tmp_path / "set")
    line = _one_line(err)
    assert code == 2 and "only subfolders (barack_obama, joe_biden)" in line and "**" in line
    assert not (tmp_path / "set").exists()


def test_broken_video_gives_only_our_line(capfd, tmp_path):
    """FFmpeg's own "moov atom not found" must not come before our message."""
    clip = shared_data("clips", "liveportrait_d9.mp4")
    broken = tmp_path / "cut.mp4"
    broken.write_bytes(clip.read_bytes()[:20000])  # the index (moov) is at the end: cut off
    code, err = _run(capfd, "extract", broken, "-o", tmp_path / "set")
    line = _one_line(err)
    assert code == 2 and "cut.mp4: cannot open video" in line and "moov" not in err


@pytest.mark.parametrize("threshold, code", [(0.6, 2), (1.5, 0)])
def test_identity_that_keeps_no_face(capfd, tmp_path, threshold, code):
    clip = shared_data("clips", "retalking_face2_man.mp4")
    ref = shared_data("photos", "barack_obama", "obama.jpg")  # another man
    got, err = _run(capfd, "-q", "extract", clip, "--frames", "0-3", "-o", tmp_path / "set",
                    "--identity", ref, "--identity-threshold", threshold)  # fmt: skip
    assert got == code, err
    if code == 2:
        line = _one_line(err)
        assert "--identity kept no face" in line and "closest of 3 faces was at distance" in line
        assert "threshold 0.60" in line
        assert len(list((tmp_path / "set" / "rejected").iterdir())) == 3  # kept, not lost
    else:
        assert "kept no face" not in err
