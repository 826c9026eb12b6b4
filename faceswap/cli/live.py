"""`faceswap live`: swap the faces of a camera, a file played in real time, or a stream."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from faceswap.cli.common import (
    DETECTION_FLAGS,
    Command,
    add_detection_options,
    emit,
    flags_over_yaml,
    provider_as_device,
)

LIVE_EXAMPLES = """examples:
  faceswap live -m alice2bob.onnx --source 0                 (camera 0 in a window; q quits)
  faceswap live -m runs/alice2bob --source 0 --output session.mp4 --duration 60
  faceswap live -m alice2bob.onnx --source clip.mp4 --output live.mp4   (played in real time)
  faceswap live -m alice2bob.onnx --source rtsp://192.168.1.20/stream --output virtual-camera
  faceswap live -m alice2bob.onnx --source clip.mp4 --output all.mp4 --no-realtime
      (every frame of the file, as fast as the model goes: nothing dropped)

The model is a run folder (PyTorch) or a model from `faceswap export` (.onnx, onnxruntime,
usually faster on a CPU). A visible "synthetic" label is on by default; a file output also
carries container tags and OUT.provenance.json (docs/ethics.md). When the model is slower than
the source, the oldest waiting frames are dropped, never queued: the summary counts them.
A camera or stream that stalls or disconnects ends the session with a clear message (exit 2);
what was recorded until then is saved.
"""

_TOP = ("direction", "device", "threads", "min_cutoff", "beta", "mask", "color", "blend",
        "erode", "feather", "queue", "stall_timeout", "crf", "preset")  # fmt: skip


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True,
                   help="run folder or checkpoint (PyTorch), or an exported .onnx model")  # fmt: skip
    p.add_argument("--source", required=True,
                   help="camera index (0), video file (played in real time), or stream URL")  # fmt: skip
    p.add_argument("--output", default="window",
                   help="window (default), virtual-camera, or a video file (.mp4 .mkv .mov)")  # fmt: skip
    p.add_argument("--config", help="YAML live config (flags override it)")
    p.add_argument("--direction", help="a2b (default: B's face where A is) or b2a")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--max-frames", type=int, help="stop after this many processed frames")
    p.add_argument("--no-realtime", action="store_true",
                   help="file source: process every frame as fast as possible (no drops)")  # fmt: skip
    p.add_argument("--device", help="model device: auto, cpu or cuda")
    p.add_argument("--provider", help="for an .onnx model: onnxruntime provider auto, cpu or "
                   "cuda (same as --device)")  # fmt: skip
    p.add_argument("--threads", type=int, help="model threads on a CPU (default: half the cores)")
    p.add_argument("--no-smooth", action="store_true", help="no landmark smoothing")
    p.add_argument("--min-cutoff", type=float, help="One-Euro cutoff at rest in Hz (1.0)")
    p.add_argument("--beta", type=float, help="One-Euro speed coefficient (0.05)")
    p.add_argument("--mask", help="learned, hull or product (default)")
    p.add_argument("--color", help="avg, rct (default), hist or none")
    p.add_argument("--blend", help="feather (default) or seamless")
    p.add_argument("--erode", type=float, help="mask edge in (+) or out (-), fraction of the face")
    p.add_argument("--feather", type=float, help="soft edge width, fraction of the face (0.05)")
    p.add_argument("--no-watermark", action="store_true",
                   help="no visible 'synthetic' label (only where viewers know it is synthetic)")  # fmt: skip
    p.add_argument(
        "--queue", type=int, help="frames waiting for the swap before drops (1: newest only)"
    )
    p.add_argument("--stall-timeout", type=float, help="seconds without a frame = source lost (3)")
    p.add_argument("--crf", type=int, help="file output: H.264 quality (20)")
    p.add_argument("--preset", help="file output: x264 preset (ultrafast)")
    add_detection_options(p)
    p.add_argument("--redetect-every", type=int, help="full-frame face search every N frames (15)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _config(args: argparse.Namespace):
    from faceswap.config import from_dict
    from faceswap.live.config import LiveConfig

    provider_as_device(args)
    data = flags_over_yaml(args, _TOP)
    if args.no_smooth:
        data["smooth"] = False
    if args.no_watermark:
        data["watermark"] = False
    # live's extract defaults (one face, ...), then the YAML's section, then the flags
    extract = {**dataclasses.asdict(LiveConfig().extract), **(data.get("extract") or {})}
    for name in (*DETECTION_FLAGS, "redetect_every"):
        if getattr(args, name) is not None:
            extract[name] = getattr(args, name)
    data["extract"] = extract
    return from_dict(LiveConfig, data, args.config or "options")


def _run(args: argparse.Namespace) -> int:
    from faceswap.errors import BadInput
    from faceswap.live.session import run_live
    from faceswap.live.sources import SourceLost

    cfg = _config(args)
    if args.duration is not None and args.duration <= 0:
        raise BadInput("--duration must be a positive number of seconds")
    if args.max_frames is not None and args.max_frames < 1:
        raise BadInput("--max-frames must be at least 1")
    show = sys.stderr.isatty() and not args.json

    def progress(s) -> None:
        if show and s.frames_processed % 10 == 0:
            lat = s.latency_ms.get("p50", 0.0)
            sys.stderr.write(f"\rlive: {s.frames_processed} frames, {s.frames_per_second:.1f} "
                             f"frames/s, latency p50 {lat:.0f} ms, dropped {s.frames_dropped}  ")  # fmt: skip
            sys.stderr.flush()

    lost = None
    try:
        s = run_live(args.source, args.model, args.output, cfg, realtime=not args.no_realtime,
                     duration=args.duration, max_frames=args.max_frames,
                     overwrite=args.overwrite, progress=progress)  # fmt: skip
    except SourceLost as exc:
        lost = exc
    finally:
        if show:
            sys.stderr.write("\n")
    if lost is not None:
        raise BadInput(str(lost))

    def human() -> None:
        print(f"live {s.source} -> {s.output}: {s.frames_processed} frames in {s.seconds:.1f} s "
              f"({s.frames_per_second:.1f} frames/s; ended: {s.ended})")  # fmt: skip
        print(f"  model {s.model} step {s.step} on {s.device}; faces from {s.faces_from}")
        print(f"  source {s.width}x{s.height} at {s.source_fps:g} frames/s: read "
              f"{s.frames_read}, dropped {s.frames_dropped} (model slower than the source)"
              + (f", skipped {s.frames_skipped} (reader late)" if s.frames_skipped else ""))  # fmt: skip
        if s.latency_ms:
            print(f"  latency frame in -> frame out: p50 {s.latency_ms['p50']:.0f} ms, p95 "
                  f"{s.latency_ms['p95']:.0f} ms")  # fmt: skip
            print("  CPU ms per frame: " + ", ".join(f"{k} {v:.1f}" for k, v in
                  s.stage_cpu_ms.items()) + " (wall: " + ", ".join(f"{k} {v:.1f}" for k, v
                  in s.stage_ms.items()) + ")")  # fmt: skip
        print(f"  frames with a face {s.frames_with_face}, faces swapped {s.faces_swapped}")
        label = "visible 'synthetic' label" if s.watermark else "NO visible label"
        side = f" + {s.sidecar} + container tags" if s.sidecar else ""
        print(f"  labelled: {label}{side}")

    emit(args, dataclasses.asdict(s), human)
    return 0


LIVE = Command(
    "swap faces live: a camera, a file in real time or a stream (labelled as synthetic)",
    LIVE_EXAMPLES,
    _add,
    _run,
)
