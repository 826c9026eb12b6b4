"""Data-parallel training across processes, as launched by torchrun.

    torchrun --nproc_per_node=N -m faceswap train -A ... -B ... -o RUN

Each process (rank) holds a full copy of the model and walks the same global batch plan; it
trains on its own slice of every global batch and DistributedDataParallel averages the
gradients, so a step sees batch_size * N faces per side. Without torchrun's environment
(RANK, WORLD_SIZE, LOCAL_RANK) everything here is a no-op for one process.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # None: the trainer picks (single process)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE = DistInfo()


def init_from_env(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); SINGLE when the
    process was not started by torchrun or WORLD_SIZE is 1. device: "auto", "cpu" or "cuda"."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return SINGLE
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.set_device(local)
        dev, backend = torch.device("cuda", local), "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev)


def is_main(info: DistInfo = SINGLE) -> bool:
    return info.rank == 0


def barrier(info: DistInfo = SINGLE) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """The mean over ranks of each value (the values themselves for one process)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / info.world_size).tolist()


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def cleanup() -> None:
    """Leave the process group while the interpreter is whole. The trainer's DDP wrapper
    holds the group too, often in a reference cycle: collected first, so the group's worker
    threads are joined here rather than during interpreter shutdown, where a joinable thread's
    destructor aborts the process (SIGABRT, "terminate called without an active exception")."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
