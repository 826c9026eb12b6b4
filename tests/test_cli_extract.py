"""The CLI contract of extract, faceset and weights: exit codes, one-line errors, --json."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from faceswap import faceset as fsmod
from faceswap.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


def _one_error_line(err: str, *words: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if "error" in ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_extract_json_summary(capsys, astronaut_clip, tmp_path):
    code, out, _ = _run(capsys, "extract", str(astronaut_clip[0]), "-o", str(tmp_path / "s"),
                        "--size", "64", "--no-embed", "--frames", "0-6", "--json")  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["frames_read"] == 6 and data["faces_kept"] == 6
    assert data["detector"] == "dlib-hog" and data["aligner"] == "dlib"


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d: d / "nope.mp4", ["nope.mp4", "no such file"]),
        (lambda d: _file(d / "bad.mp4", b"\x00garbage" * 100), ["bad.mp4"]),
        (lambda d: _file(d / "empty.jpg", b""), ["empty.jpg", "empty"]),
        (lambda d: _file(d / "fake.png", b"not a png"), ["fake.png"]),
    ],
    ids=["missing", "corrupt-video", "zero-byte-image", "not-an-image"],
)
def test_bad_input_files(capsys, tmp_path, make, words):
    path = make(tmp_path)
    code, _, err = _run(capsys, "extract", str(path), "-o", str(tmp_path / "out"))
    assert code == 2
    _one_error_line(err, *words)
    assert not (tmp_path / "out").exists()


def test_truncated_video_is_refused_or_read_up_to_the_cut(capsys, astronaut_clip, tmp_path):
    data = astronaut_clip[0].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    code, _, err = _run(capsys, "extract", str(cut), "-o", str(tmp_path / "out"), "--size", "64")
    # mp4 keeps its index at the end: a cut file is unreadable; either way no crash
    assert code in (0, 2)
    if code == 2:
        _one_error_line(err, "cut.mp4")


def test_folder_with_a_non_image_file(capsys, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((50, 50, 3), np.uint8))
    (folder / "notes.txt").write_text("hello")
    code, _, err = _run(capsys, "extract", str(folder), "-o", str(tmp_path / "out"))
    assert code == 2
    _one_error_line(err, "notes.txt")


def test_glob_matching_nothing(capsys, tmp_path):
    code, _, err = _run(capsys, "extract", str(tmp_path / "*.mp4"), "-o", str(tmp_path / "o"))
    assert code == 2
    _one_error_line(err, "matches no files")


def test_output_that_cannot_be_a_folder(capsys, astronaut_clip, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "extract", str(astronaut_clip[0]), "-o", str(blocker / "set"))
    assert code == 2
    _one_error_line(err, "set")
    code, _, err = _run(capsys, "extract", str(astronaut_clip[0]), "-o", str(blocker))
    assert code == 2
    _one_error_line(err, "not a folder")


def test_output_folder_that_is_something_else(capsys, astronaut_clip, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.docx").write_text("precious")
    code, _, err = _run(capsys, "extract", str(astronaut_clip[0]), "-o", str(other))
    assert code == 2
    _one_error_line(err, "not a face set")
    assert (other / "thesis.docx").read_text() == "precious"


def test_incompatible_face_set_is_left_untouched(capsys, astronaut_clip, tmp_path):
    out = tmp_path / "old"
    fsmod.create(out, 64, "face", "png")
    index = out / "faceset.json"
    data = json.loads(index.read_text())
    data["version"] = 99
    index.write_text(json.dumps(data))
    before = index.read_bytes()
    code, _, err = _run(capsys, "extract", str(astronaut_clip[0]), "-o", str(out), "--size", "64")
    assert code == 2
    _one_error_line(err, "version 99")
    assert index.read_bytes() == before


def test_other_settings_than_the_existing_face_set(capsys, astronaut_clip, tmp_path):
    out = tmp_path / "set"
    fsmod.create(out, 64, "face", "png")
    before = (out / "faceset.json").read_bytes()
    code, _, err = _run(capsys, "extract", str(astronaut_clip[0]), "-o", str(out), "--size", "128")
    assert code == 2
    _one_error_line(err, "size 64")
    assert (out / "faceset.json").read_bytes() == before


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--detector", "mtcnn"], ["detector"]),
        (["--size", "100"], ["size"]),
        (["--centering", "chin"], ["centering"]),
        (["--frames", "a-b"], ["--frames"]),
        (["--every-nth", "0"], ["every_nth"]),
    ],
)
def test_bad_options(capsys, astronaut_clip, tmp_path, argv, words):
    code, _, err = _run(capsys, "extract", str(astronaut_clip[0]), "-o", str(tmp_path / "o"), *argv)
    assert code == 2
    _one_error_line(err, *words)
    assert not (tmp_path / "o").exists()


def test_config_file_with_an_unknown_key(capsys, astronaut_clip, tmp_path):
    cfg = tmp_path / "extract.yaml"
    cfg.write_text("size: 64\ndetecter: dlib-hog\n")
    code, _, err = _run(capsys, "extract", str(astronaut_clip[0]), "-o", str(tmp_path / "o"),
                        "--config", str(cfg))  # fmt: skip
    assert code == 2
    _one_error_line(err, "extract.yaml", "detecter")


def test_usage_errors_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["extract"])
    assert exc.value.code == 2
    _one_error_line(capsys.readouterr().err)
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_missing_weights_say_how_to_get_them(capsys, astronaut_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    code, _, err = _run(capsys, "extract", str(astronaut_clip[0]), "-o", str(tmp_path / "o"),
                        "--detector", "s3fd", "--weights-dir", str(tmp_path / "w"))  # fmt: skip
    assert code == 2
    _one_error_line(err, "s3fd-619a316812.pth", "faceswap weights download")
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_weights_list_json(capsys):
    code, out, _ = _run(capsys, "weights", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["dlib-landmarks"]["present"] and rows["dlib-identity"]["present"]
    assert {"s3fd", "fan"} <= set(rows)


def test_python_dash_m_and_help_examples():
    res = subprocess.run([sys.executable, "-m", "faceswap", "extract", "--help"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert res.returncode == 0 and "examples:" in res.stdout and "--identity" in res.stdout
    res = subprocess.run([sys.executable, "-m", "faceswap", "faceset", "info", "/nonexistent"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "/nonexistent" in res.stderr


def test_cv2_imports_with_both_opencv_wheels_installed():
    # face-alignment pulls opencv-python and albumentations opencv-python-headless; both
    # provide the cv2 package, and the install must still leave a working one
    import albumentations  # noqa: F401

    ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert ok and cv2.imdecode(buf, cv2.IMREAD_COLOR).shape == (8, 8, 3)


def test_a_second_writer_is_refused_while_the_first_holds_the_set(capsys, astronaut_clip, tmp_path):
    out = tmp_path / "set"
    with fsmod.writer_lock(out):
        code, _, err = _run(capsys, "extract", str(astronaut_clip[0]), "-o", str(out))
    assert code == 2
    _one_error_line(err, "another faceswap process")
