"""Occlusion benchmark of the face masks: hull, learned (a swap run's decoder), seg (a mask
model) and seg+hull.

1. IoU on real faces (face sets extracted from ../shared/data clips), clean and with a pasted
   occluder of a HELD-OUT shape and texture (never seen in mask training). The reference
   "visible face" is the extended landmark hull (convert's default hull), less the occluder:
   on clean faces it says whether a mask eats into the face or spills out of it.
2. Speed of the mask model at 256 px, batch 16, on this machine's load (faces per second and
   per CPU-second).
3. Convert on a real clip with a synthetic occluder moving across the face (a held-out
   microphone shape): mean absolute change of the occluder's pixels inside the face, each mask
   mode against the occluded input. The occluder should stay as it was.

    python scripts/bench_masks.py --model masks/m1 --facesets faces/d9 faces/f5 \\
        --run runs/d9 --clip clips/d9.mp4 --clip-faceset faces/d9 --json bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from faceswap import faceset as fsmod
from faceswap.extract.masks import landmark_mask
from faceswap.masks.labels import iou
from faceswap.masks.model import load_model
from faceswap.masks.occluders import (
    HELD_OUT_SHAPES,
    HELD_OUT_TEXTURES,
    SHAPES,
    paste,
    shape_mask,
    skin_patch,
    texture,
)


def _hull(face, size: int, scale: float) -> np.ndarray:
    lm = (face.aligned_landmarks() + 0.5) * scale - 0.5
    return landmark_mask(lm, size, "extended") >= 0.5


def iou_bench(args, seg, swap) -> dict:
    rows: dict[str, dict[str, list[float]]] = {}
    per_shape: dict[str, dict[str, list[float]]] = {}
    recall: dict[str, list[float]] = {}
    for path in args.facesets:
        fs = fsmod.load(path)
        rng = np.random.default_rng(args.seed)
        idx = np.sort(rng.choice(len(fs.faces), min(args.faces, len(fs.faces)), replace=False))
        faces = [fs.faces[i] for i in idx]
        imgs = np.stack([fs.load_image(f) for f in faces])
        size = fs.size
        hulls = np.stack([_hull(f, size, 1.0) for f in faces])
        skins = [skin_patch(im, f.aligned_landmarks()) for im, f in zip(imgs, faces)]
        occ, gts, shapes, covers = [], [], [], []
        for k, im in enumerate(imgs):
            fam = HELD_OUT_SHAPES[k % len(HELD_OUT_SHAPES)]
            cov = shape_mask(rng, size, fam, hulls[k])
            tex = texture(rng, size, HELD_OUT_TEXTURES, skins[:k] + skins[k + 1 :])
            occ.append(paste(im, cov, tex, rng))
            gts.append(hulls[k] & (cov < 128))
            shapes.append(fam)
            covers.append(hulls[k] & (cov >= 128))
        occ = np.stack(occ)
        for case, batch, truth in (("clean", imgs, hulls), ("occluded", occ, np.stack(gts))):
            preds = {"hull": hulls}
            if seg is not None:
                s = np.concatenate(
                    [seg.predict(batch[i : i + 16]) for i in range(0, len(batch), 16)]
                )
                preds["seg"] = s >= 0.5
                preds["seg+hull"] = (s >= 0.5) & hulls
            if swap is not None:
                r = swap.resolution
                crops = np.stack(
                    [cv2.resize(b, (r, r), interpolation=cv2.INTER_AREA) for b in batch]
                )
                masks = np.concatenate(
                    [swap.swap(crops[i : i + 16])[1] for i in range(0, len(crops), 16)]
                )
                up = np.stack([cv2.resize(m, (size, size)) for m in masks])
                preds["learned"] = up >= 0.5
                preds["product"] = (up >= 0.5) & hulls
            for name, p in preds.items():
                scores = [iou(p[k].astype(np.uint8) * 255, truth[k].astype(np.uint8) * 255)
                          for k in range(len(p))]  # fmt: skip
                rows.setdefault(name, {}).setdefault(case, []).extend(scores)
                if case == "occluded":
                    for k, fam in enumerate(shapes):
                        per_shape.setdefault(name, {}).setdefault(fam, []).append(scores[k])
                    # share of the occluder's face pixels the mask leaves out
                    recall.setdefault(name, []).extend(
                        float((~p[k] & covers[k]).sum() / max(1, covers[k].sum()))
                        for k in range(len(p))
                    )
        if args.samples:
            k = 0
            tiles = [occ[k]]
            for name in ("hull", "learned", "seg", "seg+hull"):
                if name in rows:
                    m = preds_vis(name, occ[k : k + 1], seg, swap, hulls[k : k + 1])
                    tiles.append(cv2.cvtColor(m, cv2.COLOR_GRAY2BGR))
            Path(args.samples).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(Path(args.samples) / f"{Path(path).name}.png"), np.hstack(tiles))
    out = {
        name: {case: round(float(np.mean(v)), 4) for case, v in cases.items()}
        for name, cases in rows.items()
    }
    for name in out:
        out[name]["occluder_left_out"] = round(float(np.mean(recall[name])), 4)
        out[name]["occluded_by_shape"] = {
            fam: round(float(np.mean(v)), 4) for fam, v in per_shape[name].items()
        }
    return out


def preds_vis(name, batch, seg, swap, hulls) -> np.ndarray:
    if name == "hull":
        m = hulls[0]
    elif name.startswith("seg"):
        m = seg.predict(batch)[0] >= 0.5
        m = m & hulls[0] if name == "seg+hull" else m
    else:
        r = swap.resolution
        crop = cv2.resize(batch[0], (r, r), interpolation=cv2.INTER_AREA)[None]
        m = cv2.resize(swap.swap(crop)[1][0], batch.shape[1:3]) >= 0.5
    return m.astype(np.uint8) * 255


def speed_bench(seg, threads: int) -> dict:
    torch.set_num_threads(threads)
    crops = np.random.default_rng(0).integers(0, 255, (16, 256, 256, 3), dtype=np.uint8)
    seg.predict(crops)
    t, c = time.perf_counter(), time.process_time()
    n = 0
    while time.perf_counter() - t < 5.0:
        seg.predict(crops)
        n += len(crops)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"threads": threads, "faces_per_second": round(n / wall, 1),
            "faces_per_cpu_second": round(n / cpu, 1), "load_average": os.getloadavg()[0]}  # fmt: skip


def occluded_clip(args, work: Path) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    """The clip's frames with a microphone (held-out shape) sweeping across the face; returns
    the clip path, the occluded frames and, per frame, the occluder-inside-the-face mask."""
    fs = fsmod.load(args.clip_faceset)
    by_frame = {f.frame: f for f in fs.faces}
    keys = sorted(by_frame)
    start, end = args.frames
    cap = cv2.VideoCapture(str(args.clip))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    rng = np.random.default_rng(args.seed)
    tex = texture(rng, 512, ("coins",))
    frames, regions = [], []
    path = work / "occluded.mp4"
    writer = None
    for i in range(start, end):
        ok, frame = cap.read()
        if not ok:
            break
        near = by_frame[min(keys, key=lambda k: abs(k - i))]
        lm = near.landmarks_array()
        h, w = frame.shape[:2]
        hull = landmark_mask(lm, max(h, w), "extended")[:h, :w] >= 0.5
        x0, x1 = lm[:, 0].min(), lm[:, 0].max()
        t = (i - start) / max(1, end - start - 1)
        cx = x0 - 0.2 * (x1 - x0) + t * 1.4 * (x1 - x0)
        cy = lm[48:68, 1].mean()  # the mouth: where a microphone goes
        r = 0.22 * (x1 - x0)
        shape = np.zeros((h, w), np.uint8)
        cv2.circle(shape, (int(cx), int(cy)), int(r), 255, -1)
        cv2.line(shape, (int(cx), int(cy)), (int(cx + 0.3 * r), h), 255, int(r * 0.5))
        tx = cv2.resize(tex, (w, h))
        frame = paste(frame, shape, tx, rng)
        if writer is None:
            writer = cv2.VideoWriter(str(path.with_suffix(".avi")), cv2.VideoWriter_fourcc(*"FFV1"),
                                     25, (w, h))  # fmt: skip
        writer.write(frame)
        frames.append(frame)
        regions.append((shape >= 128) & hull)
    writer.release()
    # the converter wants a video it can probe: lossless FFV1 in .avi -> H.264 crf 0 .mp4
    import subprocess

    from faceswap.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(path.with_suffix(".avi")),
                    "-c:v", "libx264", "-crf", "0", "-preset", "ultrafast", str(path)],
                   check=True)  # fmt: skip
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        decoded.append(f)
    return path, decoded, regions


def convert_bench(args, work: Path) -> dict:
    from faceswap.cli import main

    clip, frames, regions = occluded_clip(args, work)
    # faces found once (on the occluded frames, as a user's extract would) for every mode
    with contextlib.redirect_stdout(sys.stderr):
        if main(["-q", "extract", str(clip), "-o", str(work / "faces"), "--size", "64",
                 "--no-embed"]) != 0:  # fmt: skip
            raise SystemExit("extract of the occluded clip failed")
    modes = ["hull", "product"] + (["seg", "seg+hull"] if args.model else [])
    out: dict[str, dict] = {}
    for mode in modes:
        dst = work / mode.replace("+", "_")
        argv = ["-q", "convert", str(clip), "-m", str(args.run), "-o", str(dst), "--mask", mode,
                "--alignments", str(work / "faces")]  # fmt: skip
        if mode.startswith("seg"):
            argv += ["--mask-model", str(args.model)]
        t = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            code = main(argv)
        if code != 0:
            raise SystemExit(f"convert --mask {mode} failed ({code})")
        pngs = sorted(dst.glob("*.png"))
        changes, inside = [], []
        for k, p in enumerate(pngs[: len(frames)]):
            o = cv2.imread(str(p)).astype(np.float32)
            d = np.abs(o - frames[k].astype(np.float32)).mean(-1)
            if regions[k].any():
                changes.append(float(d[regions[k]].mean()))
            inside.append(float(d.mean()))
        out[mode] = {"occluder_change": round(float(np.mean(changes)), 3),
                     "frame_change": round(float(np.mean(inside)), 3),
                     "frames": len(pngs), "seconds": round(time.perf_counter() - t, 1)}  # fmt: skip
    base = out["hull"]["occluder_change"]
    for mode in out:
        out[mode]["vs_hull"] = round(out[mode]["occluder_change"] / base, 3) if base else None
    if args.samples:
        k = len(frames) // 2
        row = [frames[k]] + [cv2.imread(str(sorted((work / m.replace("+", "_")).glob("*.png"))[k]))
                             for m in modes]  # fmt: skip
        cv2.imwrite(str(Path(args.samples) / "convert.png"), np.hstack(row))
    return out


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", help="mask model folder (faceswap mask train)")
    p.add_argument("--facesets", nargs="+", required=True, help="face sets of real faces")
    p.add_argument("--run", help="swap run (learned masks; needed for the convert test)")
    p.add_argument("--faces", type=int, default=60, help="faces per face set (60)")
    p.add_argument("--clip", help="clip for the convert test")
    p.add_argument("--clip-faceset", help="face set extracted from --clip (landmarks)")
    p.add_argument("--frames", default="0-48", help="frames of the clip, START-END")
    p.add_argument("--threads", type=int, default=2, help="threads of the speed test (2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", help="folder for example PNGs")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    a, _, b = args.frames.partition("-")
    args.frames = (int(a), int(b))
    torch.set_num_threads(args.threads)
    seg = load_model(args.model) if args.model else None
    swap = None
    if args.run:
        from faceswap.convert.model import load_swap_model

        swap = load_swap_model(args.run, "a2b", "cpu", "fp32")
    result: dict = {"load_average_start": os.getloadavg()[0], "held_out_shapes": HELD_OUT_SHAPES,
                    "held_out_textures": HELD_OUT_TEXTURES, "shapes": list(SHAPES)}  # fmt: skip
    result["iou"] = iou_bench(args, seg, swap)
    print(
        f"{'mask':10s} {'IoU clean':>10s} {'IoU occluded':>13s} {'occluder left out':>18s}  by shape"
    )
    for name, r in result["iou"].items():
        shapes = " ".join(f"{k} {v:.3f}" for k, v in r["occluded_by_shape"].items())
        print(
            f"{name:10s} {r['clean']:10.3f} {r['occluded']:13.3f} {r['occluder_left_out']:18.3f}  {shapes}"
        )
    if seg is not None:
        # one thread too: its CPU time is the least inflated by a busy machine (no OpenMP
        # thread spinning while waiting for a core)
        result["speed"] = [speed_bench(seg, t) for t in sorted({1, args.threads})]
        for s in result["speed"]:
            print(f"seg speed ({s['threads']} threads, load {s['load_average']:.1f}): "
                  f"{s['faces_per_second']} faces/s, {s['faces_per_cpu_second']} faces per CPU-s")  # fmt: skip
        torch.set_num_threads(args.threads)
    if args.clip and args.run and args.clip_faceset:
        with tempfile.TemporaryDirectory(prefix="bench_masks_") as tmp:
            result["convert"] = convert_bench(args, Path(tmp))
        print(f"{'convert':10s} {'occluder change':>16s} {'vs hull':>8s}")
        for mode, r in result["convert"].items():
            print(f"{mode:10s} {r['occluder_change']:16.2f} {r['vs_hull']:8.3f}")
    result["load_average_end"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
