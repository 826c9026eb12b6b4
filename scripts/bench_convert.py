#!/usr/bin/env python
"""Benchmark `faceswap convert` at 1280x720: each stage alone, then the streamed pipeline.

Setup (cached in the temp folder): a synthetic 1280x720 clip with one face
(faceswap.synthetic.render_clip), a face set extracted from it at 256 px (what
`--alignments` reuses), and per model preset a run folder with a randomly initialised
checkpoint (speed does not depend on the weights).

Part 1 (stages, this process, default thread counts) reports frames/s of each stage alone over
the same frames: decode (OpenCV), detect (extract's FaceFinder: dlib HOG + 68 landmarks, one
process), align (smoothing + matrices + the model's crop), swap (the model, batched), composite
(mask, colour, blend, un-warp into the frame), encode (H.264 through the bundled ffmpeg).

Part 2 (pipeline) runs faceswap.convert.pipeline.convert() per preset, with the reused face
set ("reuse") and with detection ("detect"), and reports frames/s overall (frames / wall time
of the whole call: model load, hashing the source and starting ffmpeg included) and steady
(frames after the first batch / their time, from the progress callback), plus the machine load
during the run. On a shared machine the load column says how much of the two cores others took.

Examples:
  .venv/bin/python scripts/bench_convert.py
  .venv/bin/python scripts/bench_convert.py --presets lightweight --modes reuse --frames 96
  .venv/bin/python scripts/bench_convert.py --json /tmp/bench_convert.json
  .venv/bin/python scripts/bench_convert.py --device cuda --presets sae-256   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CACHE_VERSION = 1
SIZE = (1280, 720)


# ---- machine load --------------------------------------------------------------------------


def _jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat (zeros where it is missing)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return total - idle, total


def _own_cpu() -> float:
    """CPU seconds of this process and its finished children (ffmpeg, detection workers)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class Load:
    """Cores busy during a `with` block: all, ours (incl. finished children), others."""

    def __enter__(self) -> Load:
        self.j0, self.own0, self.t0 = _jiffies(), _own_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        (b1, t1), (b0, t0) = _jiffies(), self.j0
        ncpu = os.cpu_count() or 1
        wall = max(time.perf_counter() - self.t0, 1e-9)
        busy = ncpu * (b1 - b0) / (t1 - t0) if t1 > t0 else float("nan")
        own = (_own_cpu() - self.own0) / wall
        self.result = {"cores_busy": round(busy, 2), "cores_ours": round(own, 2),
                       "cores_others": round(max(0.0, busy - own), 2),
                       "loadavg_1min": os.getloadavg()[0]}  # fmt: skip

    def __str__(self) -> str:
        r = self.result
        return (f"cores busy {r['cores_busy']:.2f} (ours {r['cores_ours']:.2f}, others "
                f"{r['cores_others']:.2f}), load {r['loadavg_1min']:.1f}")  # fmt: skip


# ---- setup -----------------------------------------------------------------------------------


def setup(frames: int, cache: Path) -> tuple[Path, Path]:
    """The 1280x720 clip and its 256 px face set, made once."""
    from faceswap import faceset as fsmod
    from faceswap.config import ExtractConfig
    from faceswap.extract.pipeline import extract
    from faceswap.synthetic import render_clip

    root = cache / f"clip-{frames}"
    clip, fs = root / "clip.mp4", root / "faces"
    if not (fs / "faceset.json").is_file() or len(fsmod.load(fs).faces) < frames * 0.9:
        root.mkdir(parents=True, exist_ok=True)
        render_clip(clip, frames, frame_size=SIZE, base_scale=2.0, seed=7)
        extract([str(clip)], fs, ExtractConfig(size=256, embed=False), force=True)
    return clip, fs


def random_run(preset: str, cache: Path) -> Path:
    """A run folder of `preset` with a randomly initialised checkpoint (256 px face crops)."""
    import torch

    from faceswap.models import build_model, load_preset
    from faceswap.train.checkpoint import latest_checkpoint, save_checkpoint
    from faceswap.train.config import TrainConfig
    from faceswap.train.trainer import write_run_config

    run = cache / f"run-{preset}"
    if latest_checkpoint(run) is None:
        cfg = TrainConfig(model=load_preset(preset))
        write_run_config(run, cfg)
        torch.manual_seed(0)
        model = build_model(cfg.model)
        fs = {"size": 256, "centering": "face", "path": None}
        save_checkpoint(run, 0, model.state_dict(), {"state": {}, "param_groups": []},
                        {"facesets": {"a": fs, "b": fs}})  # fmt: skip
    return run


# ---- part 1: stages -------------------------------------------------------------------------


def rate(n: int, seconds: float) -> float:
    return n / max(seconds, 1e-9)


class Timed:
    """Wall and CPU seconds (this process + waited-for children) of a `with` block."""

    def __enter__(self) -> Timed:
        self.t0, self.c0 = time.perf_counter(), _own_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = _own_cpu() - self.c0


def stages(clip: Path, faceset: Path, presets: list[str], cache: Path, args) -> dict:
    """{stage: (frames/s, CPU ms per frame)} of each stage alone over the same frames."""
    import torch

    from faceswap import faceset as fsmod
    from faceswap.config import ExtractConfig
    from faceswap.convert.config import ConvertConfig
    from faceswap.convert.model import load_swap_model
    from faceswap.convert.pipeline import FaceJob, composite
    from faceswap.convert.smoothing import TrackSmoother
    from faceswap.convert.warp import crop_face, face_matrices
    from faceswap.extract.finder import FaceFinder
    from faceswap.extract.pipeline import resolve_backends
    from faceswap.media import VideoWriter, open_inputs

    src = open_inputs([str(clip)])[0]
    n = min(args.stage_frames, src.frames or args.stage_frames)
    out: dict = {}

    def put(name: str, count: int, t: Timed) -> None:
        out[name] = (rate(count, t.wall), 1000 * t.cpu / count)

    with Timed() as t:
        frames = [f for _, _, f in src.iter_frames(0, n)]
    put("decode", n, t)

    ecfg = ExtractConfig(size=64, embed=False, workers=1)
    finder = FaceFinder(ecfg, resolve_backends(ecfg))
    chunk = [(i, None, f) for i, f in enumerate(frames)]
    finder.process(chunk[:2])
    with Timed() as t:
        finder.process(chunk)
    put("detect+landmarks (1 process)", n, t)

    fs = fsmod.load(faceset)
    lms = {f.frame: f.landmarks_array() for f in fs.faces}
    cfg = ConvertConfig(device=args.device)
    with Timed() as t, VideoWriter(cache / "stage.mp4", *SIZE, 24.0, crf=cfg.crf,
                                   preset=cfg.preset) as w:  # fmt: skip
        for f in frames:
            w.write(f)
        w.finish()
        w.abort()
    put(f"encode (x264 {cfg.preset})", n, t)

    # the model gets the threads the pipeline gives it
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // 2))
    for preset in presets:
        model = load_swap_model(random_run(preset, cache), "a2b", args.device)
        res = model.resolution
        with Timed() as t:
            smoother = TrackSmoother(round(cfg.smooth * 24))
            done = []
            for i, f in enumerate(frames):
                done += smoother.push(i, f, [lms[i]] if i in lms else [])
            done += smoother.flush()
            jobs = []
            for i, f, tracked in done:
                for _, lm in tracked:
                    m_crop, m_model = face_matrices(lm, model.crop_size, res, model.centering)
                    crop = crop_face(f, m_crop, model.crop_size, res)
                    jobs.append((i, FaceJob(lm, m_model, crop)))
        put(f"align {preset}", n, t)
        crops = np.stack([j.crop for _, j in jobs])
        model.swap(crops[: cfg.batch_size])  # warm-up
        with Timed() as t:
            for k in range(0, len(crops), cfg.batch_size):
                rgb, mask = model.swap(crops[k : k + cfg.batch_size])
                for q in range(len(rgb)):
                    jobs[k + q][1].swapped = rgb[q]
                    jobs[k + q][1].mask = None if mask is None else mask[q]
        put(f"swap {preset} ({res} px)", len(crops), t)
        composite(frames[0].copy(), [jobs[0][1]], cfg, res)  # warm-up
        with Timed() as t:
            for i, job in jobs:
                composite(frames[i].copy(), [job], cfg, res)
        put(f"composite {preset}", len(jobs), t)
    return out


# ---- part 2: the pipeline -------------------------------------------------------------------


def pipeline(clip: Path, faceset: Path, preset: str, mode: str, cache: Path, args) -> dict:
    from faceswap.config import ExtractConfig
    from faceswap.convert.config import ConvertConfig
    from faceswap.convert.pipeline import convert, stage_rates

    run = random_run(preset, cache)
    cfg = ConvertConfig(device=args.device, extract=ExtractConfig(workers=args.detect_workers))
    out = cache / f"out-{preset}-{mode}.mp4"
    stamps: list[float] = []
    with Load() as load:
        s = convert(clip, run, out, cfg, alignments=faceset if mode == "reuse" else None,
                    end=args.frames, overwrite=True,
                    progress=lambda done, total: stamps.append(time.perf_counter()))  # fmt: skip
    skip = min(len(stamps) - 2, cfg.batch_size)
    steady = rate(len(stamps) - 1 - skip, stamps[-1] - stamps[skip]) if len(stamps) > 2 else 0.0
    return {"preset": preset, "mode": mode, "frames": s.frames, "seconds": round(s.seconds, 2),
            "overall_fps": round(s.frames_per_second, 2), "steady_fps": round(steady, 2),
            "stage_fps": {k: round(v, 1) for k, v in stage_rates(s).items()},
            "load": load.result, "load_text": str(load)}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    p.add_argument("--frames", type=int, default=96, help="frames converted per pipeline run")
    p.add_argument("--stage-frames", type=int, default=24, help="frames per stage timing")
    p.add_argument("--presets", default="lightweight,original,dfl-h128",
                   help="model presets, comma-separated (64 px: lightweight, original)")  # fmt: skip
    p.add_argument("--modes", default="reuse,detect", help="reuse (--alignments), detect")
    p.add_argument("--device", default="auto", help="model device: auto, cpu, cuda")
    p.add_argument("--detect-workers", type=int, default=0, help="detection processes (0 = all)")
    p.add_argument("--no-stages", action="store_true", help="skip part 1")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cache = Path(tempfile.gettempdir()) / f"faceswap-bench-convert-v{CACHE_VERSION}"
    presets = [x for x in args.presets.split(",") if x]
    modes = [x for x in args.modes.split(",") if x]

    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), load "
          f"{os.getloadavg()[0]:.1f}; shared with other work: read the load columns")  # fmt: skip
    with Load() as load:
        clip, faceset = setup(max(args.frames, args.stage_frames), cache)
    print(f"setup: {clip} ({SIZE[0]}x{SIZE[1]}), face set {faceset} ({load})")
    results: dict = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__,
                                 "device": args.device}}  # fmt: skip
    if not args.no_stages:
        with Load() as load:
            st = stages(clip, faceset, presets, cache, args)
        print(f"\nstages alone ({args.stage_frames} frames each; {load}):")
        print(f"  {'stage':<30} {'frames/s':>9} {'CPU ms/frame':>13}")
        for k, (fps, ms) in st.items():
            print(f"  {k:<30} {fps:9.1f} {ms:13.1f}")
        common = [v[1] for k, v in st.items() if k.startswith(("decode", "encode"))]
        for preset in presets:
            ms = sum(common) + sum(v[1] for k, v in st.items()
                                   if k.startswith(("align", "swap", "composite"))
                                   and f" {preset}" in k)  # fmt: skip
            ncpu = os.cpu_count() or 1
            print(
                f"  {preset} with reuse: {ms:.0f} CPU ms per frame -> at most "
                f"{ncpu * 1000 / ms:.1f} frames/s on {ncpu} idle cores (perfect overlap)"
            )
        results["stages"] = {k: {"frames_per_s": v[0], "cpu_ms_per_frame": v[1]}
                             for k, v in st.items()}  # fmt: skip
        results["stages_load"] = load.result
    rows = []
    print(f"\npipeline ({args.frames} frames at {SIZE[0]}x{SIZE[1]}):")
    print(f"  {'preset':<12} {'faces':<7} {'overall':>8} {'steady':>8}  slowest stages "
          "(frames/s busy)   load")  # fmt: skip
    for preset in presets:
        for mode in modes:
            r = pipeline(clip, faceset, preset, mode, cache, args)
            rows.append(r)
            slow = sorted(r["stage_fps"].items(), key=lambda kv: kv[1])[:3]
            print(f"  {preset:<12} {mode:<7} {r['overall_fps']:8.1f} {r['steady_fps']:8.1f}  "
                  f"{', '.join(f'{k} {v:.0f}' for k, v in slow):<30} {r['load_text']}")  # fmt: skip
            sys.stdout.flush()
    results["pipeline"] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
