"""A live session: capture -> track + smooth -> swap -> composite -> label -> show or write.

    capture thread   frames from the camera / file / stream into a LatestQueue of `queue`
                     frames: when the rest is slower than the source, the oldest frame is
                     dropped (never an unbounded backlog, so latency stays bounded)
    track thread     extract's tracker (detector near the last box, full search every
                     `redetect_every` frames), One-Euro smoothing, the model's crops
    main thread      the model (torch or onnxruntime), convert's compositing, the visible
                     "synthetic" label, then the window / file / virtual camera

Track and swap overlap (a one-slot hand-off between them), so on two cores the session runs at
the pace of the slower of the two, not of their sum. Latency is measured per frame from the
moment the capture thread had it to the moment the output took it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceswap.config import to_dict
from faceswap.convert import provenance
from faceswap.convert.model import load_swap_model
from faceswap.convert.onnx_model import load_onnx_model
from faceswap.convert.pipeline import FaceJob, composite
from faceswap.convert.warp import crop_face, face_matrices
from faceswap.errors import BadInput
from faceswap.live.config import LiveConfig
from faceswap.live.outputs import (
    FileOutput,
    Output,
    VirtualCameraOutput,
    WindowOutput,
    check_file_output,
    display_available,
)
from faceswap.live.sources import Frame, LatestQueue, Source, SourceLost, open_source
from faceswap.live.tracker import LiveTracker

log = logging.getLogger(__name__)

OUTPUT_KINDS = ("window", "virtual-camera")


@dataclass
class LiveSummary:
    source: str
    source_kind: str
    output: str
    output_kind: str
    model: str
    step: int
    device: str
    faces_from: str
    width: int
    height: int
    source_fps: float
    frames_read: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0  # captured but never processed (the session was slower)
    frames_skipped: int = 0  # file frames the real-time reader was too late for
    frames_with_face: int = 0
    faces_swapped: int = 0
    frames_repeated: int = 0  # file output: drops filled with the previous frame
    full_searches: int = 0
    seconds: float = 0.0
    frames_per_second: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    stage_ms: dict[str, float] = field(default_factory=dict)  # mean wall ms per frame
    # mean CPU ms per frame of the stage's own thread: what the stage costs whatever else
    # runs on the machine (wall ms include waiting for a core on a loaded one)
    stage_cpu_ms: dict[str, float] = field(default_factory=dict)
    ended: str = ""
    sidecar: str | None = None
    watermark: bool = True


@dataclass
class _Work:
    frame: Frame
    faces: list[FaceJob]


def load_model(path: str | os.PathLike, cfg: LiveConfig):
    """A run folder / checkpoint (PyTorch) or an exported .onnx (onnxruntime)."""
    if Path(path).suffix.lower() == ".onnx":
        return load_onnx_model(path, cfg.direction, cfg.device, cfg.threads)
    return load_swap_model(path, cfg.direction, cfg.device, "auto")


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    v = np.asarray(values) * 1000.0
    return {"p50": round(float(np.percentile(v, 50)), 1),
            "p95": round(float(np.percentile(v, 95)), 1), "max": round(float(v.max()), 1)}  # fmt: skip


def check_output(output: str, overwrite: bool) -> str:
    """The output's kind (window, virtual-camera, file), checked before anything starts."""
    if output == "window":
        why = display_available()
        if why is not None:
            raise BadInput(f"--output window: {why}; write a file instead (--output out.mp4)")
        return "window"
    if output == "virtual-camera":
        import importlib.util

        if importlib.util.find_spec("pyvirtualcam") is None:
            raise BadInput("--output virtual-camera needs pyvirtualcam (pip install pyvirtualcam)"
                           " and a virtual camera device (v4l2loopback on Linux, OBS on Windows "
                           "and macOS)")  # fmt: skip
        return "virtual-camera"
    check_file_output(Path(output), overwrite)
    return "file"


def run_live(
    source: str,
    model_path: str | os.PathLike,
    output: str,
    cfg: LiveConfig,
    *,
    realtime: bool = True,
    duration: float | None = None,
    max_frames: int | None = None,
    overwrite: bool = False,
    progress: Callable[[LiveSummary], None] | None = None,
    capture: Callable[[Any], Any] | None = None,
    stop: threading.Event | None = None,
    random_init: bool = False,
) -> LiveSummary:
    """Swap the faces of a live source until it ends, `duration` s or `max_frames` pass, the
    window is closed (q), `stop` is set, or Ctrl-C. The output is complete and labelled in
    every case; then SourceLost is raised if the source stalled or disconnected.

    capture: VideoCapture factory (tests: a fake camera). random_init: detector/aligner
    weights may be random (tests).
    """
    created = provenance.now_utc()
    kind = check_output(output, overwrite)
    if not cfg.watermark:
        log.warning("the visible 'synthetic' label is off: anyone watching this output must be "
                    "told that it is synthetic (docs/ethics.md)")  # fmt: skip
    # the source first: a wrong --source fails before seconds of model loading
    src = open_source(source, realtime=realtime, queue=cfg.queue,
                      stall_timeout=cfg.stall_timeout, capture=capture)  # fmt: skip
    try:
        model = load_model(model_path, cfg)
        tracker = LiveTracker(cfg.extract, cfg.smooth, cfg.min_cutoff, cfg.beta, random_init)
    except BaseException:
        src.close()
        raise
    ccfg = cfg.composite_config()
    # crops are cut by the model's face size and centering, as in convert
    res, crop_size, centering = model.resolution, model.crop_size, model.centering
    summary = LiveSummary(
        source=src.name, source_kind=src.kind, output=output, output_kind=kind,
        model=str(model.run_dir), step=model.step,
        device=getattr(model, "provider", None) or str(model.device),
        faces_from=f"{tracker.backends.detector} + {tracker.backends.aligner}, tracked",
        width=src.width, height=src.height, source_fps=src.fps, watermark=cfg.watermark,
    )  # fmt: skip
    label = provenance.make_label(
        source_path=src.name, source_sha256=_sha(src), run=model.lineage(),
        settings={**to_dict(cfg), "live": True, "realtime": src.realtime},
        frames={"fps": src.fps, "width": src.width, "height": src.height}, watermark=cfg.watermark,
        created=created,
    )  # fmt: skip

    stop = stop or threading.Event()
    handoff = LatestQueue(1)  # track -> swap; the track thread waits for room (no drop here)
    errors: list[BaseException] = []
    stage = {"track": 0.0, "swap": 0.0, "composite": 0.0, "output": 0.0}
    stage_cpu = dict.fromkeys(stage, 0.0)

    def track_loop() -> None:
        try:
            while not stop.is_set():
                frame = src.next_frame()
                if frame is None:
                    break
                t0, c0 = time.perf_counter(), time.thread_time()
                jobs = []
                for face in tracker.faces(frame.image, frame.t):
                    m_crop, m_model = face_matrices(face.landmarks, crop_size, res, centering)
                    crop = crop_face(frame.image, m_crop, crop_size, res)
                    jobs.append(FaceJob(face.landmarks, m_model, crop))
                stage["track"] += time.perf_counter() - t0
                stage_cpu["track"] += time.thread_time() - c0
                handoff.put_wait(_Work(frame, jobs), stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
        finally:
            handoff.close()

    torch_threads = None
    if getattr(model, "provider", None) is None and model.device.type == "cpu":
        import torch

        torch_threads = torch.get_num_threads()
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // 2))
    out: Output | None = None
    latencies: list[float] = []
    watermark = None
    t_start = time.perf_counter()
    src.start()
    worker = threading.Thread(target=track_loop, name="live-track", daemon=True)
    worker.start()
    ended = "end of source"
    try:
        while True:
            if duration is not None and time.perf_counter() - t_start >= duration:
                ended = "duration"
                break
            if max_frames is not None and summary.frames_processed >= max_frames:
                ended = "max frames"
                break
            try:
                work = handoff.get(0.1)
            except TimeoutError:
                if stop.is_set():
                    ended = "stopped"
                    break
                continue
            if work is None:
                break
            frame = work.frame
            img = frame.image
            if out is None:
                h, w = img.shape[:2]
                summary.width, summary.height = w, h
                watermark = provenance.Watermark(w, h) if cfg.watermark else None
                out = _open_output(kind, output, w, h, src.fps, label, cfg)
            t0, c0 = time.perf_counter(), time.thread_time()
            if work.faces:
                rgb, masks = model.swap(np.stack([f.crop for f in work.faces]))
                for k, f in enumerate(work.faces):
                    f.swapped = rgb[k]
                    f.mask = None if masks is None else masks[k]
            t1, c1 = time.perf_counter(), time.thread_time()
            if work.faces:
                composite(img, work.faces, ccfg, res)
            if watermark is not None:
                watermark.apply(img)
            t2, c2 = time.perf_counter(), time.thread_time()
            keep_going = out.write(frame.index, img)
            t3, c3 = time.perf_counter(), time.thread_time()
            latencies.append(t3 - frame.t)
            stage["swap"] += t1 - t0
            stage["composite"] += t2 - t1
            stage["output"] += t3 - t2
            stage_cpu["swap"] += c1 - c0
            stage_cpu["composite"] += c2 - c1
            stage_cpu["output"] += c3 - c2
            summary.frames_processed += 1
            if work.faces:
                summary.frames_with_face += 1
                summary.faces_swapped += len(work.faces)
            if progress is not None:
                _fill(summary, src, tracker, out, latencies, stage, stage_cpu, t_start)
                progress(summary)
            if not keep_going:
                ended = "closed by the user"
                break
    except KeyboardInterrupt:
        ended = "interrupted (Ctrl-C)"
    except BaseException:
        stop.set()
        src.close()
        if out is not None:
            out.abort()
        raise
    finally:
        stop.set()
        worker.join(timeout=2.0)
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
    src.close()
    _fill(summary, src, tracker, out, latencies, stage, stage_cpu, t_start)
    lost = next((e for e in errors if isinstance(e, SourceLost)), None)
    other = next((e for e in errors if not isinstance(e, SourceLost)), None)
    if other is not None:
        if out is not None:
            out.abort()
        raise other
    summary.ended = f"source lost: {lost}" if lost is not None else ended
    if out is None:
        if lost is not None:
            raise lost
        raise BadInput(f"--source {source}: no frame was read")
    label["frames"].update({"read": summary.frames_read, "processed": summary.frames_processed,
                            "dropped": summary.frames_dropped, "with_face": summary.frames_with_face,
                            "repeated_to_fill_drops": summary.frames_repeated,
                            "ended": summary.ended})  # fmt: skip
    out.finish(label)
    if kind == "file":
        summary.sidecar = str(provenance.sidecar_path(output))
    if lost is not None:
        saved = f"; the {summary.frames_processed} frames before it are saved in {output}" if (
            kind == "file") else ""  # fmt: skip
        raise SourceLost(f"{lost}{saved}")
    return summary


def _sha(src: Source) -> str | None:
    if src.kind != "file":
        return None  # a camera or stream has no file to hash
    from faceswap.media import sha256_file

    return sha256_file(Path(src.spec))


def _open_output(kind: str, output: str, w: int, h: int, fps: float, label: dict,
                 cfg: LiveConfig) -> Output:  # fmt: skip
    if kind == "window":
        return WindowOutput()
    if kind == "virtual-camera":
        return VirtualCameraOutput(w, h, fps)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    return FileOutput(out, w, h, fps, label, cfg.crf, cfg.preset)


def _fill(summary: LiveSummary, src: Source, tracker: LiveTracker, out: Output | None,
          latencies: list[float], stage: dict[str, float], stage_cpu: dict[str, float],
          t_start: float) -> None:  # fmt: skip
    summary.frames_read = src.read
    summary.frames_dropped = src.dropped
    summary.frames_skipped = src.skipped
    summary.frames_repeated = out.repeated if out is not None else 0
    summary.full_searches = tracker.stats.full_searches
    summary.seconds = round(time.perf_counter() - t_start, 3)
    summary.frames_per_second = round(summary.frames_processed / max(summary.seconds, 1e-9), 2)
    summary.latency_ms = percentiles(latencies)
    n = max(1, summary.frames_processed)
    summary.stage_ms = {k: round(1000 * v / n, 2) for k, v in stage.items()}
    summary.stage_cpu_ms = {k: round(1000 * v / n, 2) for k, v in stage_cpu.items()}
