"""Loader throughput: faces per second of the CPU augmentation path and of gpu_augment.

    python -m faceswap.data.bench [FACESET] [--res 64 128 256] [--batch 64] [--seconds 3] [--json]

Without a face set, one is made from a short synthetic clip (render + extract, ~10 s).
Measured on one thread (cv2 and torch), i.e. per core; the trainer needs a few dozen to a few
thousand faces/s per side depending on the model and device.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from faceswap.data.augment import AugmentConfig
from faceswap.data.dataset import FaceDataset
from faceswap.data.gpu_augment import augment_batch
from faceswap.data.loader import BatchStream


@contextlib.contextmanager
def single_thread(enabled: bool = True) -> Iterator[None]:
    """cv2 and torch on one thread inside the block (restored after)."""
    if not enabled:
        yield
        return
    cv_n, torch_n = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(cv_n)
        torch.set_num_threads(torch_n)


def _rate(step, seconds: float) -> float:
    """Items per second of `step()` (returns items done) over at least `seconds`, after one
    warm-up call."""
    step()
    done, t0 = 0, time.perf_counter()
    while True:
        done += step()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return done / elapsed


def loader_throughput(
    dataset: FaceDataset,
    batch_size: int,
    seconds: float = 3.0,
    *,
    num_workers: int = 0,
    device_augment: bool = False,
    device: str = "cpu",
    one_thread: bool = True,
) -> float:
    """Faces per second that a BatchStream over `dataset` delivers (augmentation included)."""
    stream = BatchStream(dataset, batch_size, seed=0, num_workers=num_workers,
                         device_augment=device_augment, device=device)  # fmt: skip

    def step() -> int:
        batch = next(stream)
        if batch["input"].is_cuda:
            torch.cuda.synchronize()
        return len(batch["index"])

    try:
        with single_thread(one_thread and num_workers == 0):
            return _rate(step, seconds)
    finally:
        stream.close()


def gpu_augment_throughput(
    resolution: int,
    batch_size: int,
    seconds: float = 3.0,
    *,
    cfg: AugmentConfig | None = None,
    device: str = "cpu",
    one_thread: bool = True,
) -> float:
    """Faces per second of gpu_augment.augment_batch on random images already on `device`."""
    cfg = cfg or AugmentConfig()
    g = torch.Generator().manual_seed(0)
    images = torch.rand((batch_size, 3, resolution, resolution), generator=g).to(device)
    masks = torch.rand((batch_size, 3, resolution, resolution), generator=g).to(device)

    def step() -> int:
        out = augment_batch(images, masks, g, cfg)
        if out["input"].is_cuda:
            torch.cuda.synchronize()
        return batch_size

    with torch.no_grad(), single_thread(one_thread and device == "cpu"):
        return _rate(step, seconds)


def classic_warp_throughput(seconds: float = 3.0, *, one_thread: bool = True) -> float:
    """Faces per second of the classic deepfakes-style CPU augmentation, as a yardstick in the
    same run: a 256 px face, random rotate/zoom/shift/flip (warpAffine), a 5x5 control-point
    grid over the central 160 px with normal noise (std 5 px), upsampled (cv2.resize) and
    remapped to a 64 px input, the target fitted to the same grid by umeyama, both to float."""
    from faceswap.extract.alignment import umeyama
    from faceswap.synthetic import astronaut

    face = cv2.resize(np.ascontiguousarray(astronaut()[40:210, 135:305]), (256, 256))
    rng = np.random.default_rng(0)
    lin = np.linspace(128 - 80, 128 + 80, 5)
    gx, gy = np.broadcast_to(lin, (5, 5)), np.broadcast_to(lin[:, None], (5, 5))
    dst = np.stack(np.meshgrid(np.arange(0, 65, 16), np.arange(0, 65, 16)), -1).reshape(-1, 2)

    def one() -> None:
        m = cv2.getRotationMatrix2D((128, 128), rng.uniform(-10, 10), rng.uniform(0.95, 1.05))
        m[:, 2] += rng.uniform(-0.05, 0.05, 2) * 256
        img = cv2.warpAffine(face, m, (256, 256), borderMode=cv2.BORDER_REPLICATE)
        if rng.random() < 0.5:
            img = img[:, ::-1]
        mx = gx + rng.normal(0, 5, (5, 5))
        my = gy + rng.normal(0, 5, (5, 5))
        fx = cv2.resize(mx, (80, 80))[8:72, 8:72].astype(np.float32)
        fy = cv2.resize(my, (80, 80))[8:72, 8:72].astype(np.float32)
        warped = cv2.remap(img, fx, fy, cv2.INTER_LINEAR)
        mat = umeyama(np.stack([mx.ravel(), my.ravel()], 1), dst)
        target = cv2.warpAffine(img, mat, (64, 64))
        warped.astype(np.float32) / 255.0
        target.astype(np.float32) / 255.0

    def step() -> int:
        for _ in range(64):
            one()
        return 64

    with single_thread(one_thread):
        return _rate(step, seconds)


def _synthetic_faceset(folder: Path) -> Path:
    from faceswap.config import ExtractConfig
    from faceswap.extract.pipeline import extract
    from faceswap.synthetic import render_clip

    clip = folder / "clip.mp4"
    render_clip(clip, 48, frame_size=(640, 360), base_scale=1.0)
    out = folder / "faces"
    extract([str(clip)], out, ExtractConfig(size=256, workers=1, embed=False))
    return out


def main(argv: list[str] | None = None) -> None:
    from faceswap import faceset as fsmod

    ap = argparse.ArgumentParser(prog="python -m faceswap.data.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("faceset", nargs="?", help="face set folder (default: a synthetic one)")
    ap.add_argument("--res", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.faceset) if args.faceset else _synthetic_faceset(Path(tmp))
        fs = fsmod.load(root)
        rows = []
        for res in args.res:
            ds = FaceDataset(fs, list(range(len(fs.faces))), res, AugmentConfig(), seed=0)
            rows.append({
                "resolution": res,
                "cpu_faces_per_s_1_core": loader_throughput(ds, args.batch, args.seconds),
                "gpu_augment_on_cpu_faces_per_s_1_core": gpu_augment_throughput(
                    res, args.batch, args.seconds),
            })  # fmt: skip
            if args.device != "cpu":
                rows[-1][f"device_stream_faces_per_s_{args.device}"] = loader_throughput(
                    ds, args.batch, args.seconds, device_augment=True, device=args.device
                )
    classic = classic_warp_throughput(args.seconds)
    if args.json:
        print(json.dumps({"faces": len(fs.faces), "batch": args.batch, "rows": rows,
                          "classic_random_warp_64px_faces_per_s_1_core": classic}, indent=2))  # fmt: skip
        return
    print(f"classic deepfakes random warp (256 px face -> 64 px, one core): {classic:.0f} faces/s")
    keys = list(rows[0])
    print("  ".join(f"{k:>22}" for k in keys))
    for r in rows:
        print("  ".join(f"{r[k]:>22.0f}" for k in keys))


if __name__ == "__main__":
    main()
