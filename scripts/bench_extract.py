#!/usr/bin/env python
"""Benchmark face extraction on CPU: per-stage cost on one core, then whole `extract()` runs.

Part 1 (stages) runs in this process, pinned to one core with OpenCV limited to one thread,
on real frames of a synthetic 1280x720 clip with one face (faceswap.synthetic.render_clip):
decode, BGR->RGB, detect (downscale to detect_size + dlib HOG), landmarks, align+crop,
quality measures, PNG/JPG encode and the dlib identity embedding. Each stage is timed over the
same frames, after one untimed warm-up call.

Part 2 (pipeline) runs faceswap.extract.pipeline.extract() into a fresh temporary face set for
each configuration and reports frames/s three ways:
  * total      frames_read / summary.seconds (everything: pool spawn, model loading, writing);
  * excl.start frames_read / (seconds - startup), where startup is the wall time of the same
               configuration on a 1-frame clip (so it also holds one frame's processing);
  * steady     frames after the first chunk / time from the first chunk's result to the last
               one (progress callback timestamps; slightly optimistic with several workers,
               because the next chunks were already in progress when the first one arrived).
CPU% is (user+sys of this process and its finished children) / wall: 200% = both cores busy.

Examples:
  .venv/bin/python scripts/bench_extract.py
  .venv/bin/python scripts/bench_extract.py --frames 120 --configs default,no-embed
  .venv/bin/python scripts/bench_extract.py --clip my.mp4 --json bench.json
  .venv/bin/python scripts/bench_extract.py --configs none   # stage table only
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from faceswap.config import ExtractConfig
from faceswap.extract import alignment
from faceswap.extract.finder import Backends, FaceFinder, encode
from faceswap.extract.pipeline import extract, resolve_backends
from faceswap.extract.quality import blur_score, head_pose
from faceswap.synthetic import render_clip

CONFIGS: dict[str, tuple[str, dict]] = {
    "default": ("(a) default", {}),
    "no-embed": ("(b) --no-embed", {"embed": False}),
    "no-track": ("(c) track off", {"track": False}),
    "workers1": ("(d) workers=1", {"workers": 1}),
    "embed1": ("(e) embed_every=1", {"embed_every": 1}),
}


# ---- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def one_core() -> Iterator[int | None]:
    """Pin this process to one core and OpenCV to one thread; restore both afterwards (the
    pipeline runs later spawn workers that would inherit the affinity)."""
    threads = cv2.getNumThreads()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    core = min(affinity) if affinity else None
    try:
        cv2.setNumThreads(1)
        if affinity:
            os.sched_setaffinity(0, {core})
        yield core
    finally:
        cv2.setNumThreads(threads)
        if affinity:
            os.sched_setaffinity(0, affinity)


def cpu_seconds() -> float:
    """user+sys of this process and its reaped children (pool workers are reaped on join)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def time_each(items: list, fn: Callable) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds of fn(item) for each item, after one untimed warm-up call.
    CPU time is what the stage costs even when other programs compete for the core."""
    if items:
        fn(items[0])
    out = []
    for it in items:
        t0, c0 = time.perf_counter(), time.process_time()
        fn(it)
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def stage_row(name: str, secs: list[tuple[float, float]], note: str = "") -> dict:
    wall = [w for w, _ in secs]
    cpu = [c for _, c in secs]
    nan = float("nan")
    mean = statistics.fmean(wall) if wall else nan
    cmean = statistics.fmean(cpu) if cpu else nan
    return {
        "stage": name,
        "n": len(secs),
        "ms_mean": 1000 * mean,
        "ms_median": 1000 * statistics.median(wall) if wall else nan,
        "cpu_ms_mean": 1000 * cmean,
        "fps": 1.0 / mean if wall and mean > 0 else nan,
        "fps_cpu": 1.0 / cmean if cpu and cmean > 0 else nan,
        "note": note,
    }


def read_frames(clip: Path, n: int) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    cap = cv2.VideoCapture(str(clip))
    if not cap.isOpened():
        sys.exit(f"cannot open {clip}")
    frames, secs = [], []
    try:
        for _ in range(n):
            t0, c0 = time.perf_counter(), time.process_time()
            ok, frame = cap.read()
            dt = (time.perf_counter() - t0, time.process_time() - c0)
            if not ok:
                break
            frames.append(frame)
            secs.append(dt)
    finally:
        cap.release()
    return frames, secs


class MachineLoad:
    """Busy CPU of the whole machine (all processes, in % of one core) from /proc/stat."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            v = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return None
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v[:8]) - idle, sum(v[:8])

    def busy_pct(self) -> float | None:
        end = self._read()
        if self.start is None or end is None or end[1] == self.start[1]:
            return None
        return 100 * (os.cpu_count() or 1) * (end[0] - self.start[0]) / (end[1] - self.start[1])


# ---- part 1: stages -----------------------------------------------------------------------


def bench_stages(clip: Path, n: int, n_embed: int) -> tuple[list[dict], dict]:
    cfg = ExtractConfig(detector="dlib-hog", aligner="dlib", device="cpu")
    t0 = time.perf_counter()
    finder = FaceFinder(cfg, Backends("dlib-hog", "dlib", "cpu"))
    init_s = time.perf_counter() - t0
    rows: list[dict] = []
    with one_core() as core:
        # decode: the first read opens the stream, so time n+1 reads and drop the first
        frames, dsecs = read_frames(clip, n + 1)
        frames, dsecs = frames[1:], dsecs[1:]
        if not frames:
            sys.exit(f"{clip}: no frames could be read")
        h, w = frames[0].shape[:2]
        rows.append(stage_row("decode (VideoCapture.read)", dsecs, f"{w}x{h}"))
        rgbs = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
        rows.append(
            stage_row("BGR->RGB", time_each(frames, lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2RGB)))
        )

        scale = (
            cfg.detect_size / max(h, w) if cfg.detect_size and max(h, w) > cfg.detect_size else 1
        )
        small_size = (round(w * scale), round(h * scale))
        rows.append(
            stage_row(
                "  detect: downscale",
                time_each(rgbs, lambda f: cv2.resize(f, small_size, interpolation=cv2.INTER_AREA)),
                f"to {small_size[0]}x{small_size[1]}",
            )
        )
        smalls = [cv2.resize(f, small_size, interpolation=cv2.INTER_AREA) for f in rgbs]
        hog = time_each(smalls, lambda f: finder.detector.detect([f]))
        rows.append(stage_row("  detect: dlib HOG", hog, f"upsample {cfg.upsample}"))
        detect_secs = time_each(rgbs, finder.detect)
        dets = [finder.detect(f) for f in rgbs]
        found = sum(1 for d in dets if d)
        rows.append(
            stage_row("detect (FaceFinder.detect)", detect_secs, f"face in {found}/{len(rgbs)}")
        )

        # the rest runs on frames where the detector found the face
        boxes = [(rgb, bgr, d[0].box) for rgb, bgr, d in zip(rgbs, frames, dets, strict=True) if d]
        if not boxes:
            sys.exit("the detector found no face in the benchmark frames")
        rows.append(
            stage_row(
                "landmarks (1 box)",
                time_each(boxes, lambda x: finder.aligner.landmarks(x[0], [x[2]])),
            )
        )
        lm2 = time_each(boxes, lambda x: finder._landmarks(x[0], x[2]))
        rows.append(stage_row("landmarks+jitter (2 boxes)", lm2, "what the pipeline runs per face"))
        lms = [finder.aligner.landmarks(rgb, [box])[0] for rgb, _, box in boxes]
        items = [(bgr, lm) for (_, bgr, _), lm in zip(boxes, lms, strict=True)]

        def align_crop(x):
            m = alignment.crop_matrix(x[1], cfg.size, cfg.centering)
            return cv2.warpAffine(
                x[0], m, (cfg.size, cfg.size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
            )

        rows.append(
            stage_row("align+crop (cubic)", time_each(items, align_crop), f"size {cfg.size}")
        )
        crops = [align_crop(x) for x in items]

        def measure(x):
            bgr, lm, crop = x
            m = alignment.crop_matrix(lm, cfg.size, cfg.centering)
            head_pose(lm, (w, h))
            blur_score(crop, alignment.transform_points(m, lm))
            alignment.alignment_residual(lm, m, cfg.size, cfg.centering)

        triples = [(bgr, lm, c) for (bgr, lm), c in zip(items, crops, strict=True)]
        rows.append(stage_row("measure (pose+blur+resid.)", time_each(triples, measure)))
        png = [len(encode(c, "png")) for c in crops]
        jpg = [len(encode(c, "jpg", cfg.jpeg_quality)) for c in crops]
        rows.append(
            stage_row(
                "encode png",
                time_each(crops, lambda c: encode(c, "png")),
                f"{statistics.fmean(png) / 1024:.0f} KiB",
            )
        )
        jpg_secs = time_each(crops, lambda c: encode(c, "jpg", cfg.jpeg_quality))
        note = f"{statistics.fmean(jpg) / 1024:.0f} KiB q{cfg.jpeg_quality}"
        rows.append(stage_row("encode jpg", jpg_secs, note))
        assert finder.embedder is not None
        emb = [(rgb, lm) for (rgb, _, _), lm in zip(boxes, lms, strict=True)][:n_embed]
        rows.append(
            stage_row("identity embedding", time_each(emb, lambda x: finder.embedder.embed(*x)))
        )

    by = {r["stage"]: r["cpu_ms_mean"] for r in rows}  # CPU: robust to other programs' load
    # rough one-core cost of a frame in config (a): detection every redetect_every frames,
    # landmarks (2 boxes) once per face, embedding every embed_every frames
    est = (
        by["decode (VideoCapture.read)"]
        + by["BGR->RGB"]
        + by["detect (FaceFinder.detect)"] / cfg.redetect_every
        + by["landmarks+jitter (2 boxes)"]
        + by["align+crop (cubic)"]
        + by["measure (pose+blur+resid.)"]
        + by["encode png"]
        + by["identity embedding"] / cfg.embed_every
    )
    info = {
        "core": core,
        "finder_init_s": init_s,
        "frame_size": [w, h],
        "estimate_default_ms_per_frame": est,
    }
    return rows, info


# ---- part 2: pipeline ---------------------------------------------------------------------


def run_extract(clip: Path, cfg: ExtractConfig, workdir: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="set_", dir=workdir)) / "faces"
    marks: list[tuple[float, int]] = []
    done = 0

    def progress(n: int, _kept: int, _todo: int) -> None:
        nonlocal done
        if not n:
            return
        done += n
        marks.append((time.perf_counter(), done))

    load = MachineLoad()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    s = extract([str(clip)], out, cfg, progress=progress)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    machine = load.busy_pct()
    steady = None
    if len(marks) >= 2 and marks[-1][0] > marks[0][0]:
        steady = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
    return {
        "summary": dataclasses.asdict(s),
        "wall": wall,
        "cpu": cpu,
        "machine_pct": machine,
        "steady_fps": steady,
        "first_result_s": marks[0][0] - t0 if marks else None,
    }


def bench_pipeline(clip: Path, one: Path, names: list[str], workdir: Path) -> list[dict]:
    rows = []
    startups: dict[tuple[int, bool], dict] = {}  # start-up depends on workers and models only
    for name in names:
        label, over = CONFIGS[name]
        cfg = ExtractConfig(**over)
        workers = cfg.workers or os.cpu_count() or 1
        key = (workers, cfg.embed)
        if key not in startups:
            print(f"  start-up of {workers} worker(s), embed {cfg.embed} ...", file=sys.stderr)
            startups[key] = run_extract(one, cfg, workdir)
        print(f"  running {label} ...", file=sys.stderr, flush=True)
        r = run_extract(clip, cfg, workdir)
        s = r["summary"]
        startup = startups[key]["summary"]["seconds"]
        startup_cpu = startups[key]["cpu"]
        net = s["seconds"] - startup
        frames = s["frames_read"]
        own = 100 * r["cpu"] / r["wall"]
        rows.append(
            {
                "config": name,
                "label": label,
                "overrides": over,
                "workers": workers,
                "detector": s["detector"],
                "aligner": s["aligner"],
                "frames": frames,
                "faces_kept": s["faces_kept"],
                "frames_without_face": s["frames_without_face"],
                "seconds": s["seconds"],
                "fps": s["frames_per_second"],
                "startup_s": startup,
                "fps_excl_startup": frames / net if net > 0 else None,
                "steady_fps": r["steady_fps"],
                "first_result_s": r["first_result_s"],
                "cpu_s": r["cpu"],
                "cpu_ms_per_frame": 1000 * r["cpu"] / max(frames, 1),
                "startup_cpu_s": startup_cpu,
                "cpu_ms_per_frame_excl_startup": 1000
                * (r["cpu"] - startup_cpu)
                / max(frames - 1, 1),
                "cpu_pct": own,
                "machine_pct": r["machine_pct"],
                "others_pct": None
                if r["machine_pct"] is None
                else max(0.0, r["machine_pct"] - own),
                "stage_seconds": s["stage_seconds"],
            }
        )
    return rows


# ---- output -------------------------------------------------------------------------------


def wrap(text: str) -> None:
    print(textwrap.fill(text, 100, subsequent_indent="  "))


def fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def print_report(env: dict, stages: list[dict], sinfo: dict, runs: list[dict]) -> None:
    print(
        f"python {env['python']}  dlib {env['dlib']}  opencv {env['opencv']}  "
        f"numpy {env['numpy']}  {env['machine']}"
    )
    print(
        f"os.cpu_count() {env['cpu_count']}  usable cores {env['affinity']}  "
        f"load average at start {env['loadavg']}"
    )
    print(f"clip {env['clip']}  ({env['clip_frames']} frames, {env['frame_size']})")
    print(
        f"one-off resolve_backends() in this process (imports torch to check CUDA): "
        f"{env['resolve_backends_s']:.2f} s"
    )
    if stages:
        print(
            f"\nStages: one process pinned to core {sinfo['core']}, cv2.setNumThreads(1); "
            "wall ms (mean, median), process CPU ms (mean)"
        )
        print(
            f"{'stage':<28} {'n':>3} {'ms/frame':>8} {'median':>7} {'cpu ms':>7} "
            f"{'frames/s':>8} {'fps(cpu)':>8}  note"
        )
        for r in stages:
            print(
                f"{r['stage']:<28} {r['n']:>3} {r['ms_mean']:>8.2f} {r['ms_median']:>7.2f} "
                f"{r['cpu_ms_mean']:>7.2f} {r['fps']:>8.1f} {r['fps_cpu']:>8.1f}  "
                f"{r['note']}"
            )
        est = sinfo["estimate_default_ms_per_frame"]
        wrap(
            f"rough one-core estimate for config (a) from the cpu ms column (decode + BGR->RGB + "
            f"detect/8 + landmarks+jitter + align + measure + png + embed/8): {est:.1f} "
            f"ms/frame = {1000 / est:.1f} frames/s per core"
        )
        print(
            f"FaceFinder() construction (load dlib HOG, 68-point and ResNet models): "
            f"{sinfo['finder_init_s']:.2f} s"
        )
    if runs:
        print("\nPipeline: extract() into a fresh face set")
        print(
            f"{'config':<18} {'wk':>2} {'frames':>6} {'faces':>5} {'seconds':>7} {'fps':>5} "
            f"{'startup':>7} {'fps-start':>9} {'steady':>6} {'cpu ms/fr':>9} {'-start':>6} "
            f"{'CPU%':>5} "
            f"{'others%':>7}"
        )
        for r in runs:
            print(
                f"{r['label']:<18} {r['workers']:>2} {r['frames']:>6} {r['faces_kept']:>5} "
                f"{r['seconds']:>7.2f} {r['fps']:>5.1f} {r['startup_s']:>7.2f} "
                f"{fmt(r['fps_excl_startup']):>9} {fmt(r['steady_fps']):>6} "
                f"{r['cpu_ms_per_frame']:>9.1f} {r['cpu_ms_per_frame_excl_startup']:>6.1f} "
                f"{r['cpu_pct']:>5.0f} "
                f"{fmt(r['others_pct'], '.0f'):>7}"
            )
        wrap(
            "configs: (a) ExtractConfig() defaults (auto backends, track, embed_every 8, "
            "workers = all cores); (b) embed=False; (c) track=False; (d) workers=1 "
            "(in-process); (e) embed_every=1"
        )
        wrap(
            "fps = frames_read / seconds (all of extract()); startup = extract() of the same "
            "workers/embed setting on a 1-frame clip (pool spawn + model loading + one frame "
            "+ teardown); fps-start = frames / (seconds - startup); steady = frames after the "
            "first chunk / time from first to last chunk result (a bit optimistic with "
            "several workers); cpu ms/fr = user+sys of this process and its workers per "
            "frame, -start = the same less the start-up run's CPU, per frame; CPU% = that / "
            "wall (100% = one core); others% = CPU of other programs "
            "on the machine meanwhile (from /proc/stat)"
        )
        a = next((r for r in runs if r["config"] == "default"), runs[0])
        ss = a["stage_seconds"]
        main_keys = ("decode+transfer(main)", "write")
        total = sum(v for k, v in ss.items() if k not in main_keys)
        print(
            f"\nstage_seconds of {a['label']} (worker stages summed over workers, wall time "
            f"inside the workers; {a['frames']} frames, {a['seconds']:.2f} s wall)"
        )
        print(f"{'stage':<24} {'seconds':>8} {'ms/frame':>9} {'share':>6}")
        for k, v in sorted(ss.items(), key=lambda kv: -kv[1]):
            share = "" if k in main_keys else f"{100 * v / total:.0f}%"
            print(f"{k:<24} {v:>8.3f} {1000 * v / max(a['frames'], 1):>9.2f} {share:>6}")
        wrap(
            "(share = of worker stage time; 'decode+transfer(main)' is main-process wall time "
            "from one result to the next, i.e. decoding plus waiting for workers; 'write' is "
            "main-process linking + writing images)"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Examples:") :],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--frames", type=int, default=240, help="frames of the rendered clip (240)")
    p.add_argument("--clip", type=Path, help="use this video instead of rendering one")
    p.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    p.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma list of pipeline configs to run, or 'none' (all: {','.join(CONFIGS)})",
    )
    p.add_argument("--stage-frames", type=int, default=40, help="frames per stage (40)")
    p.add_argument("--embed-frames", type=int, default=10, help="frames for the embedding (10)")
    p.add_argument("--no-stages", action="store_true", help="skip the per-stage table")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    names = [] if args.configs.strip() == "none" else [c.strip() for c in args.configs.split(",")]
    bad = [c for c in names if c not in CONFIGS]
    if bad:
        p.error(f"unknown config(s) {', '.join(bad)}; choose from {', '.join(CONFIGS)}")

    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        resolve_backends(ExtractConfig())  # the torch import it does is paid once per process
        resolve_s = time.perf_counter() - t0
        clip = args.clip
        if clip is None:
            clip = work / "clip.mp4"
            print(f"  rendering {args.frames} frames ...", file=sys.stderr, flush=True)
            render_clip(clip, n_frames=args.frames, frame_size=(1280, 720))
        cap = cv2.VideoCapture(str(clip))
        clip_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
        cap.release()
        env = {
            "python": platform.python_version(),
            "dlib": __import__("dlib").__version__,
            "opencv": cv2.__version__,
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "machine": platform.machine(),
            "clip": str(args.clip) if args.clip else f"rendered ({args.frames} frames)",
            "clip_frames": clip_frames,
            "frame_size": size,
            "resolve_backends_s": resolve_s,
            "loadavg": "/".join(f"{x:.2f}" for x in os.getloadavg()),
        }
        stages, sinfo = [], {}
        if not args.no_stages:
            print("  timing stages ...", file=sys.stderr, flush=True)
            stages, sinfo = bench_stages(clip, args.stage_frames, args.embed_frames)
        runs = []
        if names:
            one = work / "one.mp4"
            frames, _ = read_frames(clip, 1)
            wr = cv2.VideoWriter(
                str(one),
                cv2.VideoWriter_fourcc(*"mp4v"),
                24.0,
                (frames[0].shape[1], frames[0].shape[0]),
            )
            wr.write(frames[0])
            wr.release()
            runs = bench_pipeline(clip, one, names, work)
    print_report(env, stages, sinfo, runs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"env": env, "stages": stages, "stage_info": sinfo, "pipeline": runs}, indent=2
            )
            + "\n"
        )
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
