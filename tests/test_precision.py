"""`precision: auto` on the CPU: bf16 where the CPU computes it natively, fp32 elsewhere."""

import torch

from faceswap.train import runtime
from faceswap.train.trainer import pick_precision

AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n"
AVX512 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512vl avx512_vnni\n"
ZEN4 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_tile amx_bf16 amx_int8\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert not runtime.cpu_has_native_bf16(AVX2)
    assert not runtime.cpu_has_native_bf16(AVX512)  # AVX-512 alone emulates bf16
    assert runtime.cpu_has_native_bf16(ZEN4)
    assert runtime.cpu_has_native_bf16(SAPPHIRE)
    assert not runtime.cpu_has_native_bf16("")  # no flags line at all (not Linux x86)
    assert runtime.cpu_flags(AVX2) == {"fpu", "sse2", "avx", "fma", "avx2"}


def test_auto_precision_follows_the_cpu(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr("faceswap.train.trainer.cpu_has_native_bf16", lambda: True)
    assert pick_precision("auto", cpu) is torch.bfloat16
    assert pick_precision("fp32", cpu) is None  # an explicit choice wins
    monkeypatch.setattr("faceswap.train.trainer.cpu_has_native_bf16", lambda: False)
    assert pick_precision("auto", cpu) is None
    assert pick_precision("bf16", cpu) is torch.bfloat16
