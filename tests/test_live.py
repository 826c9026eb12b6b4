"""Live: One-Euro smoothing, the drop-oldest queue, a file played as a camera, fake cameras that
stall or disconnect (a clear message, no hang), labels on the output, and bad input."""

import json
import threading
import time

import cv2
import numpy as np
import pytest

from faceswap.cli import main
from faceswap.convert.provenance import Watermark
from faceswap.errors import BadInput
from faceswap.live.config import LiveConfig
from faceswap.live.oneeuro import OneEuroFilter
from faceswap.live.session import run_live
from faceswap.live.sources import LatestQueue, SourceLost
from faceswap.media import read_tags, sha256_file

from helpers import read_frames


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---- One-Euro -------------------------------------------------------------------------------


def _ema(x, alpha):
    out, y = [], x[0]
    for v in x:
        y = y + alpha * (v - y)
        out.append(y)
    return np.array(out)


def test_one_euro_steadies_a_still_face_and_follows_a_moving_one():
    rng = np.random.default_rng(0)
    fps, n = 30.0, 120
    t = np.arange(n) / fps
    base = rng.uniform(100, 300, (68, 2))
    f = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    still = [f(base + rng.normal(0, 1.5, base.shape), ti) for ti in t]
    jitter_in = 1.5 * np.sqrt(2)
    jitter_out = np.linalg.norm(np.diff(still[30:], axis=0), axis=-1).mean()
    assert jitter_out < jitter_in / 4  # still: the wobble mostly gone
    # moving at 300 px/s: the One-Euro filter trails far less than a fixed low-pass as steady
    # at rest (the same cutoff, 1 Hz)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    truth = base[None] + (300.0 * t)[:, None, None] * np.array([1.0, 0.0])
    noisy = truth + rng.normal(0, 1.5, truth.shape)
    euro = np.stack([f(p, ti) for p, ti in zip(noisy, t)])
    alpha = 1 / (1 + 1 / (2 * np.pi * 1.0 / fps))
    fixed = _ema(noisy, alpha)
    lag_euro = np.abs(euro[60:, :, 0] - truth[60:, :, 0]).mean()
    lag_fixed = np.abs(fixed[60:, :, 0] - truth[60:, :, 0]).mean()
    assert lag_euro < lag_fixed / 5 and lag_euro < 8.0


def test_one_euro_is_causal_and_restarts():
    rng = np.random.default_rng(1)
    pts = rng.normal(0, 5, (10, 68, 2))
    a, b = OneEuroFilter(), OneEuroFilter()
    out_a = [a(p, i / 30) for i, p in enumerate(pts)]
    changed = pts.copy()
    changed[6:] += 50  # the future changes ...
    out_b = [b(p, i / 30) for i, p in enumerate(changed)]
    for i in range(6):  # ... the past outputs do not
        np.testing.assert_array_equal(out_a[i], out_b[i])
    a.reset()
    np.testing.assert_array_equal(a(pts[0] + 7, 1.0), pts[0] + 7)  # a new track starts fresh


def test_latest_queue_drops_the_oldest():
    q = LatestQueue(2)
    for i in range(5):
        q.put(i)
    assert q.dropped == 3 and q.get(0.1) == 3 and q.get(0.1) == 4
    with pytest.raises(TimeoutError):
        q.get(0.05)
    q.close()
    assert q.get(0.05) is None


# ---- fake cameras ----------------------------------------------------------------------------


class FakeCamera:
    """cv2.VideoCapture's face: real frames at `fps`, then stall (read blocks) or disconnect
    (reads fail and the device closes) after `frames`."""

    def __init__(self, frames, fps=30.0, then="stall"):
        self.frames, self.fps, self.then = frames, fps, then
        self.i, self.open, self.released = 0, True, False
        self.unblock = threading.Event()
        self.t_end = None  # when the frames ran out

    def isOpened(self):
        return self.open

    def get(self, prop):
        h, w = self.frames[0].shape[:2]
        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_FRAME_WIDTH: w,
                cv2.CAP_PROP_FRAME_HEIGHT: h}.get(prop, 0.0)  # fmt: skip

    def read(self):
        if self.i >= len(self.frames):
            self.t_end = self.t_end or time.perf_counter()
            if self.then == "stall":
                self.unblock.wait(60)  # a driver stuck in read: only a timeout saves us
                return False, None
            self.open = False
            return False, None
        time.sleep(1.0 / self.fps)
        frame = self.frames[self.i].copy()
        self.i += 1
        return True, frame

    def grab(self):
        return self.read()[0]

    def release(self):
        self.released = True


def _cfg(**kw):
    return LiveConfig(device="cpu", stall_timeout=kw.pop("stall_timeout", 1.0), **kw)


@pytest.mark.parametrize("then", ["stall", "disconnect"])
def test_a_camera_that_stalls_or_disconnects_ends_clearly(tiny_run, astronaut_clip, tmp_path,
                                                          then):  # fmt: skip
    frames = read_frames(astronaut_clip[0])[:12]
    cam = FakeCamera(frames, then=then)
    out = tmp_path / "cam.mp4"
    with pytest.raises(SourceLost) as exc:
        run_live("0", tiny_run, str(out), _cfg(), capture=lambda _: cam)
    waited = time.perf_counter() - cam.t_end
    cam.unblock.set()
    msg = str(exc.value)
    assert ("stalled: no frame for 1 s" if then == "stall" else "camera 0 disconnected") in msg
    assert "frames before it are saved in" in msg
    # no hang: the 1 s stall timeout, the last frames and closing the file (slack for a
    # loaded machine); a hang would sit in the fake driver's 60 s read
    assert waited < 20
    # what was recorded is complete and labelled
    label = json.loads((tmp_path / "cam.mp4.provenance.json").read_text())
    assert label["synthetic"] and label["source"] == {"path": "camera 0", "sha256": None}
    assert label["frames"]["ended"].startswith("source lost") and label["output"]["sha256"] == (
        sha256_file(out)
    )  # fmt: skip
    assert 1 <= len(read_frames(out)) <= 12
    assert not list(tmp_path.glob(".*partial"))


def test_a_fast_camera_drops_frames_instead_of_queueing(tiny_run, astronaut_clip, tmp_path):
    frames = read_frames(astronaut_clip[0])
    cam = FakeCamera(frames * 4, fps=400.0, then="disconnect")  # far faster than the model
    s = None
    with pytest.raises(SourceLost, match="disconnected"):
        run_live("0", tiny_run, str(tmp_path / "fast.mp4"), _cfg(), capture=lambda _: cam)
    label = json.loads((tmp_path / "fast.mp4.provenance.json").read_text())
    f = label["frames"]
    assert f["read"] == 96 and f["dropped"] > 0 and f["processed"] + f["dropped"] <= 96
    assert f["processed"] < 96 and s is None
    # the file keeps real time: drops are filled with the previous frame
    assert (
        len(read_frames(tmp_path / "fast.mp4")) >= f["processed"] + f["repeated_to_fill_drops"] - 1
    )


# ---- a file played as a camera -----------------------------------------------------------------


def test_live_on_a_file_writes_a_labelled_video(capsys, tiny_run, astronaut_clip, tmp_path):
    clip = astronaut_clip[0]
    out = tmp_path / "live.mp4"
    code, stdout, err = _cli(capsys, "live", "-m", tiny_run, "--source", clip, "--output", out,
                             "--device", "cpu", "--json")  # fmt: skip
    assert code == 0, err
    s = json.loads(stdout)
    assert s["source_kind"] == "file" and s["ended"] == "end of source"
    # every frame is accounted for: processed, dropped (model busy) or skipped (reader late);
    # how many of each depends on the machine's load
    assert s["frames_read"] + s["frames_skipped"] == 24
    assert s["frames_processed"] + s["frames_dropped"] == s["frames_read"]
    assert s["frames_processed"] >= 1 and s["frames_with_face"] >= 0.8 * s["frames_processed"]
    assert s["latency_ms"]["p50"] > 0 and s["full_searches"] <= s["frames_processed"]
    assert s["seconds"] >= 0.9  # 24 frames at 24 fps take a second in real time
    before, after = np.stack(read_frames(clip)).astype(int), read_frames(out)
    assert len(after) == s["frames_processed"] + s["frames_repeated"]
    last = after[-1].astype(int)
    # the visible label: the bottom-left box darkens the frame there (against any source frame)
    h, w = last.shape[:2]
    mark = Watermark(w, h)
    ys, xs = (
        slice(mark.y0, mark.y0 + mark.alpha.shape[0]),
        slice(mark.x0, mark.x0 + mark.alpha.shape[1]),
    )
    assert last[ys, xs].mean() < before[:, ys, xs].mean(axis=(1, 2, 3)).min() - 30
    # the face changed: the frame differs from every source frame where the face is
    diff = np.abs(last[None, 100:260, 240:400] - before[:, 100:260, 240:400]).mean(axis=(1, 2, 3))
    assert diff.min() > 5
    label = json.loads((tmp_path / "live.mp4.provenance.json").read_text())
    assert label["synthetic"] and label["settings"]["live"] and label["watermark"]
    assert label["source"]["sha256"] == sha256_file(clip) and label["run"]["step"] == 12
    assert read_tags(out)["synthetic"] == "true"


def test_live_runs_an_onnx_model_on_every_frame(tiny_run, astronaut_clip, tmp_path):
    pytest.importorskip("onnxruntime")
    from faceswap.export.onnx import export_onnx

    model = tmp_path / "m.onnx"
    export_onnx(tiny_run, model, check=False)
    out = tmp_path / "all.mp4"
    s = run_live(str(astronaut_clip[0]), model, str(out), _cfg(watermark=False), realtime=False)
    assert s.frames_processed == 24 and s.frames_dropped == 0 and s.device == (
        "CPUExecutionProvider"
    )  # fmt: skip
    assert len(read_frames(out)) == 24
    label = json.loads((tmp_path / "all.mp4.provenance.json").read_text())
    assert label["run"]["onnx"]["path"] == str(model) and label["watermark"] is False


def test_bad_input(capsys, tiny_run, astronaut_clip, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    clip = astronaut_clip[0]
    cases = [
        (["--source", clip], "--output window: no display"),
        (["--source", clip, "--output", tmp_path / "x.avi"], "must be window, virtual-camera"),
        (["--source", tmp_path / "none.mp4", "--output", tmp_path / "o.mp4"], "no such file"),
        (["--source", clip, "--output", tmp_path / "o.mp4", "--provider", "tpu"], "--provider"),
        (["--source", clip, "--output", tmp_path / "o.mp4", "--beta", "-1"], "beta"),
        (["--source", clip, "--output", clip], "exists; pass --overwrite"),
    ]
    import importlib.util

    if importlib.util.find_spec("pyvirtualcam") is None:
        cases.append((["--source", clip, "--output", "virtual-camera"], "needs pyvirtualcam"))
    for argv, needle in cases:
        code, _, err = _cli(capsys, "live", "-m", tiny_run, *argv)
        assert code == 2, (argv, err)
        assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.mp4").exists()
    with pytest.raises(BadInput, match="cannot open it"):
        run_live("7", tiny_run, str(tmp_path / "o.mp4"), _cfg(),
                 capture=lambda _: type("Closed", (), {"isOpened": lambda self: False})())  # fmt: skip


def test_config_layers_live_defaults_yaml_and_flags(tmp_path):
    from faceswap.cli import build_parser
    from faceswap.cli.live import _config

    cfg_file = tmp_path / "live.yaml"
    cfg_file.write_text("beta: 0.1\nextract:\n  detector: dlib-hog\n")
    args = build_parser().parse_args(["live", "-m", "x", "--source", "0", "--config",
                                      str(cfg_file), "--min-size", "50", "--no-smooth"])  # fmt: skip
    cfg = _config(args)
    assert cfg.beta == 0.1 and cfg.smooth is False and cfg.watermark is True
    # live's own extract defaults stay unless the YAML or a flag says otherwise
    assert (cfg.extract.detector, cfg.extract.min_size) == ("dlib-hog", 50)
    assert (cfg.extract.max_faces, cfg.extract.redetect_every) == (1, 15)


# ---- window and virtual camera (no display or camera device here: faked at their APIs) --------


def test_window_output_shows_labelled_frames_and_q_closes_it(tiny_run, astronaut_clip,
                                                             monkeypatch):  # fmt: skip
    shown, keys = [], iter([-1, -1, -1, ord("q")])
    monkeypatch.setenv("DISPLAY", ":0")
    for name, fake in {"namedWindow": lambda *a: None, "destroyWindow": lambda *a: None,
                       "destroyAllWindows": lambda: None,
                       "imshow": lambda title, frame: shown.append(frame.copy()),
                       "waitKey": lambda ms: next(keys, -1),
                       "getWindowProperty": lambda *a: 1.0}.items():  # fmt: skip
        monkeypatch.setattr(cv2, name, fake)
    s = run_live(str(astronaut_clip[0]), tiny_run, "window", _cfg(), realtime=False)
    assert s.output_kind == "window" and s.ended == "closed by the user"
    assert len(shown) == 4 and s.frames_processed == 4  # q on the fourth frame
    frame = shown[-1].astype(int)
    mark = Watermark(frame.shape[1], frame.shape[0])  # the visible label is on the window too
    box = frame[mark.y0 : mark.y0 + mark.alpha.shape[0], mark.x0 : mark.x0 + mark.alpha.shape[1]]
    src = read_frames(astronaut_clip[0])[3].astype(int)
    assert box.mean() < src[mark.y0 : mark.y0 + mark.alpha.shape[0],
                            mark.x0 : mark.x0 + mark.alpha.shape[1]].mean() - 30  # fmt: skip


def test_virtual_camera_gets_every_frame_at_the_source_size(tiny_run, astronaut_clip,
                                                            monkeypatch):  # fmt: skip
    import importlib.machinery
    import sys
    import types

    sent, opened = [], {}

    class Camera:
        def __init__(self, width, height, fps, fmt=None):
            opened.update(width=width, height=height, fps=fps, fmt=fmt, closed=False)
            self.device = "/dev/video9"

        def send(self, frame):
            sent.append(frame.shape)

        def close(self):
            opened["closed"] = True

    fake = types.ModuleType("pyvirtualcam")
    fake.Camera, fake.PixelFormat = Camera, types.SimpleNamespace(BGR="BGR")
    fake.__spec__ = importlib.machinery.ModuleSpec("pyvirtualcam", None)  # find_spec sees it
    monkeypatch.setitem(sys.modules, "pyvirtualcam", fake)
    s = run_live(str(astronaut_clip[0]), tiny_run, "virtual-camera", _cfg(), realtime=False)
    h, w = read_frames(astronaut_clip[0])[0].shape[:2]
    assert s.output_kind == "virtual-camera" and s.ended == "end of source"
    assert len(sent) == s.frames_processed == 24 and set(sent) == {(h, w, 3)}
    assert (opened["width"], opened["height"], opened["fmt"], opened["closed"]) == (w, h, "BGR",
                                                                                   True)  # fmt: skip
