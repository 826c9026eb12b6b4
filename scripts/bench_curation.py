"""Measure `faceset dedupe` and `filter --auto` on real face sets with planted outliers.

    python scripts/bench_curation.py faces/d9 faces/d6 --other faces/face2 faces/face4 [--json F]

For each set: how many faces dedupe would move, how many real faces filter --auto flags, and
the recall of outliers planted on purpose:
  blurred      a real face's crop blurred (Gaussian, sigma 2-4 px at 256 px), blur re-measured
  misaligned   the real frame re-landmarked from a box shifted 25-50% of its width (what a
               drifting detector or a neighbour's box does), jitter measured like extract does
  other person faces of another clip's person (the --other set paired with it), embeddings kept
Blurred and misaligned faces replace the real face of their frame (as they would in a real
extraction); other-person faces are added. Nothing is written: the planted set lives in memory.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from faceswap import curate
from faceswap import faceset as fsmod
from faceswap.extract import alignment
from faceswap.extract.quality import blur_score


def read_frames(path: str, wanted: set[int]) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(path)
    out, k = {}, 0
    try:
        while len(out) < len(wanted):
            ok, frame = cap.read()
            if not ok:
                break
            if k in wanted:
                out[k] = frame
            k += 1
    finally:
        cap.release()
    return out


def _put(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def plant(
    fs: fsmod.FaceSet, other: fsmod.FaceSet | None, root: Path, n: int = 20, seed: int = 0
) -> tuple[fsmod.FaceSet, dict[str, set[str]]]:
    """A copy of `fs` in `root` (images hard-linked; the index stays in memory) with n
    blurred, n misaligned and n other-person faces. Returns the set and the names of the
    planted faces by kind."""
    from faceswap.config import ExtractConfig
    from faceswap.extract.finder import Backends, FaceFinder

    rng = np.random.default_rng(seed)
    out = copy.copy(fs)
    out.root = Path(root)
    out.faces = [copy.copy(f) for f in fs.faces]
    for f in out.faces:
        _put(fs.path_of(f), out.path_of(f))
    # never plant at the first or last face of a track: the jump test needs both neighbours
    # in a real set too, and a real set has them
    pick = rng.choice(np.arange(1, len(out.faces) - 1), 2 * n, replace=False)
    planted: dict[str, set[str]] = {"blurred": set(), "misaligned": set(), "other person": set()}
    for i in pick[:n]:
        f = out.faces[i]
        img = cv2.GaussianBlur(fs.load_image(f), (0, 0), rng.uniform(2.0, 4.0))
        f.blur = blur_score(img, f.aligned_landmarks())
        f.file = f.file.replace(".", "_blurred.", 1)
        cv2.imwrite(str(out.path_of(f)), img)
        planted["blurred"].add(f.name)
    finder = FaceFinder(ExtractConfig(), Backends("dlib-hog", "dlib", "cpu"))
    by_source: dict[str, list[int]] = {}
    for i in pick[n:]:
        by_source.setdefault(out.faces[i].source, []).append(int(i))
    for key, idxs in by_source.items():
        frames = read_frames(fs.sources[key].path, {out.faces[i].frame for i in idxs})
        for i in idxs:
            f = out.faces[i]
            rgb = np.ascontiguousarray(frames[f.frame][:, :, ::-1])
            box = np.asarray(f.box)
            ang, shift = rng.uniform(0, 2 * np.pi), rng.uniform(0.25, 0.5)
            moved = box + np.array([np.cos(ang), np.sin(ang)] * 2) * shift * (box[2] - box[0])
            lms, jitter = finder._landmarks(rgb, moved)
            m = alignment.crop_matrix(lms, fs.size, fs.centering)
            f.landmarks, f.matrix, f.jitter = lms.tolist(), m.tolist(), jitter
            f.residual = alignment.alignment_residual(lms, m, fs.size, fs.centering)
            crop = cv2.warpAffine(frames[f.frame], m, (fs.size, fs.size))
            f.blur = blur_score(crop, alignment.transform_points(m, lms))
            f.file = f.file.replace(".", "_misaligned.", 1)
            cv2.imwrite(str(out.path_of(f)), crop)
            planted["misaligned"].add(f.name)
    if other is not None:
        picks = rng.choice(len(other.faces), min(n, len(other.faces)), replace=False)
        for i in picks:
            f = copy.copy(other.faces[i])
            src = other.path_of(f)
            f.source = "other:" + f.source  # its own source: no frame neighbours in this set
            f.file = f.file.replace(".", "_other.", 1)
            _put(src, out.path_of(f))
            out.faces.append(f)
            planted["other person"].add(f.name)
    return out, planted


def measure(fs: fsmod.FaceSet, other: fsmod.FaceSet | None, n: int = 20) -> dict:
    dups = curate.find_duplicates(fs)
    real_flagged = curate.find_outliers(fs, curate.auto_rule(fs))
    with tempfile.TemporaryDirectory() as tmp:
        planted_fs, planted = plant(fs, other, Path(tmp), n)
        flagged = {
            f.name: r for f, r in curate.find_outliers(planted_fs, curate.auto_rule(planted_fs))
        }
    all_planted = set().union(*planted.values())
    real_names = {f.name for f in planted_fs.faces} - all_planted
    recall = {k: sum(name in flagged for name in v) / max(len(v), 1) for k, v in planted.items()}
    return {
        "set": str(fs.root),
        "faces": len(fs.faces),
        "dedupe_moves": len(dups),
        "dedupe_share": len(dups) / max(len(fs.faces), 1),
        "filter_flags_real": len(real_flagged),
        "filter_reasons_real": sorted({curate._reason_kind(r) for _, r in real_flagged}),
        "planted": {k: len(v) for k, v in planted.items()},
        "recall": recall,
        "recall_all": sum(name in flagged for name in all_planted) / max(len(all_planted), 1),
        "real_flagged_in_planted_set": sum(name in flagged for name in real_names),
        "real_flagged_share": sum(name in flagged for name in real_names) / max(len(real_names), 1),
        "rare": curate.rare_faces(fs),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="+", help="real face sets (extracted from videos)")
    ap.add_argument("--other", nargs="*", default=[], help="another person's set per set")
    ap.add_argument("--planted", type=int, default=20, help="outliers of each kind (20)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    rows = []
    for k, path in enumerate(args.sets):
        other = fsmod.load(args.other[k]) if k < len(args.other) else None
        rows.append(measure(fsmod.load(path), other, args.planted))
    print(f"{'set':28s} {'faces':>5s} {'dedupe':>12s} {'real flagged':>12s} "
          f"{'blur':>5s} {'misal':>5s} {'other':>5s} {'real flagged (planted)':>22s} {'rare':>5s}")  # fmt: skip
    for r in rows:
        rc = r["recall"]
        print(f"{Path(r['set']).name:28s} {r['faces']:5d} {r['dedupe_moves']:5d} "
              f"({r['dedupe_share']:5.1%}) {r['filter_flags_real']:12d} "
              f"{rc['blurred']:5.0%} {rc['misaligned']:5.0%} {rc['other person']:5.0%} "
              f"{r['real_flagged_in_planted_set']:8d} ({r['real_flagged_share']:5.1%})       "
              f"{r['rare']:5d}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
