#!/usr/bin/env python
"""Benchmark one training step of a model preset: throughput, FLOP/s vs the machine's peak.

Builds a real `Trainer` on two small face sets (rendered from the astronaut portrait with
faceswap.synthetic.render_clip and extracted once, then cached under the temp dir), warms up,
then times `trainer.train_step()` itself: both sides, the fused encoder pass, the loss, the
backward pass, gradient clipping and AdamW, and the batch loading (CPU augmentation in this
process when num_workers = 0, as the trainer does).

Printed (and written with --json):
  * model: parameters, FLOPs per sample (forward + backward, `flops_per_sample`);
  * peak: a 2048x2048 matmul loop in fp32 and bf16 in this process (GFLOP/s, best of 5);
  * step: samples/s (2 x batch per step), median step time, achieved GFLOP/s
    (samples/s x FLOPs per sample) and its share of the measured peak (of the precision used);
    the share of the step spent fetching batches, page faults per step;
  * phases (--breakdown): the same step split into fetch / forward+loss / backward / clip /
    optimizer, timed with the trainer's own objects;
  * loader: faces/s a BatchStream delivers on one thread (one process) vs the trainer's demand;
  * memory: peak RSS (or torch.cuda.max_memory_allocated on CUDA);
  * load: what else the machine did during the timed steps (from /proc/stat: CPU cores busy in
    total and in other processes, mean runnable tasks, 1-min load average). On a shared
    machine, compare variants measured back to back, not absolute numbers.

Variants (--variants) run each configuration in its own process, interleaved round by round
(A B A B ...), and print samples/s per round and the ratio to the first variant, taken per
round so that both sides of a ratio saw about the same machine load. A variant is a built-in
name (see VARIANTS) or "label:ARGS", ARGS being extra command-line flags and NAME=VALUE
environment settings, e.g. "arena2:MALLOC_ARENA_MAX=2" or "b32:--batch-size 32".

Examples:
  .venv/bin/python scripts/bench_train.py --model original
  .venv/bin/python scripts/bench_train.py --model lightweight --batch-size 32 --json out.json
  .venv/bin/python scripts/bench_train.py --model original --steps 8 \\
      --variants fp32 bf16 no-cl no-heap --rounds 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

# Built-in variants: extra flags and environment of the child process. The trainer's defaults
# (fused AdamW, the glibc heap kept: faceswap/train/runtime.py) are "fp32"; the others switch
# one thing.
VARIANTS: dict[str, tuple[list[str], dict[str, str]]] = {
    "fp32": ([], {}),
    "bf16": (["--precision", "bf16"], {}),
    "no-cl": (["--no-channels-last"], {}),
    "threads1": (["--threads", "1"], {}),
    "no-mkldnn": (["--no-mkldnn"], {}),
    "foreach-adamw": (["--adamw", "foreach"], {}),
    "keep-grads": (["--keep-grads"], {}),
    # glibc's default: big blocks mmap'ed and unmapped every step (page faults)
    "no-heap": (["--no-cpu-heap"], {}),
    "arena2": ([], {"MALLOC_ARENA_MAX": "2"}),
    # glibc >= 2.35: transparent huge pages for malloc's big blocks (THP mode "madvise")
    "thp": ([], {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}),
    "gemm4": (["--gemm-conv-grid", "4"], {}),
    "gemm8": (["--gemm-conv-grid", "8"], {}),
}
MALLOC_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_",
              "MALLOC_TOP_PAD_", "GLIBC_TUNABLES", "LD_PRELOAD", "OMP_NUM_THREADS")  # fmt: skip
CACHE_VERSION = 1


# ---- machine load --------------------------------------------------------------------------


def _cpu_jiffies() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of all CPUs from /proc/stat (zeros where it is missing).
    Steal is time the hypervisor gave this VM's CPUs to someone else."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0, 0
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    steal = vals[7] if len(vals) > 7 else 0
    total = sum(vals[:8])  # guest time is already inside user
    return total - idle - steal, steal, total


def _procs_running() -> int | None:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _loadavg() -> float | None:
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return float(fh.read().split()[0])
    except (OSError, ValueError):
        return None


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class LoadMeter:
    """What the machine did during a `with` block: cores busy (all processes / others), cores
    stolen by the hypervisor, mean runnable tasks (sampled every 0.25 s, this process's threads
    included), load average."""

    def __init__(self) -> None:
        self.result: dict[str, float | None] = {}
        self._samples: list[int] = []
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            n = _procs_running()
            if n is not None:
                self._samples.append(n)

    def __enter__(self) -> LoadMeter:
        self._j0, self._own0, self._t0 = _cpu_jiffies(), _own_cpu(), time.perf_counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        (b1, s1, t1), (b0, s0, t0) = _cpu_jiffies(), self._j0
        wall = time.perf_counter() - self._t0
        ncpu = os.cpu_count() or 1
        busy = ncpu * (b1 - b0) / (t1 - t0) if t1 > t0 else None
        steal = ncpu * (s1 - s0) / (t1 - t0) if t1 > t0 else None
        own = (_own_cpu() - self._own0) / max(wall, 1e-9)
        self.result = {
            "cpus": ncpu,
            "cores_busy": busy,
            "cores_busy_self": own,
            "cores_busy_others": None if busy is None else max(0.0, busy - own),
            "cores_stolen": steal,
            "runnable_mean": statistics.fmean(self._samples) if self._samples else None,
            "loadavg_1min": _loadavg(),
        }


# ---- face sets -----------------------------------------------------------------------------


def _cache_root() -> Path:
    return Path(tempfile.gettempdir()) / f"faceswap-bench-train-v{CACHE_VERSION}"


def synthetic_pair(size: int, frames: int = 120, cache: Path | None = None) -> tuple[Path, Path]:
    """Two extracted face sets (the portrait and a recoloured copy), `frames` frames each at
    `size` px, made once and cached (render + extract takes ~10 s per set at 64 px)."""
    from faceswap.synthetic import astronaut, cached_faceset, recolor_identity

    root = (cache or _cache_root()) / f"s{size}-f{frames}"
    a = cached_faceset(root / "a", frames, size, seed=1)
    b = cached_faceset(root / "b", frames, size, seed=2, face_rgb=recolor_identity(astronaut()))
    return a, b


# ---- measurements --------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(
    dtype: torch.dtype, device: torch.device, n: int = 2048, trials: int = 5, seconds: float = 0.3
) -> tuple[float, int]:
    """Best GFLOP/s of an n x n @ n x n matmul over `trials` trials of >= `seconds` each, and
    the n used: a dtype without fast kernels (bf16 on a CPU without AVX512-BF16/AMX runs at
    well under 1 GFLOP/s) is measured at the largest power of two below n whose call takes
    under ~1 s, so that the probe stays short."""
    size = min(256, n)
    while True:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        out = torch.empty(size, size, device=device, dtype=dtype)
        torch.mm(a, b, out=out)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(device)
        dt = time.perf_counter() - t0
        if size >= n or dt * 8 > 1.0:  # doubling the side costs 8x
            break
        size *= 2
    best = 0.0
    for _ in range(trials):
        reps, t0 = 0, time.perf_counter()
        while True:
            torch.mm(a, b, out=out)
            reps += 1
            _sync(device)
            dt = time.perf_counter() - t0
            if dt >= seconds:
                break
        best = max(best, 2 * size**3 * reps / dt / 1e9)
    return best, size


class TimedStream:
    """Wraps a BatchStream and adds up the seconds spent in next()."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.seconds = 0.0

    def __iter__(self) -> TimedStream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        t0 = time.perf_counter()
        try:
            return next(self.stream)
        finally:
            self.seconds += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def time_steps(
    trainer: Any, steps: int, max_seconds: float
) -> tuple[list[float], float, int, dict[str, float | None]]:
    """Per-step seconds of trainer.train_step(), seconds spent fetching batches, minor page
    faults, and the machine load during them. Stops early after `max_seconds` (>= 2 steps)."""
    timed = {side: TimedStream(s) for side, s in trainer.streams.items()}
    saved, trainer.streams = trainer.streams, timed
    times: list[float] = []
    flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    try:
        with LoadMeter() as meter:
            start = time.perf_counter()
            for _ in range(steps):
                t0 = time.perf_counter()
                out = trainer.train_step()
                _sync(trainer.device)
                times.append(time.perf_counter() - t0)
                if out.get("skipped"):
                    raise RuntimeError("non-finite loss during the benchmark")
                if len(times) >= 2 and time.perf_counter() - start > max_seconds:
                    break
    finally:
        trainer.streams = saved
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt0
    return times, sum(t.seconds for t in timed.values()), faults, meter.result


def phase_breakdown(trainer: Any, steps: int) -> dict[str, float]:
    """Median seconds per phase of a step, replaying Trainer.train_step with its own objects."""
    phases: dict[str, list[float]] = {
        k: [] for k in ("fetch", "forward_loss", "backward", "clip", "optimizer")
    }
    dev = trainer.device
    for _ in range(steps):
        t = [time.perf_counter()]
        a = trainer._prep(next(trainer.streams["a"]))
        b = trainer._prep(next(trainer.streams["b"]))
        _sync(dev)
        t.append(time.perf_counter())
        trainer.model.train()
        trainer.optimizer.zero_grad(set_to_none=True)
        loss, _ = trainer.losses(a, b)
        float(loss.detach())
        t.append(time.perf_counter())
        trainer.scaler.scale(loss).backward()
        _sync(dev)
        t.append(time.perf_counter())
        if trainer.cfg.grad_clip > 0:
            trainer.scaler.unscale_(trainer.optimizer)
            torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.cfg.grad_clip)
        _sync(dev)
        t.append(time.perf_counter())
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
        _sync(dev)
        t.append(time.perf_counter())
        for k, t0, t1 in zip(phases, t[:-1], t[1:]):
            phases[k].append(t1 - t0)
    return {k: statistics.median(v) for k, v in phases.items()}


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    out = {"rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


# ---- experiment: small convolutions as one GEMM ------------------------------------------------


def conv2d_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                padding: int) -> torch.Tensor:  # fmt: skip
    """F.conv2d (zero padding, square kernel and stride, groups 1) as im2col + one GEMM in
    (H, W, C) order: free views for channels_last input and weight, channels_last output, and
    a channels_last weight gradient. On a CPU it beats oneDNN where the output grid is tiny."""
    b, c, h, w = x.shape
    cout, _, k, _ = weight.shape
    xh = x.permute(0, 2, 3, 1)  # (B, H, W, C)
    if padding:
        xh = torch.nn.functional.pad(xh, (0, 0, padding, padding, padding, padding))
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    cols = xh.unfold(1, k, stride).unfold(2, k, stride)  # (B, Ho, Wo, C, kh, kw)
    cols = cols.permute(0, 1, 2, 4, 5, 3).reshape(b * ho * wo, k * k * c)
    w2 = weight.permute(0, 2, 3, 1).reshape(cout, k * k * c)
    y = cols @ w2.t() if bias is None else torch.addmm(bias, cols, w2.t())
    return y.view(b, ho, wo, cout).permute(0, 3, 1, 2)


def patch_small_convs(model: torch.nn.Module, max_grid: int) -> int:
    """Route every plain Conv2d whose output grid is at most max_grid x max_grid through
    conv2d_gemm (benchmark-only monkeypatch). Returns the number of convs patched."""
    n = 0
    for m in model.modules():
        if not (isinstance(m, torch.nn.Conv2d) and m.padding_mode == "zeros" and m.groups == 1
                and m.dilation == (1, 1) and len(set(m.kernel_size)) == 1
                and len(set(m.stride)) == 1 and isinstance(m.padding, tuple)
                and len(set(m.padding)) == 1):  # fmt: skip
            continue
        k, s, p = m.kernel_size[0], m.stride[0], m.padding[0]

        def forward(x: torch.Tensor, m=m, k=k, s=s, p=p, plain=m.forward) -> torch.Tensor:
            if (x.shape[-1] + 2 * p - k) // s + 1 <= max_grid >= (x.shape[-2] + 2 * p - k) // s + 1:
                return conv2d_gemm(x, m.weight, m.bias, s, p)
            return plain(x)

        m.forward = forward  # type: ignore[method-assign]
        n += 1
    return n


# ---- one run -------------------------------------------------------------------------------


def build_trainer(args: argparse.Namespace, pair: tuple[Path, Path], run_dir: Path) -> Any:
    from faceswap import faceset as fsmod
    from faceswap.config import from_dict, to_dict
    from faceswap.models import load_preset, model_config_from
    from faceswap.train.config import TrainConfig
    from faceswap.train.trainer import Trainer

    try:
        model = load_preset(args.model)
    except Exception:
        model = model_config_from(args.model)
    data = {
        "model": to_dict(model),
        "batch_size": args.batch_size,
        "precision": args.precision,
        "channels_last": not args.no_channels_last,
        "compile": args.compile,
        "device": args.device,
        "num_workers": args.num_workers,
        "cpu_heap": not args.no_cpu_heap,
        "val_fraction": 0.05,
        "steps": 10**6,
    }
    if args.no_grad_clip:
        data["grad_clip"] = 0.0
    cfg = from_dict(TrainConfig, data, "bench_train")
    trainer = Trainer(cfg, fsmod.load(pair[0]), fsmod.load(pair[1]), run_dir)
    if args.adamw != "trainer":
        group = trainer.optimizer.param_groups[0]
        trainer.optimizer = torch.optim.AdamW(
            [p for p in trainer.model.parameters() if p.requires_grad], lr=group["lr"],
            betas=group["betas"], weight_decay=group["weight_decay"],
            fused=args.adamw == "fused", foreach=args.adamw == "foreach",
        )  # fmt: skip
    if args.gemm_conv_grid:
        patch_small_convs(trainer.model, args.gemm_conv_grid)
    if args.keep_grads:  # benchmark-only: zero the gradients in place instead of freeing them
        zero = trainer.optimizer.zero_grad
        trainer.optimizer.zero_grad = lambda set_to_none=True: zero(set_to_none=False)  # type: ignore[method-assign]
    return trainer


def apply_process_settings(args: argparse.Namespace) -> None:
    """The settings that hold for the whole process (see PROCESS_WIDE)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    if args.no_nnpack:
        torch.backends.nnpack.set_flags(False)
    logging.basicConfig(level=logging.WARNING)


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    from faceswap.data.bench import loader_throughput

    apply_process_settings(args)
    device_name = args.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)

    peak, peak_n = {}, {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak[name], peak_n[name] = matmul_peak(dtype, device, args.peak_size)
    from faceswap.models import model_config_from

    res = model_config_from(args.model).resolution
    pair = synthetic_pair(max(64, res), args.frames)
    rss_before = _rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(args, pair, Path(tmp) / "run")
        prec = str(trainer.amp_dtype or "fp32").replace("torch.", "")
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            trainer.train_step()
        _sync(trainer.device)
        warmup_s = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times, fetch_s, faults, load = time_steps(trainer, args.steps, args.max_seconds)
        phases = phase_breakdown(trainer, args.breakdown) if args.breakdown else None
        mem = peak_memory_mb(trainer.device)
        # the peak again after the steps: on a shared machine the better of the two is closer
        # to what the hardware can do
        again, n_again = matmul_peak(torch.float32, device, args.peak_size)
        if again > peak["fp32"]:
            peak["fp32"], peak_n["fp32"] = again, n_again
        demand = 2 * args.batch_size * len(times) / sum(times)
        loader = loader_throughput(trainer.train_sets["a"], args.batch_size, args.loader_seconds)
        n_train = len(trainer.train_sets["a"])

    total = sum(times)
    sps = 2 * args.batch_size * len(times) / total
    med = statistics.median(times)
    flops = trainer.flops
    achieved = sps * flops / 1e9
    peak_used = peak["bf16" if prec == "bfloat16" else "fp32"]
    return {
        "model": args.model,
        "parameters": trainer.parameters,
        "flops_per_sample": flops,
        "batch_size": args.batch_size,
        "precision": prec,
        "channels_last": not args.no_channels_last,
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
        "mkldnn": torch.backends.mkldnn.enabled,
        "adamw": args.adamw,
        "keep_grads": args.keep_grads,
        "grad_clip": not args.no_grad_clip,
        "gemm_conv_grid": args.gemm_conv_grid,
        "cpu_heap": not args.no_cpu_heap,
        "env": {k: os.environ[k] for k in MALLOC_ENV if k in os.environ},
        "peak_gflops": peak,
        "peak_matmul_n": peak_n,
        "steps_timed": len(times),
        "warmup_s": warmup_s,
        "step_s_median": med,
        "step_s_min": min(times),
        "step_s_max": max(times),
        "samples_per_s": sps,
        "samples_per_s_median_step": 2 * args.batch_size / med,
        "achieved_gflops": achieved,
        "fraction_of_peak": achieved / peak_used,
        "fraction_of_fp32_peak": achieved / peak["fp32"],
        "samples_per_cpu_s": sps / load["cores_busy_self"] if load.get("cores_busy_self") else None,
        "fetch_fraction": fetch_s / total,
        "minor_faults_per_step": faults / len(times),
        "phases_s": phases,
        "loader_faces_per_s_1_thread": loader,
        "trainer_demand_faces_per_s": demand,
        "train_faces_per_side": n_train,
        "memory": {**mem, "rss_before_trainer_mb": rss_before},
        "load": load,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }


# ---- output --------------------------------------------------------------------------------


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def print_table(r: dict[str, Any]) -> None:
    ld, mem = r["load"], r["memory"]
    fl = r["flops_per_sample"]
    rows: list[tuple[str, str]] = [
        ("model", f"{r['model']}  batch {r['batch_size']}/side  {r['precision']}  "
                  f"channels_last={r['channels_last']}  device {r['device']}  "
                  f"threads {r['threads']}  mkldnn={r['mkldnn']}"),
        ("parameters", f"{r['parameters'] / 1e6:.2f} M"),
        ("FLOPs / sample (fwd+bwd)", f"{fl / 1e9:.2f} GFLOP"),
        *((f"matmul peak {k}", f"{v:.1f} GFLOP/s  ({r['peak_matmul_n'][k]}^2 x "
                                f"{r['peak_matmul_n'][k]}^2, best of 5{' before/after' if k == 'fp32' else ''})")
          for k, v in r["peak_gflops"].items()),
        ("steps timed (warm-up)", f"{r['steps_timed']} ({r['warmup_s']:.1f} s)"),
        ("step time median", f"{r['step_s_median'] * 1e3:.0f} ms  "
                             f"(min {r['step_s_min'] * 1e3:.0f}, max {r['step_s_max'] * 1e3:.0f})"),
        ("samples/s (2 x batch / step)", f"{r['samples_per_s']:.2f}  "
                                         f"(from the median step: "
                                         f"{r['samples_per_s_median_step']:.2f})"),
        ("samples / CPU-second", f"{_fmt(r['samples_per_cpu_s'], '.2f')}  (samples/s over the "
                                 "cores this process got: less sensitive to other load)"),
        ("achieved", f"{r['achieved_gflops']:.1f} GFLOP/s = "
                     f"{100 * r['fraction_of_peak']:.0f}% of the {r['precision']} matmul peak"
                     + (f" ({100 * r['fraction_of_fp32_peak']:.0f}% of fp32's)"
                        if r["precision"] != "fp32" else "")),
        ("batch fetch in the step", f"{100 * r['fetch_fraction']:.1f}% of the step time"),
        ("minor page faults / step", f"{r['minor_faults_per_step']:.0f}"),
        ("loader (1 thread)", f"{r['loader_faces_per_s_1_thread']:.0f} faces/s vs demand "
                              f"{r['trainer_demand_faces_per_s']:.1f} faces/s "
                              f"({r['loader_faces_per_s_1_thread'] / r['trainer_demand_faces_per_s']:.0f}x)"),
        ("peak RSS", f"{mem['rss_peak_mb']:.0f} MB (before the trainer: "
                     f"{mem['rss_before_trainer_mb']:.0f} MB)"),
    ]  # fmt: skip
    if "cuda_max_allocated_mb" in mem:
        rows.append(("CUDA max allocated", f"{mem['cuda_max_allocated_mb']:.0f} MB"))
    if r["phases_s"]:
        ph = r["phases_s"]
        tot = sum(ph.values())
        rows.append(("phases (median ms)", "  ".join(
            f"{k} {v * 1e3:.0f} ({100 * v / tot:.0f}%)" for k, v in ph.items())))  # fmt: skip
    rows.append(("machine load during steps",
                 f"cores busy {_fmt(ld['cores_busy'], '.2f')}/{ld['cpus']} (this process "
                 f"{_fmt(ld['cores_busy_self'], '.2f')}, others {_fmt(ld['cores_busy_others'], '.2f')})"
                 f"  stolen {_fmt(ld.get('cores_stolen'), '.2f')}"
                 f"  runnable {_fmt(ld['runnable_mean'], '.1f')}  "
                 f"loadavg {_fmt(ld['loadavg_1min'], '.2f')}"))  # fmt: skip
    if r["env"]:
        rows.append(("environment", " ".join(f"{k}={v}" for k, v in r["env"].items())))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


# ---- variants ------------------------------------------------------------------------------


def parse_variant(spec: str) -> tuple[str, list[str], dict[str, str]]:
    if spec in VARIANTS:
        flags, env = VARIANTS[spec]
        return spec, list(flags), dict(env)
    if ":" not in spec:
        raise SystemExit(f"unknown variant {spec!r}: use one of {', '.join(VARIANTS)} "
                         "or label:ARGS")  # fmt: skip
    label, rest = spec.split(":", 1)
    flags, env = [], {}
    for tok in shlex.split(rest):
        name, eq, value = tok.partition("=")
        if eq and name.isupper() and not tok.startswith("-"):
            env[name] = value
        else:
            flags.append(tok)
    return label, flags, env


def run_variants(args: argparse.Namespace, argv: list[str]) -> None:
    variants = [parse_variant(s) for s in args.variants]
    base = _strip_driver_args(argv)
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for label, flags, env in variants:
                out = Path(tmp) / f"{label}-{rnd}.json"
                cmd = [sys.executable, __file__, *base, *flags, "--json", str(out)]
                print(f"[round {rnd + 1}/{args.rounds}] {label}: "
                      f"{' '.join(f'{k}={v}' for k, v in env.items())} {shlex.join(cmd[2:])}",
                      file=sys.stderr, flush=True)  # fmt: skip
                proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True,
                                      text=True)  # fmt: skip
                if proc.returncode:
                    print(proc.stdout, proc.stderr, sep="\n", file=sys.stderr)
                    raise SystemExit(f"variant {label} failed (exit {proc.returncode})")
                r = json.loads(out.read_text())
                r["round"] = rnd
                results[label].append(r)
                print(f"    {r['samples_per_s']:.2f} samples/s, "
                      f"{100 * r['fraction_of_peak']:.0f}% of peak, others busy "
                      f"{_fmt(r['load']['cores_busy_others'], '.2f')} cores",
                      file=sys.stderr, flush=True)  # fmt: skip
    print_variants(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"variants": results}, indent=2))


def _strip_driver_args(argv: list[str]) -> list[str]:
    """argv without --variants/--interleave/--rounds/--json (and their values)."""
    out, skip = [], False
    for tok in argv:
        if skip:
            if tok.startswith("-"):
                skip = False
            else:
                continue
        if tok in ("--variants", "--interleave", "--rounds", "--json"):
            skip = True
            continue
        if tok.startswith(("--variants=", "--interleave=", "--rounds=", "--json=")):
            continue
        out.append(tok)
    return out


def print_variants(results: dict[str, list[dict[str, Any]]]) -> None:
    labels = list(results)
    base = results[labels[0]]
    head = (f"{'variant':<16} {'samples/s':>9} {'rounds':<22} {'of peak':>7} "
            f"{'ratio':>6} {'ratios per round':<22} {'per CPU-s':>9} {'faults':>7} {'others busy':>11} "
            f"{'loadavg':>7}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for label in labels:
        rs = results[label]
        sps = [r["samples_per_s"] for r in rs]
        ratios = [r["samples_per_s"] / b["samples_per_s"] for r, b in zip(rs, base)]
        others = [r["load"]["cores_busy_others"] for r in rs]
        loads = [r["load"]["loadavg_1min"] for r in rs]
        print(f"{label:<16} {statistics.median(sps):>9.2f} "
              f"{' '.join(f'{s:.2f}' for s in sps):<22} "
              f"{100 * statistics.median(r['fraction_of_peak'] for r in rs):>6.0f}% "
              f"{statistics.median(ratios):>6.2f} {' '.join(f'{x:.2f}' for x in ratios):<22} "
              f"{_fmt(statistics.median(r.get('samples_per_cpu_s') or 0 for r in rs), '.2f'):>9} "
              f"{statistics.median(r['minor_faults_per_step'] for r in rs):>7.0f} "
              f"{_fmt(statistics.fmean(o for o in others if o is not None) if any(o is not None for o in others) else None, '.2f'):>11} "
              f"{_fmt(statistics.fmean(x for x in loads if x is not None) if any(x is not None for x in loads) else None, '.2f'):>7}")  # fmt: skip
    print("ratio: samples/s over the first variant's in the same round (median over rounds); "
          "per CPU-s: samples per CPU-second this process got; faults: minor page faults per "
          "step; others busy: CPU cores used by other processes during the timed steps (mean)")  # fmt: skip


# ---- in-process A/B --------------------------------------------------------------------------

PROCESS_WIDE = ("threads", "no_mkldnn", "no_nnpack", "device", "num_workers", "no_cpu_heap")


def run_interleaved(args: argparse.Namespace, argv: list[str]) -> None:
    """One trainer per variant in this process; timed steps alternate between them (the order
    rotates every cycle), so every ratio compares steps taken seconds apart."""
    base = _strip_driver_args(argv)
    specs = [parse_variant(s) for s in args.interleave]
    vargs = []
    for label, flags, env in specs:
        if env:
            raise SystemExit(f"{label}: environment variants need --variants (own processes)")
        va = parse_args(base + flags)
        for name in PROCESS_WIDE:
            if getattr(va, name) != getattr(args, name):
                raise SystemExit(f"{label}: --{name.replace('_', '-')} is process-wide: "
                                 "use --variants")  # fmt: skip
        vargs.append(va)
    apply_process_settings(args)
    from faceswap.models import model_config_from

    res = max(model_config_from(va.model).resolution for va in vargs)
    pair = synthetic_pair(max(64, res), args.frames)
    labels = [label for label, _, _ in specs]
    times: dict[str, list[float]] = {label: [] for label in labels}
    ratios: dict[str, list[float]] = {label: [] for label in labels}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = [build_trainer(va, pair, Path(tmp) / f"run{i}") for i, va in enumerate(vargs)]
        for tr in trainers:
            for _ in range(args.warmup):
                tr.train_step()
        with LoadMeter() as meter:
            for cycle in range(args.steps):
                order = [(cycle + i) % len(trainers) for i in range(len(trainers))]
                rate = {}
                for i in order:
                    t0 = time.perf_counter()
                    trainers[i].train_step()
                    _sync(trainers[i].device)
                    dt = time.perf_counter() - t0
                    times[labels[i]].append(dt)
                    rate[i] = 2 * vargs[i].batch_size / dt
                for i, label in enumerate(labels):
                    ratios[label].append(rate[i] / rate[0])
                print(f"cycle {cycle + 1}/{args.steps}: " + "  ".join(
                    f"{labels[i]} {times[labels[i]][-1]:.2f}s" for i in order), file=sys.stderr,
                    flush=True)  # fmt: skip
        flops = [tr.flops for tr in trainers]
    ld = meter.result
    head = f"{'variant':<18} {'step med':>9} {'samples/s':>9} {'GFLOP/s':>8} {'ratio':>6}  ratios"
    print(head)
    print("-" * len(head))
    out = {}
    for i, label in enumerate(labels):
        med = statistics.median(times[label])
        sps = 2 * vargs[i].batch_size / med
        out[label] = {"step_s": times[label], "ratio_per_cycle": ratios[label],
                      "samples_per_s_median_step": sps, "flops_per_sample": flops[i]}  # fmt: skip
        print(f"{label:<18} {med * 1e3:>7.0f}ms {sps:>9.2f} {sps * flops[i] / 1e9:>8.1f} "
              f"{statistics.median(ratios[label]):>6.2f}  "
              f"{' '.join(f'{x:.2f}' for x in ratios[label])}")  # fmt: skip
    print(f"interleaved in one process, {args.steps} cycles; ratio: samples/s over the first "
          f"variant's in the same cycle (median). Machine: cores busy "
          f"{_fmt(ld['cores_busy'], '.2f')}/{ld['cpus']}, others "
          f"{_fmt(ld['cores_busy_others'], '.2f')}, stolen {_fmt(ld.get('cores_stolen'), '.2f')}, "
          f"loadavg {_fmt(ld['loadavg_1min'], '.2f')}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"interleaved": out, "load": ld}, indent=2))


# ---- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--model", default="original", help="model preset or YAML (original)")
    ap.add_argument("--batch-size", type=int, default=16, help="faces per side per step (16)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps (20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (3)")
    ap.add_argument("--max-seconds", type=float, default=600.0,
                    help="stop timing after this long (at least 2 steps)")  # fmt: skip
    ap.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16", "fp16"))
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    ap.add_argument("--num-workers", type=int, default=0, help="loader worker processes (0)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn off")
    ap.add_argument("--no-nnpack", action="store_true", help="torch.backends.nnpack off")
    ap.add_argument("--adamw", default="trainer", choices=("trainer", "fused", "foreach", "loop"),
                    help="replace the trainer's AdamW by this implementation (experiment)")  # fmt: skip
    ap.add_argument("--keep-grads", action="store_true",
                    help="zero gradients in place instead of freeing them (experiment)")  # fmt: skip
    ap.add_argument("--gemm-conv-grid", type=int, default=0, metavar="N",
                    help="run convs with an output grid <= N x N as im2col + GEMM (experiment)")  # fmt: skip
    ap.add_argument("--no-cpu-heap", action="store_true",
                    help="glibc's default allocator behaviour (the trainer keeps the heap)")  # fmt: skip
    ap.add_argument("--no-grad-clip", action="store_true", help="grad_clip = 0 (experiment)")
    ap.add_argument("--breakdown", type=int, default=0, metavar="N",
                    help="also time N steps split into phases")  # fmt: skip
    ap.add_argument("--frames", type=int, default=120, help="frames per synthetic face set")
    ap.add_argument("--peak-size", type=int, default=2048, help="matmul side for the peak")
    ap.add_argument("--loader-seconds", type=float, default=3.0)
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--variants", nargs="+", metavar="V",
                    help=f"run these in separate processes: {', '.join(VARIANTS)} or label:ARGS")  # fmt: skip
    ap.add_argument("--interleave", nargs="+", metavar="V",
                    help="A/B in this process: one trainer per variant (flags only, no "
                         "environment), timed steps alternating between them")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=2, help="rounds of --variants (2)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.variants:
        run_variants(args, argv)
        return
    if args.interleave:
        run_interleaved(args, argv)
        return
    r = run_one(args)
    print_table(r)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
