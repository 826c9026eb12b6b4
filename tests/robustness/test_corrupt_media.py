"""A corpus of broken and unusual media, made here (OpenCV and the ffmpeg binary of
imageio-ffmpeg), through every command that reads media.

Guarantee (docs/reliability.md): each input either works (16-bit, grayscale, alpha, odd sizes,
10-bit HEVC, rotation metadata: these must) or ends in one clear line naming the file, exit 2;
never a traceback or an internal error, and never a half-written output: a face set that
exists afterwards loads and validates, an output video that exists afterwards is complete.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from robust import check_faceset

from faceswap import faceset as fsmod
from faceswap.cli import main
from faceswap.media import ffmpeg_exe
from faceswap.synthetic import astronaut

WORKS, REFUSED, EITHER = "works", "refused", "either"


def _portrait(w: int = 641, h: int = 363) -> np.ndarray:
    """The astronaut (face about 90 px) on a grey canvas of w x h: BGR uint8."""
    canvas = np.full((h, w, 3), 128, np.uint8)
    src = astronaut()[:h, :, ::-1]
    canvas[:, : min(w, 512)] = src[:, : min(w, 512)]
    return canvas


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", *args], check=True)


def _encoded(ext: str, img: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


@dataclass
class Case:
    name: str
    make: Callable[[Path, Path], Path]  # (folder, source clip) -> the input file
    expect: str  # WORKS, REFUSED or EITHER
    words: tuple[str, ...] = ()  # in the error line when refused
    video: bool = False


def _write(name: str, data: bytes) -> Callable[[Path, Path], Path]:
    def make(d: Path, clip: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name

    return make


def _image(name: str, img_fn: Callable[[], np.ndarray], cut: float = 1.0):
    def make(d: Path, clip: Path) -> Path:
        data = _encoded(Path(name).suffix if "." in name else ".png", img_fn())
        (d / name).write_bytes(data[: int(len(data) * cut)])
        return d / name

    return make


def _video(name: str, *ffargs: str, cut: float = 1.0, scramble: bool = False):
    def make(d: Path, clip: Path) -> Path:
        out = d / name
        _ffmpeg(*ffargs[:ffargs.index("IN")], "-i", str(clip), *ffargs[ffargs.index("IN") + 1:],
                str(out))  # fmt: skip
        data = bytearray(out.read_bytes())
        if scramble:  # 4 KB of noise in the middle: a damaged stream, not a cut one
            mid = len(data) // 2
            data[mid : mid + 4096] = np.random.default_rng(0).bytes(4096)
        out.write_bytes(bytes(data[: int(len(data) * cut)]))
        return out

    return make


def _rotated(d: Path, clip: Path) -> Path:
    """A phone-style clip: frames stored turned 90 degrees clockwise, with container metadata
    that turns them back for display (what a phone held upright records)."""
    _ffmpeg("-i", str(clip), "-frames:v", "2", "-vf", "transpose=1", "-c:v", "libx264",
            str(d / "sideways.mp4"))  # fmt: skip
    _ffmpeg("-display_rotation", "90", "-i", str(d / "sideways.mp4"), "-c", "copy",
            str(d / "rotated.mp4"))  # fmt: skip
    return d / "rotated.mp4"


def _bomb(d: Path, clip: Path) -> Path:
    from test_untrusted_files import _bomb_png

    return _bomb_png(d / "bomb.png", 20000, 20000)


CORPUS = [
    Case("zero-byte-image", _write("empty.png", b""), REFUSED, ("empty.png", "empty")),
    Case("zero-byte-video", _write("empty.mp4", b""), REFUSED, ("empty.mp4",), video=True),
    Case(
        "text-as-video", _write("notes.mp4", b"hello\n" * 100), REFUSED, ("notes.mp4",), video=True
    ),  # fmt: skip
    Case(
        "png-named-jpg", lambda d, c: _write("png.jpg", _encoded(".png", _portrait()))(d, c), WORKS
    ),  # fmt: skip
    Case(
        "video-named-png",
        lambda d, c: _write("clip.png", c.read_bytes())(d, c),
        REFUSED,
        ("clip.png", "not a readable image"),
    ),  # fmt: skip
    Case(
        "gray-png", _image("gray.png", lambda: cv2.cvtColor(_portrait(), cv2.COLOR_BGR2GRAY)), WORKS
    ),  # fmt: skip
    Case("16bit-png", _image("deep.png", lambda: _portrait().astype(np.uint16) * 257), WORKS),
    Case(
        "16bit-gray-png",
        _image(
            "deepgray.png",
            lambda: cv2.cvtColor(_portrait(), cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257,
        ),
        WORKS,
    ),  # fmt: skip
    Case(
        "rgba-png",
        _image("alpha.png", lambda: cv2.cvtColor(_portrait(), cv2.COLOR_BGR2BGRA)),
        WORKS,
    ),  # fmt: skip
    Case("odd-size-jpg", _image("odd.jpg", lambda: _portrait(641, 363)), WORKS),
    Case(
        "tiny-image", _image("tiny.png", lambda: _portrait()[:9, :7]), REFUSED, ("no face found",)
    ),  # fmt: skip
    Case("truncated-png", _image("cut.png", _portrait, cut=0.4), EITHER, ("cut.png",)),
    Case("truncated-jpg", _image("cut.jpg", _portrait, cut=0.6), EITHER, ("cut.jpg",)),
    Case("bomb-png", _bomb, REFUSED, ("bomb.png", "too large")),
    Case(
        "truncated-mp4",
        lambda d, c: _write("cut.mp4", c.read_bytes()[: c.stat().st_size // 3])(d, c),
        EITHER,
        ("cut.mp4",),
        video=True,
    ),  # fmt: skip
    Case(
        "truncated-mkv",
        _video("cut.mkv", "IN", "-frames:v", "2", "-c:v", "ffv1", cut=0.5),
        EITHER,
        ("cut.mkv",),
        video=True,
    ),  # fmt: skip
    Case(
        "damaged-mp4",
        _video("noise.mp4", "IN", "-frames:v", "2", "-c:v", "libx264", scramble=True),
        EITHER,
        ("noise.mp4",),
        video=True,
    ),  # fmt: skip
    Case(
        "odd-size-video",
        _video("odd.mkv", "IN", "-frames:v", "2", "-vf", "scale=641:363", "-c:v", "ffv1"),
        WORKS,
        video=True,
    ),  # fmt: skip
    Case(
        "gray16-video",
        _video("gray16.mkv", "IN", "-frames:v", "2", "-pix_fmt", "gray16le", "-c:v", "ffv1"),
        WORKS,
        video=True,
    ),  # fmt: skip
    Case(
        "hevc-10bit",
        _video(
            "hevc10.mp4",
            "IN",
            "-frames:v",
            "2",
            "-pix_fmt",
            "yuv420p10le",
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error",
        ),
        WORKS,
        video=True,
    ),  # fmt: skip
    Case("rotated-video", _rotated, WORKS, video=True),
    Case(
        "audio-only",
        lambda d, c: (
            _ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(d / "audio.mp4")),
            d / "audio.mp4",
        )[1],
        REFUSED,
        ("audio.mp4",),
        video=True,
    ),  # fmt: skip
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, astronaut_clip) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("corpus")
    return {c.name: c.make(d, astronaut_clip[0]) for c in CORPUS}


def _extract(path: Path, out: Path) -> list[str]:
    return ["extract", str(path), "-o", str(out), "--size", "64", "--no-embed", "--workers", "1",
            "--frames", "0-1", "--json"]  # fmt: skip


def _check_extract(path: Path, out: Path, code: int, stdout: str) -> None:
    check_faceset(out)  # whatever happened: absent, or a face set that loads
    if code == 0:
        fs = fsmod.load(out)
        assert json.loads(stdout)["faces_kept"] >= 1 and fs.faces
        # the frame size recorded is the size of the frames the faces were found in
        src = next(iter(fs.sources.values()))
        img = fs.load_image(fs.faces[0])
        assert img.shape == (64, 64, 3) and src.width > 0 and src.height > 0


def _convert(run: Path):
    def argv(path: Path, out: Path) -> list[str]:
        return ["convert", str(path), "-m", str(run), "-o", str(out / "swapped.mp4"),
                "--frames", "0-1", "--detect-workers", "1", "--workers", "1", "--json"]  # fmt: skip

    return argv


def _check_convert(path: Path, out: Path, code: int, stdout: str) -> None:
    video = out / "swapped.mp4"
    if code != 0:
        assert not video.exists(), "a failed convert left an output video"
        return
    cap = cv2.VideoCapture(str(video))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames >= 1


# Commands that read media: argv(input, output folder) and check(input, output folder, exit
# code, stdout). convert takes videos only.
COMMANDS = {
    "extract": (lambda ctx: _extract, _check_extract, False),
    "convert": (lambda ctx: _convert(ctx["run"]), _check_convert, True),
}


def _cases(videos_only: bool) -> list[Case]:
    return [c for c in CORPUS if c.video or not videos_only]


# tests/test_extract.py extracts these kinds in CI already (grey, 16-bit, odd-sized images)
ALSO_IN_TEST_EXTRACT = {"gray-png", "16bit-png", "odd-size-jpg"}


def _params() -> list:
    """(command, case) pairs. A convert that works costs seconds (model, detector, encoder), so
    only the rotated clip runs in CI for convert; its other working cases are `slow`, as are
    the extract cases tests/test_extract.py covers."""
    out = []
    for cmd, (_, _, vids) in COMMANDS.items():
        for c in _cases(vids):
            slow = (cmd == "convert" and c.expect != REFUSED and c.name != "rotated-video") or (
                cmd == "extract" and c.name in ALSO_IN_TEST_EXTRACT
            )
            out.append(pytest.param(cmd, c, id=f"{cmd}-{c.name}",
                                    marks=[pytest.mark.slow] if slow else []))  # fmt: skip
    return out


@pytest.mark.parametrize("command, case", _params())
def test_broken_and_unusual_media(command, case, corpus, tiny_run, tmp_path, capsys):
    argv_for, check, _ = COMMANDS[command]
    path = corpus[case.name]
    out = tmp_path / "out"
    if command == "convert":
        out.mkdir()  # convert writes a file into it; extract makes it the face set
    code = main(argv_for({"run": tiny_run})(path, out))
    stdout, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    assert code in (0, 2), err
    if case.expect == WORKS:
        assert code == 0, err
    elif case.expect == REFUSED:
        assert code == 2
    if code == 2:
        lines = [ln for ln in err.strip().splitlines() if "error" in ln]
        assert len(lines) == 1, err
        for w in case.words if case.expect == REFUSED else case.words[:1]:
            assert w in lines[0], (w, lines[0])
    check(path, out, code, stdout)
    if command == "extract" and case.name == "rotated-video":
        # frames come upright (the container's rotation applied), the face is found in them,
        # and the set records the upright size
        src = next(iter(fsmod.load(out).sources.values()))
        assert (src.width, src.height) == (640, 360)
