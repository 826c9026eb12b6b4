#!/usr/bin/env python
"""Benchmark face extraction on CPU: per-stage cost on one core, then whole `extract()` runs.

Part 1 (stages) runs in this process, pinned to one core with OpenCV limited to one thread,
on real frames of a synthetic 1280x720 clip with one face (faceswap.synthetic.render_clip):
decode, BGR->RGB, detect (downscale to detect_size + dlib HOG), landmarks, align+crop,
quality measures, PNG/JPG encode and the dlib identity embedding. Each stage is timed over the
same frames, after one untimed warm-up call.

Part 2 (whole runs) runs each configuration in a fresh child process (start-up included, as a
user pays it), interleaved over --rounds rounds (A, B, C, A, B, C...), so that load from other
programs meets every configuration alike. The first row is the plain loop a user would write
with dlib (HOG on a 640 px downscale, 68 landmarks, umeyama alignment, JPEG q95, one process);
--before PATH adds the default configuration of an older checkout as a row (before/after).
Each row: frames per CPU-second (user+sys of the child and its workers) and its ratio to the
plain loop, per round then median (stable under load); frames per wall second overall (depends
on the machine's load); recall; landmark distance to the plain loop's.

Examples:
  .venv/bin/python scripts/bench_extract.py
  .venv/bin/python scripts/bench_extract.py --no-stages --rounds 3 --before /tmp/old-checkout
  .venv/bin/python scripts/bench_extract.py --frames 120 --configs plain,default,no-embed
  .venv/bin/python scripts/bench_extract.py --clip my.mp4 --json bench.json
  .venv/bin/python scripts/bench_extract.py --configs none   # stage table only
"""

from __future__ import annotations

import argparse
import contextlib
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
    "png": ("(f) --image-format png", {"image_format": "png"}),
    "jpg": ("(g) --image-format jpg", {"image_format": "jpg"}),
}
BEFORE = "before"  # the default config of the faceswap checkout given by --before


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


# ---- part 2: whole runs, interleaved --------------------------------------------------------


def plain_loop(clip: Path, out: Path, end_frame: int | None) -> dict:
    """The loop a user would write with dlib: HOG on a 640 px downscale, 68 landmarks,
    similarity alignment (umeyama), a 256 px crop written as JPEG q95; one process."""
    import dlib

    from faceswap.extract import weights

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(weights.dlib_weight("dlib-landmarks")))
    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(clip))
    n = faces = 0
    landmarks: dict[int, np.ndarray] = {}
    while end_frame is None or n < end_frame:
        ok, bgr = cap.read()
        if not ok:
            break
        h, w = bgr.shape[:2]
        s = 640 / max(h, w) if max(h, w) > 640 else 1.0
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        small = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        for k, r in enumerate(det(small, 0)):
            rect = dlib.rectangle(round(r.left() / s), round(r.top() / s),
                                  round(r.right() / s), round(r.bottom() / s))  # fmt: skip
            lms = np.array([(p.x, p.y) for p in sp(rgb, rect).parts()], float)
            m = alignment.crop_matrix(lms, 256, "face")
            crop = cv2.warpAffine(bgr, m, (256, 256), flags=cv2.INTER_CUBIC)
            cv2.imwrite(str(out / f"{n:06d}_{k}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
            faces += 1
            landmarks.setdefault(n, lms)
        n += 1
    cap.release()
    return {"frames": n, "faces": faces, "landmarks": landmarks}


def run_one(name: str, clip: Path, out: Path, end_frame: int | None) -> dict:
    """One configuration, in this (fresh) process: what the parent times."""
    if name == "plain":
        r = plain_loop(clip, out, end_frame)
    else:
        label, over = CONFIGS[name]
        s = extract([str(clip)], out, ExtractConfig(end_frame=end_frame, **over))
        from faceswap import faceset as fsmod

        fs = fsmod.load(out)
        lms: dict[int, np.ndarray] = {}
        for f in sorted(fs.faces, key=lambda f: (f.frame, f.box[0])):
            lms.setdefault(f.frame, np.asarray(f.landmarks, float))
        r = {"frames": s.frames_read, "faces": s.faces_kept, "landmarks": lms,
             "stage_seconds": s.stage_seconds}  # fmt: skip
    np.savez(out.parent / f"{out.name}_landmarks.npz",
             frames=np.array(sorted(r["landmarks"]), int),
             landmarks=np.array([r["landmarks"][k] for k in sorted(r["landmarks"])]).reshape(-1, 68, 2))  # fmt: skip
    del r["landmarks"]
    return r


def timed_run(name: str, clip: Path, workdir: Path, end_frame: int | None, k: int,
              before: Path | None = None) -> dict:  # fmt: skip
    """Run one configuration in a child process; CPU = the child and its workers (user+sys,
    all reaped), wall = from spawn to exit (start-up included: what a user waits for)."""
    import subprocess

    out = workdir / f"{name}_{k}"
    one = "default" if name == BEFORE else name
    cmd = [sys.executable, __file__, "--run-one", one, "--clip", str(clip), "--out", str(out)]
    if end_frame is not None:
        cmd += ["--end-frame", str(end_frame)]
    env = dict(os.environ)
    if name == BEFORE:
        env["PYTHONPATH"] = str(before)  # that checkout's faceswap, its own defaults
    else:
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    c0, t0 = cpu_seconds(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr[-2000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    data = np.load(out.parent / f"{out.name}_landmarks.npz")
    r.update(name=name, wall=wall, cpu=cpu, lm_frames=data["frames"], lm=data["landmarks"])
    return r


def landmark_gap(a: dict, b: dict) -> float | None:
    """Mean landmark distance between two runs on the frames both found a face in, in eye
    distances (dlib's 68 points: outer eye corners 36 and 45)."""
    common, ia, ib = np.intersect1d(a["lm_frames"], b["lm_frames"], return_indices=True)
    if not len(common):
        return None
    la, lb = a["lm"][ia], b["lm"][ib]
    eye = np.linalg.norm(lb[:, 36] - lb[:, 45], axis=1)
    return float((np.linalg.norm(la - lb, axis=2).mean(axis=1) / eye).mean())


def bench_pipeline(clip: Path, names: list[str], workdir: Path, rounds: int,
                   end_frame: int | None, before: Path | None = None) -> list[dict]:  # fmt: skip
    """Every configuration `rounds` times, interleaved (A, B, C, A, B, C, ...), so that
    whatever else loads the machine meets every configuration alike."""
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for k in range(rounds):
        for name in names:
            print(f"  round {k + 1}/{rounds}: {name} ...", file=sys.stderr, flush=True)
            runs[name].append(timed_run(name, clip, workdir, end_frame, k, before))
    base = runs.get("plain")
    rows = []
    for name in names:
        rs = runs[name]
        frames = rs[0]["frames"]
        cpu = statistics.median(r["cpu"] for r in rs)
        wall = statistics.median(r["wall"] for r in rs)
        row = {
            "config": name,
            "label": {"plain": "plain dlib loop", BEFORE: "(0) before: defaults"}.get(
                name, CONFIGS.get(name, ("",))[0]
            ),
            "frames": frames,
            "faces": rs[0]["faces"],
            "recall": len(rs[0]["lm_frames"]) / max(frames, 1),
            "cpu_s": [r["cpu"] for r in rs],
            "wall_s": [r["wall"] for r in rs],
            "cpu_ms_per_frame": 1000 * cpu / max(frames, 1),
            "frames_per_cpu_s": frames / cpu,
            "fps": frames / wall,
            "stage_seconds": rs[0].get("stage_seconds"),
        }
        if base:
            bcpu = statistics.median(r["cpu"] for r in base)
            bwall = statistics.median(r["wall"] for r in base)
            # per-round ratios: each pairs runs that met the same load
            row["x_plain_per_cpu_s"] = statistics.median(
                (frames / r["cpu"]) / (b["frames"] / b["cpu"]) for r, b in zip(rs, base)
            )
            row["x_plain_fps"] = (frames / wall) / (base[0]["frames"] / bwall)
            row["landmark_gap_vs_plain"] = landmark_gap(rs[0], base[0])
            del bcpu
        rows.append(row)
    for r in runs.values():
        for x in r:
            x.pop("lm", None)
            x.pop("lm_frames", None)
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
        print(f"\nWhole runs, each in a fresh process, interleaved over {env['rounds']} "
              "round(s); medians")  # fmt: skip
        print(f"{'config':<22} {'frames':>6} {'faces':>5} {'recall':>6} {'cpu ms/fr':>9} "
              f"{'fr/cpu-s':>8} {'x plain':>7} {'fps':>5} {'x plain':>7} {'lm gap':>6}")  # fmt: skip
        for r in runs:
            print(f"{r['label']:<22} {r['frames']:>6} {r['faces']:>5} {r['recall']:>6.3f} "
                  f"{r['cpu_ms_per_frame']:>9.1f} {r['frames_per_cpu_s']:>8.1f} "
                  f"{fmt(r.get('x_plain_per_cpu_s'), '.2f'):>7} {r['fps']:>5.1f} "
                  f"{fmt(r.get('x_plain_fps'), '.2f'):>7} "
                  f"{fmt(r.get('landmark_gap_vs_plain'), '.3f'):>6}")  # fmt: skip
        wrap(
            "cpu ms/fr = user+sys of the run's process and its workers (start-up included) per "
            "frame; fr/cpu-s = frames per CPU-second, x plain = that over the plain loop's, "
            "per round then median (stable under load); fps = frames / wall seconds of the "
            "whole run (depends on the machine's load: see the load average above); recall = "
            "frames with a face / frames; lm gap = mean landmark distance to the plain loop's "
            "on frames both found, in eye distances"
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
        default="plain,default,no-embed,png",
        help="comma list of whole-run configs, or 'none' (default plain,default,no-embed,png; "
        f"plain = the plain dlib loop; also: {','.join(CONFIGS)})",
    )
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of runs (2)")
    p.add_argument("--end-frame", type=int, help="process only the clip's first N frames")
    p.add_argument(
        "--before",
        type=Path,
        help="root of an older faceswap checkout: its "
        "default config runs as one more interleaved row (before/after)",
    )
    p.add_argument("--run-one", help=argparse.SUPPRESS)  # internal: one run in a child
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--stage-frames", type=int, default=40, help="frames per stage (40)")
    p.add_argument("--embed-frames", type=int, default=10, help="frames for the embedding (10)")
    p.add_argument("--no-stages", action="store_true", help="skip the per-stage table")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.run_one:
        print(json.dumps(run_one(args.run_one, args.clip, args.out, args.end_frame)))
        return 0
    names = [] if args.configs.strip() == "none" else [c.strip() for c in args.configs.split(",")]
    if args.before:
        names.insert(1 if names[:1] == ["plain"] else 0, BEFORE)
    bad = [c for c in names if c not in CONFIGS and c not in ("plain", BEFORE)]
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
            "rounds": args.rounds,
        }
        stages, sinfo = [], {}
        if not args.no_stages:
            print("  timing stages ...", file=sys.stderr, flush=True)
            stages, sinfo = bench_stages(clip, args.stage_frames, args.embed_frames)
        runs = []
        if names:
            runs = bench_pipeline(clip, names, work, args.rounds, args.end_frame, args.before)
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
