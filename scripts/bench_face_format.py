#!/usr/bin/env python
"""What storing aligned faces as JPEG instead of PNG costs: image error and training loss.

1. Extract two real clips (A and B) into PNG face sets (lossless: the reference).
2. Copy each set with its images re-encoded as JPEG at each --quality: the same faces, the
   same split, only the pixels differ.
3. Image error: PSNR of the JPEG faces against the PNG ones, at the stored size and at the
   model's training resolution (where the resize averages much of the error away).
4. Training: one run per format from the same seed for --steps steps; every run is validated
   on the PNG (lossless) validation faces, so a format that teaches the model its artifacts
   shows up as a higher validation loss.

Examples:
  .venv/bin/python scripts/bench_face_format.py
  .venv/bin/python scripts/bench_face_format.py --steps 600 --quality 90,95 --json fmt.json
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clips"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def jpeg_copy(src: Path, dst: Path, quality: int) -> tuple[float, float, float]:
    """Copy face set `src` to `dst` with JPEG images; (PSNR stored, PSNR at 64 px, KiB/face)."""
    from faceswap import faceset as fsmod

    fs = fsmod.load(src)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("faces", "rejected", ".lock"))
    (dst / fsmod.FACES_DIR).mkdir()
    (dst / fsmod.REJECTED_DIR).mkdir()
    full, small, size = [], [], []
    for f in fs.faces:
        img = fs.load_image(f)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        full.append(psnr(img, dec))
        r = (64, 64)
        small.append(psnr(cv2.resize(img, r, interpolation=cv2.INTER_AREA),
                          cv2.resize(dec, r, interpolation=cv2.INTER_AREA)))  # fmt: skip
        size.append(buf.size / 1024)
        f.file = f.file.rsplit(".", 1)[0] + ".jpg"
        (dst / f.file).write_bytes(buf.tobytes())
    fs.root = dst
    fs.image_format = "jpg"
    fs.rejected = []
    fs.save()
    return float(np.mean(full)), float(np.mean(small)), float(np.mean(size))


def train_and_validate(sets: dict[str, Path], ref: dict[str, Path], run: Path, steps: int):
    """Train from a fixed seed on `sets`; validation loss on the PNG sets `ref`."""
    import torch

    from faceswap import faceset as fsmod
    from faceswap.config import load_yaml
    from faceswap.data import FaceDataset, split_train_val
    from faceswap.train.config import train_config_from
    from faceswap.train.trainer import Trainer

    torch.set_num_threads(1)
    raw = load_yaml(Path(__file__).resolve().parents[1] / "configs/train/cpu-small.yaml")
    # the 64 px model the face formats were measured with (cpu-small's is 128 px now)
    raw.update(model="lightweight", steps=steps, val_every=steps, save_every=steps,
               preview_every=steps, val_batches=0, seed=1)  # fmt: skip
    raw["schedule"].update(total_steps=steps, warmup_steps=min(50, steps // 4))
    cfg = train_config_from(raw, "bench")
    t = Trainer(cfg, fsmod.load(sets["a"]), fsmod.load(sets["b"]), run)
    t0 = time.process_time()
    t.train(tensorboard=False)
    cpu = time.process_time() - t0
    own = t.validate()
    for side in ("a", "b"):
        fs = fsmod.load(ref[side])
        _, val_idx = split_train_val(fs, cfg.val_fraction, seed=cfg.seed)
        t.val_sets[side] = FaceDataset(fs, val_idx, cfg.model.resolution, None, cfg.seed)
    on_png = t.validate()
    return {"val_own": own, "val_png": on_png, "train_cpu_s": cpu}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Examples:") :],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--clip-a", type=Path, default=DATA / "liveportrait_d6.mp4")
    p.add_argument("--clip-b", type=Path, default=DATA / "liveportrait_d9.mp4")
    p.add_argument("--frames", type=int, default=300, help="frames extracted per clip (300)")
    p.add_argument("--steps", type=int, default=300, help="training steps per run (300)")
    p.add_argument("--quality", default="95", help="comma list of JPEG qualities (95)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for c in (args.clip_a, args.clip_b):
        if not c.is_file():
            sys.exit(f"{c}: clip not found (pass --clip-a/--clip-b)")
    from faceswap.config import ExtractConfig
    from faceswap.extract.pipeline import extract

    qualities = [int(q) for q in args.quality.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_fmt_") as tmp:
        work = Path(tmp)
        png = {}
        for side, clip in (("a", args.clip_a), ("b", args.clip_b)):
            png[side] = work / f"png_{side}"
            print(f"  extracting {clip.name} ...", file=sys.stderr, flush=True)
            extract([str(clip)], png[side],
                    ExtractConfig(end_frame=args.frames, embed=False, image_format="png"))  # fmt: skip
        kib = np.mean([f.stat().st_size / 1024 for f in (png["a"] / "faces").iterdir()])
        print("  training on png ...", file=sys.stderr, flush=True)
        r = train_and_validate(png, png, work / "run_png", args.steps)
        rows.append({"format": "png", "psnr": None, "psnr_64": None, "kib": float(kib), **r})
        for q in qualities:
            jpg = {}
            stats = []
            for side in ("a", "b"):
                jpg[side] = work / f"jpg{q}_{side}"
                stats.append(jpeg_copy(png[side], jpg[side], q))
            print(f"  training on jpg q{q} ...", file=sys.stderr, flush=True)
            r = train_and_validate(jpg, png, work / f"run_jpg{q}", args.steps)
            rows.append({"format": f"jpg q{q}", "psnr": float(np.mean([s[0] for s in stats])),
                         "psnr_64": float(np.mean([s[1] for s in stats])),
                         "kib": float(np.mean([s[2] for s in stats])), **r})  # fmt: skip
    print(f"{args.frames} frames per clip, {args.steps} steps of cpu-small at lightweight 64 px, "
          "seed 1; validation on the PNG faces")  # fmt: skip
    print(f"{'format':<9} {'KiB/face':>8} {'PSNR':>6} {'PSNR@64':>7} {'val A':>8} {'val B':>8} "
          f"{'vs png':>7}")  # fmt: skip
    base = sum(rows[0]["val_png"].values())
    for r in rows:
        v = r["val_png"]
        rel = 100 * (sum(v.values()) - base) / base
        print(f"{r['format']:<9} {r['kib']:>8.1f} "
              f"{'-' if r['psnr'] is None else format(r['psnr'], '.1f'):>6} "
              f"{'-' if r['psnr_64'] is None else format(r['psnr_64'], '.1f'):>7} "
              f"{v['a']:>8.4f} {v['b']:>8.4f} {rel:>+6.1f}%")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
