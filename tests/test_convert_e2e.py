"""End to end: convert generated clips with the tiny trained run (CLI and library), outputs,
labels, audio, previews, bad input and interruption."""

import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest
from test_convert_media import add_tone, audio_samples, peak_hz

from faceswap import faceset as fsmod
from faceswap.cli import main
from faceswap.config import ExtractConfig
from faceswap.convert import provenance
from faceswap.convert.config import ConvertConfig
from faceswap.convert.pipeline import convert
from faceswap.convert.select import IdentitySelector
from faceswap.errors import BadInput
from faceswap.media import probe_audio, probe_video, read_tags, sha256_file
from faceswap.synthetic import render_clip

from helpers import read_frames


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


@pytest.fixture(scope="module")
def clip_a(faceset_pair):
    """The clip face set A was extracted from (480x270, 120 frames at 24 fps)."""
    return faceset_pair[0].parent / "a.mp4"


def test_cli_convert_with_alignments(capsys, tiny_run, faceset_pair, clip_a, tmp_path):
    out = tmp_path / "swap.mp4"
    code, stdout, err = _cli(capsys, "convert", clip_a, "-m", tiny_run, "-o", out,
                             "--alignments", faceset_pair[0], "--frames", "10-58", "--json")  # fmt: skip
    assert code == 0, err
    s = json.loads(stdout)
    assert s["frames"] == 48 and s["frames_swapped"] == 48 and s["faces_swapped"] == 48
    assert s["faces_from"] == "alignments" and s["stage_frames_per_second"]["swap"] > 0
    src, dst = probe_video(clip_a), probe_video(out)
    assert (dst.width, dst.height, dst.frames) == (src.width, src.height, 48)
    assert abs(dst.fps - src.fps) < 1e-6
    # the face changed, the background did not (beyond H.264 noise)
    before, after = read_frames(clip_a)[10:58], read_frames(out)
    assert len(after) == 48
    face = next(f for f in fsmod.load(faceset_pair[0]).faces if f.frame == 30)
    inner = np.zeros(before[20].shape[:2], np.uint8)  # the landmarks' hull: what is swapped
    cv2.fillConvexPoly(inner, cv2.convexHull(np.round(face.landmarks).astype(np.int32)), 1)
    diff = np.abs(after[20].astype(int) - before[20].astype(int)).mean(-1)
    assert diff[inner > 0].mean() > 8 * max(1.0, diff[:, :40].mean())
    # the provenance label: sidecar and container tags
    label = json.loads((tmp_path / "swap.mp4.provenance.json").read_text())
    assert label["synthetic"] is True and label["output"]["sha256"] == sha256_file(out)
    assert label["source"] == {"path": str(clip_a), "sha256": sha256_file(clip_a)}
    assert label["run"]["folder"] == str(tiny_run) and label["run"]["step"] == 12
    assert label["run"]["checkpoint"].endswith("checkpoints/best")
    assert label["frames"]["start"] == 10 and label["settings"]["alignments"] == str(
        faceset_pair[0]
    )
    assert label["watermark"] is False and label["created"].endswith("+00:00")
    tags = read_tags(out)
    assert tags["synthetic"] == "true" and "synthetic" in tags["comment"]
    assert tags["faceswap_run"] == str(tiny_run) and sha256_file(clip_a) in tags["faceswap_source"]
    assert provenance.read_label(out)["sha256_matches"] is True
    # an existing output is refused (nothing touched), and replaced with --overwrite
    mtime = out.stat().st_mtime_ns
    code, _, err = _cli(capsys, "convert", clip_a, "-m", tiny_run, "-o", out, "--alignments",
                        faceset_pair[0], "--frames", "0-4")  # fmt: skip
    assert code == 2 and "exists; pass --overwrite" in err and err.count("\n") == 1
    assert out.stat().st_mtime_ns == mtime
    code, _, err = _cli(capsys, "convert", clip_a, "-m", tiny_run, "-o", out, "--alignments",
                        faceset_pair[0], "--frames", "0-4", "--overwrite")  # fmt: skip
    assert code == 0, err
    assert probe_video(out).frames == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swap.mp4", "swap.mp4.provenance.json"]


def test_detection_keeps_the_audio_and_watermarks(astronaut_clip, tiny_run, tmp_path):
    clip = add_tone(astronaut_clip[0], tmp_path / "tone.mp4", hz=660)
    out = tmp_path / "out.mkv"
    cfg = ConvertConfig(watermark=True, blend="seamless", color="hist", sharpen=0.5,
                        extract=ExtractConfig(workers=1))  # fmt: skip
    s = convert(clip, tiny_run, out, cfg)
    assert s.frames == 24 and s.faces_swapped >= 22 and s.faces_from == "dlib-hog + dlib"
    assert s.audio == "aac" and probe_audio(out) == "aac"
    assert abs(peak_hz(audio_samples(out)) - 660) < 5
    frames = read_frames(out)
    assert len(frames) == 24
    h = frames[0].shape[0]
    corner = frames[0][h - h // 12 :, : frames[0].shape[1] // 3]
    assert corner.max() > 200 and corner.min() < 60  # the visible label
    assert json.loads(provenance.sidecar_path(out).read_text())["watermark"] is True


def test_preview_strip_and_image_folder(tiny_run, faceset_pair, clip_a, tmp_path):
    cfg = ConvertConfig()
    s = convert(clip_a, tiny_run, tmp_path / "check.png", cfg, alignments=faceset_pair[0],
                preview=3)  # fmt: skip
    assert s.kind == "preview" and s.frames == 3
    strip = cv2.imread(str(tmp_path / "check.png"))
    assert strip.shape[0] == 2 * 240 and strip.shape[1] > 3 * 400  # before above after
    png = (tmp_path / "check.png").read_bytes()
    assert provenance.png_text(png)["synthetic"] == "true"
    b2a = ConvertConfig(direction="b2a")  # the other decoder
    s = convert(clip_a, tiny_run, tmp_path / "frames", b2a, alignments=faceset_pair[0],
                start=5, end=9)  # fmt: skip
    assert s.kind == "images" and s.direction == "b2a" and s.faces_swapped == 4
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == ["000005.png", "000006.png", "000007.png", "000008.png"]
    assert provenance.png_text((tmp_path / "frames" / names[0]).read_bytes())["synthetic"] == "true"
    # the label's hash is `(cd frames && sha256sum *.png) | sha256sum`
    listing = subprocess.run("sha256sum *.png", shell=True, cwd=tmp_path / "frames",
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    import hashlib

    label = json.loads((tmp_path / "frames.provenance.json").read_text())
    assert label["run"]["direction"] == "b2a" and label["output"]["kind"] == "images"
    assert label["output"]["sha256"] == hashlib.sha256(listing.encode()).hexdigest()


def test_interrupt_leaves_no_output(tiny_run, faceset_pair, clip_a, tmp_path):
    out = tmp_path / "x.mp4"
    out.write_bytes(b"previous output")

    def progress(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert(clip_a, tiny_run, out, ConvertConfig(), alignments=faceset_pair[0],
                overwrite=True, progress=progress)  # fmt: skip
    assert out.read_bytes() == b"previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"]  # no temp file, no label


def test_bad_input_is_one_line_and_writes_nothing(capsys, tiny_run, faceset_pair, clip_a,
                                                   tmp_path):  # fmt: skip
    out = tmp_path / "o" / "out.mp4"

    def refused(*args, match):
        code, _, err = _cli(capsys, "-q", "convert", *args)
        assert code == 2 and match in err and err.count("\n") == 1, err
        assert not (tmp_path / "o").exists()

    # a run without a checkpoint
    empty = tmp_path / "empty_run"
    empty.mkdir()
    shutil.copy(tiny_run / "config.yaml", empty / "config.yaml")
    refused(clip_a, "-m", empty, "-o", out, match="no checkpoint found")
    # a checkpoint without the decoder the direction needs
    import safetensors.torch as st

    ck = tmp_path / "nodec" / "checkpoints" / "step-00000012"
    shutil.copytree(tiny_run / "checkpoints" / "best", ck)
    shutil.copy(tiny_run / "config.yaml", tmp_path / "nodec" / "config.yaml")
    w = st.load_file(ck / "model.safetensors")
    st.save_file({k: v for k, v in w.items() if not k.startswith("decoder_b.")},
                 ck / "model.safetensors")  # fmt: skip
    refused(clip_a, "-m", tmp_path / "nodec", "-o", out, match="cannot do a2b")
    refused(clip_a, "-m", tiny_run, "-o", out, "--direction", "sideways", match="direction")
    # a clip that cannot be read
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    refused(bad, "-m", tiny_run, "-o", out, match="bad.mp4")
    # a clip with no faces
    grey = tmp_path / "grey.mp4"
    render_clip(grey, 6, frame_size=(160, 96), face_rgb=np.full((8, 8, 3), 128, np.uint8),
                face_center=(4.0, 4.0))  # fmt: skip
    refused(grey, "-m", tiny_run, "-o", out, "--detect-workers", "1", match="no face found")
    # alignments from another clip, an unknown output type, a preview without .png
    refused(grey, "-m", tiny_run, "-o", out, "--alignments", faceset_pair[0],
            match="holds no faces of")  # fmt: skip
    refused(clip_a, "-m", tiny_run, "-o", tmp_path / "o" / "out.avi", match="unknown output")
    refused(clip_a, "-m", tiny_run, "-o", out, "--preview", "3", match="must end in .png")
    refused(clip_a, "-m", tiny_run, "-o", clip_a, "--overwrite", match="is the input clip")
    # select identity without references (the tiny run's face sets have no embeddings)
    refused(clip_a, "-m", tiny_run, "-o", out, "--select", "identity",
            match="no identity embeddings")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4", "empty_run", "grey.mp4",
                                                          "nodec"]  # fmt: skip


def test_identity_selection_per_track():
    ref = np.zeros((1, 128), np.float32)
    sel = IdentitySelector(ref, threshold=0.6, every=4)
    me, other = np.full(128, 0.01, np.float32), np.full(128, 0.2, np.float32)
    calls = []

    class Fake:  # stands in for dlib: the embedding is chosen by where the face is
        def embed(self, rgb, lms):
            calls.append(lms[0, 0])
            return me if lms[0, 0] < 100 else other

    sel.embedder = Fake()
    left, right = np.zeros((68, 2)), np.full((68, 2), 200.0)
    kept = [(sel.keep(None, i, 0, left), sel.keep(None, i, 1, right)) for i in range(8)]
    assert kept == [(True, False)] * 8
    assert len(calls) == 4  # each track embedded at frames 0 and 4 only
    # faces that come with an embedding (from a face set) use it
    assert sel.keep(None, 9, 2, right, embedding=me) is True
    assert round(sel.nearest, 4) == round(float(np.linalg.norm(me)), 4)


def _default_sigint() -> None:
    """In the child, before exec: SIGINT at its default and unblocked, as a shell starts a
    command. A child inherits an ignored or blocked SIGINT, and Python then never raises
    KeyboardInterrupt: in the full suite the convert ran to its end (exit 0) while the test
    alone passed."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def test_ctrl_c_on_the_command_line(tiny_run, clip_a, tmp_path):
    import os
    import signal
    import sys
    import time

    out = tmp_path / "swap.mp4"
    # no --alignments: every frame is detected, so the clip is still in flight seconds after
    # the .partial appears (with alignments a 120-frame clip could finish within the poll)
    proc = subprocess.Popen([sys.executable, "-m", "faceswap", "convert", str(clip_a), "-m",
                             str(tiny_run), "-o", str(out), "--batch-size", "1", "--smooth",
                             "0", "--preset", "veryslow"],
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    # what Ctrl-C sends, mid-encode (ffmpeg creates the .partial after its first frames; a
    # slow x264 preset keeps the rest of the clip in flight long after that, even on a loaded
    # machine where the convert finished within the poll before)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; no output was written" in err
    assert list(tmp_path.iterdir()) == []


def test_default_config_file_is_the_defaults_and_bad_values_are_refused():
    from pathlib import Path

    from faceswap.config import from_dict, load_yaml, to_dict

    path = Path(__file__).resolve().parents[1] / "configs" / "convert" / "default.yaml"
    cfg = from_dict(ConvertConfig, load_yaml(path), str(path))
    assert to_dict(cfg) == to_dict(ConvertConfig())
    for bad, match in (({"colour": "rct"}, "unknown key 'colour'"), ({"color": "x"}, "color"),
                       ({"feather": 0.9}, "feather"), ({"extract": {"detector": "x"}}, "detector"),
                       ({"crf": 60}, "crf"), ({"preset": "quick"}, "preset"),
                       ({"forehead": 1.5}, "forehead"), ({"edge_color": -0.1}, "edge_color")):  # fmt: skip
        with pytest.raises(BadInput, match=match):
            from_dict(ConvertConfig, bad, "test")


def test_frames_without_a_face_pass_through_unchanged(tiny_run, faceset_pair, clip_a, tmp_path):
    # a copy of face set A's index (and arrays) without the faces of frames 2 and 3 (images
    # are not needed)
    fs_dir = tmp_path / "fs"
    fs_dir.mkdir()
    index = json.loads((faceset_pair[0] / "faceset.json").read_text())
    index["faces"] = [f for f in index["faces"] if f["frame"] not in (2, 3)]
    (fs_dir / "faceset.json").write_text(json.dumps(index))
    arrays = index["arrays"]["file"]
    shutil.copyfile(faceset_pair[0] / arrays, fs_dir / arrays)
    dead = next(p for p in range(4_000_000, 4_100_000) if not _alive(p))
    stale = tmp_path / f".frames.{dead}-0123abcd.partial"  # left by a killed convert
    stale.mkdir()
    (stale / "000000.png").write_bytes(b"half")
    s = convert(clip_a, tiny_run, tmp_path / "frames", ConvertConfig(), alignments=fs_dir, end=6)
    assert not stale.exists()
    assert (s.frames, s.frames_swapped, s.frames_unchanged) == (6, 4, 2)
    source = read_frames(clip_a)[:6]
    out = [cv2.imread(str(tmp_path / "frames" / f"{i:06d}.png")) for i in range(6)]
    for i in (2, 3):
        assert np.array_equal(out[i], source[i])  # bit for bit: PNG output, no face, no mark
    assert not np.array_equal(out[1], source[1])
