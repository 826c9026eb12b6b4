"""An infinite, exactly resumable stream of training batches for one side (A or B).

The stream of faces is the concatenation of one seeded permutation per epoch; batches are cut
from it in order. Its state is (epoch, position in that epoch's permutation): saving it with a
checkpoint and loading it later continues with exactly the batches an uninterrupted run would
have seen, because both the order and every sample's augmentation are pure functions of
(seed, epoch, index). Skipping to a position decodes nothing.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections import OrderedDict
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from faceswap.data.augment import FLOW_GRID
from faceswap.data.dataset import FaceDataset
from faceswap.data.gpu_augment import augment_batch, landmark_flows
from faceswap.data.seeding import mix_seed
from faceswap.errors import BadInput

logger = logging.getLogger(__name__)

Key = tuple[int, int]  # (item, epoch)


def _mp_context():
    """Worker processes start from a clean forkserver (spawn where there is none), never by
    forking this process: a child forked after OpenCV ran its thread pool here deadlocks in
    its first cv2.setNumThreads or parallel cv2 call. The server imports torch, cv2 and this
    package once, so each worker starts in well under a second."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "cv2", "faceswap.data.dataset"])
    return ctx


def _worker_init(_: int) -> None:
    # one thread per worker: the workers are the parallelism; nested pools only thrash
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class _Plan:
    """Batch sampler for DataLoader: the stream's key batches from its state at iter() time."""

    def __init__(self, stream: BatchStream) -> None:
        self.stream = stream

    def __iter__(self):
        epoch, pos = self.stream.epoch, self.stream.position
        while True:
            keys, epoch, pos = self.stream.plan(epoch, pos)
            yield self.stream.local(keys)


REPEAT_KEY = 1_000_003  # weighted draws: key epoch * REPEAT_KEY + repeat, apart from every epoch


def repeats(order: np.ndarray) -> np.ndarray:
    """(N,) for each position, how many times its item came before it in `order`."""
    idx = np.argsort(order, kind="stable")
    ranked = order[idx]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    out = np.empty(len(order), np.int64)
    out[idx] = np.arange(len(order)) - first
    return out


def balance_weights(angles: np.ndarray, bin_deg: float = 10.0) -> np.ndarray:
    """(N,) sampling weights that make each `bin_deg` bin of `angles` (degrees) equally likely:
    a face's weight is one over its bin's count. Rare head turns are drawn as often as the
    frontal faces that fill a talking-head clip."""
    bins = np.floor(np.asarray(angles, np.float64) / bin_deg).astype(np.int64)
    _, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


class BatchStream:
    """Infinite batches of `dataset`, resumable with state_dict / load_state_dict.

    drop_last=True: every batch is full; a batch that reaches the end of an epoch takes the rest
    of its faces from the next epoch's permutation (no face is dropped). drop_last=False: each
    epoch ends with a possibly short batch.
    num_workers > 0 runs the CPU augmentation in persistent DataLoader workers; the batches are
    identical for any number of workers. device_augment=True hands clean faces to `device` and
    augments there with gpu_augment.augment_batch (one seeded generator per batch, keyed like
    the samples), which is what the trainer uses on CUDA.
    rank / world_size (data-parallel training): every rank plans the same global batches of
    batch_size * world_size faces and loads only its own contiguous slice of batch_size, so the
    state (and a checkpoint of it) is the same on every rank.
    """

    def __init__(
        self,
        dataset: FaceDataset,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        drop_last: bool = True,
        device_augment: bool = False,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
        weights: np.ndarray | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, not {num_workers}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        if world_size > 1 and not drop_last:  # a short last batch could leave a rank nothing
            raise ValueError("several ranks need drop_last=True")
        if len(dataset) == 0:
            raise BadInput("no faces to stream: the data set is empty")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.global_batch = self.batch_size * self.world_size
        self.num_workers = int(num_workers)
        self.drop_last = drop_last
        self.device_augment = device_augment
        self.device = torch.device(device)
        self.epoch = 0
        self.position = 0
        # per-item sampling weights (None: each item once an epoch, in a random order)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and (
            len(self.weights) != len(dataset) or not bool((self.weights > 0).all())
        ):
            raise ValueError("weights must be one positive number per item")
        self._orders: OrderedDict[int, np.ndarray] = OrderedDict()
        self._loader: DataLoader | None = None
        self._it: Any = None

    # ---- order -------------------------------------------------------------------------
    def order(self, epoch: int) -> np.ndarray:
        """The items of `epoch` (a pure function of seed and epoch): a permutation, or with
        weights, len(dataset) draws in proportion to them (an item can come several times)."""
        perm = self._orders.get(epoch)
        if perm is None:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, "order"))
            if self.weights is None:
                perm = torch.randperm(len(self.dataset), generator=g).numpy()
            else:
                perm = torch.multinomial(self.weights, len(self.dataset), replacement=True,
                                         generator=g).numpy()  # fmt: skip
            self._orders[epoch] = perm
            while len(self._orders) > 4:
                self._orders.popitem(last=False)
        return perm

    def plan(self, epoch: int, pos: int) -> tuple[list[Key], int, int]:
        """The keys of the global batch that starts at (epoch, pos), and the state after it."""
        n = len(self.dataset)
        keys: list[Key] = []
        while len(keys) < self.global_batch:
            perm = self.order(epoch)
            take = min(self.global_batch - len(keys), n - pos)
            if self.weights is None:
                keys.extend((int(i), epoch) for i in perm[pos : pos + take])
            else:  # a repeat of an item in one epoch gets its own augmentation
                rep = repeats(perm)[pos : pos + take]
                keys.extend((int(i), epoch * REPEAT_KEY + int(r))
                            for i, r in zip(perm[pos : pos + take], rep))  # fmt: skip
            pos += take
            if pos >= n:
                epoch, pos = epoch + 1, 0
                if not self.drop_last:
                    break
        return keys, epoch, pos

    def local(self, keys: list[Key]) -> list[Key]:
        """This rank's slice of a global batch's keys."""
        if self.world_size == 1:
            return keys
        return keys[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    # ---- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        """{"epoch": e, "position": p}: faces of epoch e's permutation consumed so far."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, pos = state.get("epoch"), state.get("position")
        if not (isinstance(epoch, int) and isinstance(pos, int) and epoch >= 0 and pos >= 0):
            raise ValueError(f"bad batch stream state {state!r}")
        if pos >= len(self.dataset):  # the data set shrank since the save: start the next epoch
            logger.warning("stream position %d is past the %d faces; starting epoch %d",
                           pos, len(self.dataset), epoch + 1)  # fmt: skip
            epoch, pos = epoch + 1, 0
        self.epoch, self.position = epoch, pos
        self._it = None  # the workers' prefetched batches belong to the old position

    # ---- batches -----------------------------------------------------------------------
    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        keys, epoch, pos = self.plan(self.epoch, self.position)
        keys = self.local(keys)
        if self.device_augment:
            batch = self._device_batch(keys)
        elif self.num_workers == 0:
            batch = default_collate([self.dataset[k] for k in keys])
        else:
            if self._it is None:
                self._it = iter(self._workers())
            batch = next(self._it)
        self.epoch, self.position = epoch, pos
        if not self.device_augment and self.device.type != "cpu":
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        return batch

    def _workers(self) -> DataLoader:
        if self._loader is None:
            self._loader = DataLoader(
                self.dataset,
                batch_sampler=_Plan(self),
                num_workers=self.num_workers,
                collate_fn=default_collate,
                persistent_workers=True,
                worker_init_fn=_worker_init,
                pin_memory=self.device.type == "cuda",
                multiprocessing_context=_mp_context(),
            )
        return self._loader

    def _device_batch(self, keys: list[Key]) -> dict[str, torch.Tensor]:
        ds = self.dataset
        idx = np.array([k[0] for k in keys], dtype=np.int64)
        images, masks = ds.raw(idx)
        pin = self.device.type == "cuda"
        if pin:
            images, masks = images.pin_memory(), masks.pin_memory()
        # (B, R, R, 3) uint8 -> (B, 3, R, R) float on the device: 4x less to copy than float
        images = images.to(self.device, non_blocking=pin).permute(0, 3, 1, 2).float() / 255.0
        masks = masks.to(self.device, non_blocking=pin).permute(0, 3, 1, 2).float() / 255.0
        key = mix_seed(self.seed, self.epoch, self.position, "device")
        if self.world_size > 1:  # each rank's slice gets its own augmentation draws
            key = mix_seed(key, self.rank)
        gen = torch.Generator().manual_seed(key)
        cfg = ds.augment
        flows = None
        if cfg is not None and cfg.warp_to_landmarks:
            nb = ds.neighbours()
            if nb.shape[1]:
                picks = np.random.default_rng(key).random(len(idx))
                partners = nb[idx, np.minimum((picks * nb.shape[1]).astype(np.int64),
                                              nb.shape[1] - 1)]  # fmt: skip
                src = torch.from_numpy(ds.landmarks[idx]).to(self.device)
                dst = torch.from_numpy(ds.landmarks[partners]).to(self.device)
                flows = landmark_flows(src, dst, ds.resolution)
            else:
                flows = torch.zeros((len(idx), FLOW_GRID, FLOW_GRID, 2), device=self.device)
        mean_luma = torch.from_numpy(ds.mean_luma[idx])
        out = augment_batch(images, masks, gen, cfg, mean_luma, flows)
        out["index"] = torch.from_numpy(ds.face_indices[idx])
        return out

    def close(self) -> None:
        """Stop the worker processes (they also stop with the process)."""
        self._it = None
        self._loader = None
