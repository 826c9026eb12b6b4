"""Process-wide settings that make CPU training faster.

glibc's malloc serves blocks above a threshold (128 KiB at first, adapting up to 32 MiB) with
mmap and returns them with munmap. A training step frees and re-allocates hundreds of MB of
activations and gradients, so every step maps fresh pages and takes a page fault for each 4 KiB
of them: ~280,000 faults a step for the `original` preset at batch 16. Keeping big blocks in the
heap and never trimming it removes them (~2,400 a step) and gives ~17% more samples per
CPU-second on that preset (scripts/bench_train.py, variants fp32/mallopt). The heap then stays
at its peak size until the process ends, which a training process does anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters from glibc's malloc.h


def keep_freed_memory_in_heap() -> bool:
    """glibc only: no mmap for big blocks, never trim the heap (= MALLOC_MMAP_MAX_=0,
    MALLOC_TRIM_THRESHOLD_=2 GiB). False where it is not glibc (musl, macOS): nothing changes."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
        return bool(ok and libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1)) == 1)
    except (OSError, AttributeError):
        return False


# x86 flags of CPUs that compute bf16 dot products in hardware (Intel Cooper Lake and Sapphire
# Rapids on, AMD Zen 4 on). Without them PyTorch emulates bf16 and a bf16 step is far slower
# than an fp32 one (this project's 2-core AVX2 machine: a bf16 matmul at 1% of fp32's speed).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first CPU in the text of /proc/cpuinfo (empty where none)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether bf16 autocast speeds training up on this CPU: on a CPU with native bf16 it gave
    2.1x (`lightweight`) to 3.1x (`sae-128-lite`) the samples per CPU-second of fp32
    (scripts/bench_train.py --variants fp32 bf16; docs/performance.md). `cpuinfo`: the text of
    /proc/cpuinfo (read when None; False where there is none, e.g. macOS)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            return False
    return any(flag in cpu_flags(cpuinfo) for flag in NATIVE_BF16_FLAGS)
