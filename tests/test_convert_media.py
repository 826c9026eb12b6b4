"""The video writer (H.264 through the bundled ffmpeg, audio, tags, atomic output) and the
provenance pieces (sidecar, PNG text, watermark)."""

import json
import subprocess

import numpy as np
import pytest

from faceswap.convert import provenance
from faceswap.errors import BadInput
from faceswap.media import (
    VideoWriter,
    ffmpeg_exe,
    fps_fraction,
    parse_ffmetadata,
    probe_audio,
    probe_video,
    read_tags,
)


def add_tone(video, out, hz=440):
    """`video` with a sine tone as its (AAC) audio track, as long as the video."""
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-f", "lavfi", "-i",
                    f"sine=frequency={hz}:sample_rate=16000", "-map", "0:v", "-map", "1:a",
                    "-c:v", "copy", "-c:a", "aac", "-shortest", str(out)], check=True)  # fmt: skip
    return out


def audio_samples(path, rate=8000) -> np.ndarray:
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac",
                          "1", "-ar", str(rate), "-f", "s16le", "-"],
                         capture_output=True, check=True).stdout  # fmt: skip
    return np.frombuffer(raw, np.int16).astype(np.float32)


def peak_hz(samples, rate=8000) -> float:
    spec = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spec.argmax()])


def _frames(n, w=160, h=96):
    return [np.full((h, w, 3), 5 * i % 256, np.uint8) for i in range(n)]


@pytest.fixture(scope="module")
def tone_clip(tmp_path_factory):
    """2 s of 160x96 video at 24 fps with a 440 Hz tone."""
    folder = tmp_path_factory.mktemp("tone")
    with VideoWriter(folder / "silent.mp4", 160, 96, 24.0) as w:
        for f in _frames(48):
            w.write(f)
        w.commit()
    return add_tone(folder / "silent.mp4", folder / "tone.mp4")


def test_writer_keeps_fps_size_tags_and_the_audio(tone_clip, tmp_path):
    out = tmp_path / "out.mp4"
    tags = {"synthetic": "true", "comment": "a = b; #1 \\ with\nnewline", "faceswap_run": "r"}
    with VideoWriter(out, 160, 96, 24.0, crf=20, audio_from=tone_clip, tags=tags) as w:
        for f in _frames(48):
            w.write(f)
        w.finish()
        assert not out.exists()  # only the temp file, until commit
        w.commit()
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temp file left
    src = probe_video(out)
    assert (src.width, src.height, src.frames) == (160, 96, 48) and abs(src.fps - 24) < 1e-6
    assert {k: read_tags(out)[k] for k in tags} == tags
    assert probe_audio(out) == "aac"
    samples = audio_samples(out)
    assert abs(len(samples) / 8000 - 2.0) < 0.1
    assert abs(peak_hz(samples) - 440) < 5


def test_writer_trims_the_audio_to_a_frame_range(tone_clip, tmp_path):
    out = tmp_path / "part.mp4"
    with VideoWriter(out, 160, 96, 24.0, audio_from=tone_clip, audio_start=0.5,
                     audio_duration=1.0) as w:  # fmt: skip
        for f in _frames(24):
            w.write(f)
        w.commit()
    assert abs(len(audio_samples(out)) / 8000 - 1.0) < 0.1
    assert probe_video(out).frames == 24


def test_writer_without_audio_and_with_odd_size(tmp_path):
    out = tmp_path / "odd.mkv"
    with VideoWriter(out, 161, 95, 30000 / 1001) as w:
        for f in _frames(5, 161, 95):
            w.write(f)
        w.commit()
    src = probe_video(out)
    assert (src.width, src.height) == (162, 96)  # padded to even sides for 4:2:0
    assert probe_audio(out) is None
    assert fps_fraction(30000 / 1001) == "30000/1001" and fps_fraction(25.0) == "25/1"


def test_abort_and_exceptions_leave_no_file(tmp_path):
    out = tmp_path / "x.mp4"
    out.write_bytes(b"old output")
    with pytest.raises(RuntimeError), VideoWriter(out, 64, 64, 24.0) as w:
        w.write(_frames(1, 64, 64)[0])
        raise RuntimeError("stage failed")
    assert out.read_bytes() == b"old output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"]
    with pytest.raises(BadInput, match="must end in"):
        VideoWriter(tmp_path / "x.avi", 64, 64, 24.0)
    w = VideoWriter(tmp_path / "y.mp4", 64, 64, 24.0)
    with pytest.raises(ValueError, match="frame must be"):
        w.write(np.zeros((10, 10, 3), np.uint8))
    w.proc.kill()  # the encoder dies (disk full, killed): one clear error, nothing left
    w.proc.wait()
    with pytest.raises(BadInput, match="encoder stopped|encoding failed"):
        for f in _frames(50, 64, 64):
            w.write(f)
        w.finish()
    w.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"]


def test_parse_ffmetadata_unescapes():
    text = ";FFMETADATA1\nsynthetic=true\ncomment=a \\= b\\; c\\\\d\\\nline2\n[STREAM]\nx=y\n"
    assert parse_ffmetadata(text) == {"synthetic": "true", "comment": "a = b; c\\d\nline2"}


# ---- provenance pieces --------------------------------------------------------------------


def _label():
    return provenance.make_label(
        source_path="/clips/in.mp4", source_sha256="ab" * 32,
        run={"folder": "/runs/r", "checkpoint": "/runs/r/checkpoints/best", "step": 12},
        settings={"color": "rct"}, frames={"start": 0, "end": None}, watermark=True,
        created="2026-01-01T00:00:00+00:00",
    )  # fmt: skip


def test_sidecar_and_container_tags(tmp_path):
    label = _label()
    out = tmp_path / "swap.mp4"
    out.write_bytes(b"video")
    side = provenance.write_sidecar(out, label, "cd" * 32, "video")
    assert side.name == "swap.mp4.provenance.json"
    data = json.loads(side.read_text())
    assert data["synthetic"] is True and "synthetic" in data["statement"]
    assert data["tool"].startswith("faceswap ") and data["created"].endswith("+00:00")
    assert data["output"] == {"path": str(out), "sha256": "cd" * 32, "kind": "video"}
    assert data["source"] == {"path": "/clips/in.mp4", "sha256": "ab" * 32}
    assert data["run"]["folder"] == "/runs/r" and data["watermark"] is True
    tags = provenance.container_tags(label)
    assert tags["synthetic"] == "true" and tags["comment"] == label["statement"]
    assert tags["faceswap_run"] == "/runs/r" and "step 12" in tags["faceswap_checkpoint"]
    assert tags["faceswap_source"] == "in.mp4 sha256:" + "ab" * 32


def test_png_text_round_trip():
    import cv2

    ok, buf = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    tagged = provenance.png_with_text(buf.tobytes(), {"synthetic": "true", "comment": "ü ok"})
    assert provenance.png_text(tagged) == {"synthetic": "true", "comment": "ü ok"}
    assert np.array_equal(cv2.imdecode(np.frombuffer(tagged, np.uint8), 1), np.zeros((4, 4, 3)))


@pytest.mark.parametrize(("w", "h"), [(1280, 720), (160, 96)])
def test_watermark_is_visible_and_fits(w, h):
    frame = np.full((h, w, 3), 128, np.uint8)
    mark = provenance.Watermark(w, h)
    mark.apply(frame)
    changed = np.argwhere((frame != 128).any(-1))
    assert len(changed) > 0.002 * w * h
    assert changed[:, 0].min() > h / 2 and changed[:, 1].max() < w  # bottom-left, inside
    assert frame.max() > 200 and frame.min() < 80  # white text on a dark box


def test_writer_encodes_in_parallel_and_owns_each_frame(tmp_path):
    # frames go to ffmpeg from a thread: the caller may refill its buffer at once
    out = tmp_path / "levels.mp4"
    buf = np.zeros((64, 64, 3), np.uint8)
    levels = [20, 120, 220, 60]
    with VideoWriter(out, 64, 64, 24.0) as w:
        for v in levels:
            buf[:] = v
            w.write(buf)
        w.commit()
    from helpers import read_frames

    got = [int(round(f.mean())) for f in read_frames(out)]
    assert len(got) == len(levels)
    # (BT.601 limited range shifts a few levels; a reused buffer would repeat the last one)
    assert all(abs(g - v) <= 8 for g, v in zip(got, levels, strict=True)), got
