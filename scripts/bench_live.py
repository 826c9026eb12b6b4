#!/usr/bin/env python
"""Benchmark `faceswap live` at 640x480 with one face: PyTorch vs onnxruntime, per preset.

Setup (cached in the temp folder): a 640x480 clip at 30 frames/s with one moving face
(faceswap.synthetic.render_clip), and per model preset a run with a randomly initialised
checkpoint (speed does not depend on the weights) and its ONNX export (fp32).

Part 1 (model call): the swap of one face (batch 1, as live calls it), PyTorch and onnxruntime
interleaved round by round so that both see the same machine load; ms per call (wall) and CPU
ms per call, with the threads live gives the model (half the cores).

Part 2 (end to end): faceswap.live.session.run_live on the clip
  realtime  the file played at 30 frames/s as a camera would deliver it: frames/s shown,
            frames dropped, latency from capture to output (p50, p95)
  unpaced   every frame, as fast as the session goes (no drops): the sustained frames/s
The output is a video file (x264 ultrafast), so encoding is part of the cost, as it would be
when recording; a window or virtual camera costs less.

The machine load during each run is printed: on a shared machine, figures from a loaded run
understate what the code does on a quiet one; compare ratios from one run, not absolutes.

Examples:
  .venv/bin/python scripts/bench_live.py
  .venv/bin/python scripts/bench_live.py --presets lightweight --seconds 5 --json /tmp/live.json
  .venv/bin/python scripts/bench_live.py --device cuda --presets lightweight original   # GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_convert import Load, _own_cpu, random_run  # noqa: E402

SIZE = (640, 480)
FPS = 30.0
CACHE_VERSION = 1


def setup(seconds: float, cache: Path) -> Path:
    from faceswap.synthetic import render_clip

    n = int(seconds * FPS)
    clip = cache / f"clip-640x480-{n}.mp4"
    if not clip.is_file():
        render_clip(clip, n, frame_size=SIZE, fps=FPS, base_scale=1.0, seed=11)
    return clip


def exported(preset: str, cache: Path) -> Path:
    from faceswap.export.onnx import export_onnx

    out = cache / f"{preset}.onnx"
    if not out.is_file():
        export_onnx(random_run(preset, cache), out, check=False)
    return out


def model_call(presets: list[str], cache: Path, device: str, rounds: int, calls: int) -> dict:
    """{preset: {backend: {"ms": wall ms per call, "cpu_ms": CPU ms per call}}}."""
    import torch

    from faceswap.live.config import LiveConfig
    from faceswap.live.session import load_model

    threads = max(1, (os.cpu_count() or 1) // 2)
    torch.set_num_threads(threads)
    out: dict = {}
    for preset in presets:
        cfg = LiveConfig(device=device, threads=threads)
        models = {"pytorch": load_model(random_run(preset, cache), cfg),
                  "onnxruntime": load_model(exported(preset, cache), cfg)}  # fmt: skip
        res = models["pytorch"].resolution
        crop = np.random.default_rng(0).integers(0, 256, (1, res, res, 3), dtype=np.uint8)
        wall = {k: 0.0 for k in models}
        cpu = {k: 0.0 for k in models}
        for m in models.values():
            for _ in range(3):
                m.swap(crop)  # warm-up (allocations, ORT's first run)
        for _ in range(rounds):
            for name, m in models.items():
                t0, c0 = time.perf_counter(), _own_cpu()
                for _ in range(calls):
                    m.swap(crop)
                wall[name] += time.perf_counter() - t0
                cpu[name] += _own_cpu() - c0
        n = rounds * calls
        out[preset] = {k: {"ms": round(1000 * wall[k] / n, 2), "cpu_ms": round(1000 * cpu[k] / n, 2)}
                       for k in models}  # fmt: skip
        out[preset]["speedup"] = round(wall["pytorch"] / wall["onnxruntime"], 2)
        out[preset]["speedup_cpu"] = round(cpu["pytorch"] / max(cpu["onnxruntime"], 1e-9), 2)
    return out


def end_to_end(presets: list[str], cache: Path, clip: Path, device: str) -> list[dict]:
    from faceswap.live.config import LiveConfig
    from faceswap.live.session import run_live

    rows = []
    for preset in presets:
        for backend, model in (("pytorch", random_run(preset, cache)),
                               ("onnxruntime", exported(preset, cache))):  # fmt: skip
            for mode in ("realtime", "unpaced"):
                out = cache / f"out-{preset}-{backend}-{mode}.mp4"
                c0 = _own_cpu()
                with Load() as load:
                    s = run_live(str(clip), model, str(out), LiveConfig(device=device),
                                 realtime=mode == "realtime", overwrite=True)  # fmt: skip
                rows.append({"preset": preset, "backend": backend, "mode": mode,
                             "fps": s.frames_per_second, "processed": s.frames_processed,
                             "read": s.frames_read, "dropped": s.frames_dropped,
                             "skipped": s.frames_skipped, "latency_ms": s.latency_ms,
                             "stage_ms": s.stage_ms, "stage_cpu_ms": s.stage_cpu_ms,
                             "cpu_ms_per_frame": round(1000 * (_own_cpu() - c0) / max(1, s.frames_processed), 1),
                             "load": load.result})  # fmt: skip
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["lightweight", "original"])
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch device / ORT provider)")
    p.add_argument("--seconds", type=float, default=6.0, help="length of the 30 fps clip")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of model calls")
    p.add_argument("--calls", type=int, default=20, help="model calls per round and backend")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "faceswap-bench-live"))
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cache = Path(args.cache) / f"v{CACHE_VERSION}"
    cache.mkdir(parents=True, exist_ok=True)
    clip = setup(args.seconds, cache)
    print(f"# bench_live: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load before {os.getloadavg()[0]:.1f} (1 min)")  # fmt: skip

    with Load() as load:
        calls = model_call(args.presets, cache, args.device, args.rounds, args.calls)
    print(f"\n## model call, one face (batch 1), {args.device}; {load}")
    print(f"{'preset':<12} {'pytorch ms':>10} {'cpu ms':>7} {'onnxrt ms':>10} {'cpu ms':>7} "
          f"{'speedup':>8} {'(cpu)':>6}")  # fmt: skip
    for preset, r in calls.items():
        print(f"{preset:<12} {r['pytorch']['ms']:>10.1f} {r['pytorch']['cpu_ms']:>7.1f} "
              f"{r['onnxruntime']['ms']:>10.1f} {r['onnxruntime']['cpu_ms']:>7.1f} "
              f"{r['speedup']:>7.2f}x {r['speedup_cpu']:>5.2f}x")  # fmt: skip

    rows = end_to_end(args.presets, cache, clip, args.device)
    print(f"\n## end to end, 640x480 at {FPS:g} fps offered, file output (x264 ultrafast)")
    print(f"{'preset':<12} {'backend':<12} {'mode':<9} {'fps':>6} {'dropped':>8} {'p50 ms':>7} "
          f"{'p95 ms':>7}  {'CPU ms/frame: track/swap/comp/out':<34} {'all':>5}  load")  # fmt: skip
    for r in rows:
        lat = r["latency_ms"]
        st = r["stage_cpu_ms"]
        stages = "/".join(f"{st[k]:.1f}" for k in ("track", "swap", "composite", "output"))
        p50 = f"{lat['p50']:.0f}" if r["mode"] == "realtime" else "-"
        p95 = f"{lat['p95']:.0f}" if r["mode"] == "realtime" else "-"
        print(f"{r['preset']:<12} {r['backend']:<12} {r['mode']:<9} {r['fps']:>6.1f} "
              f"{r['dropped']:>8} {p50:>7} {p95:>7}  {stages:<34} {r['cpu_ms_per_frame']:>5.1f}  "
              f"cores busy {r['load']['cores_busy']:.2f} (others "
              f"{r['load']['cores_others']:.2f}), load {r['load']['loadavg_1min']:.1f}")  # fmt: skip
    print("\n(unpaced latency is not shown: frames wait in the source by design there)")
    if args.json:
        Path(args.json).write_text(json.dumps({"model_call": calls, "end_to_end": rows,
                                               "device": args.device, "cpus": os.cpu_count()},
                                              indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
