"""`mask apply`: a mask per face of a face set, stored beside the faces (masks/<name>.png).

Crash-safe and resumable like extract: each mask file is written atomically, a manifest
(masks/masks.json) names the model that made them and is written before any of them, and a
re-run skips the faces that already have a mask from the same model. A different model's masks
are only replaced with `overwrite` (then they are deleted first, so the folder never mixes
two models). Faces with a user label (labels.json) get their label, not a prediction: a label
is the truth the model only approximates.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceswap import faceset as fsmod
from faceswap.data.stored_masks import MASKS_DIR, mask_path, write_mask
from faceswap.errors import BadInput
from faceswap.masks.labels import load_labels
from faceswap.masks.model import SegModel

log = logging.getLogger(__name__)

MANIFEST = "masks.json"
FORMAT = "faceswap-masks"
VERSION = 1

# (faces done, faces in all)
Progress = Callable[[int, int], None]


@dataclass
class ApplySummary:
    faceset: str
    model: str
    faces: int
    predicted: int
    from_labels: int
    skipped: int
    seconds: float
    faces_per_second: float
    mean_coverage: float  # mean share of the crop that the stored masks call face


def _manifest(root: Path) -> dict | None:
    path = root / MASKS_DIR / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise BadInput(f"{path}: unreadable; delete the masks/ folder and apply again") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadInput(f"{path}: not a faceswap mask manifest")
    return data


def _clear(folder: Path) -> None:
    for p in folder.iterdir():
        if p.suffix == ".png" or (p.name.startswith(".") and p.name.endswith(".tmp")):
            with contextlib.suppress(OSError):
                p.unlink()


def apply_masks(faceset: str | Path, model: SegModel, *, overwrite: bool = False,
                batch_size: int = 16, progress: Progress | None = None) -> ApplySummary:  # fmt: skip
    """Store a mask for every face of the set (see the module docstring)."""
    t0 = time.perf_counter()
    root = Path(faceset)
    fsmod.load(root)  # a clear error before taking the lock of a folder that is no face set
    with fsmod.writer_lock(root):
        fs = fsmod.load(root)
        if fs.centering != model.centering:
            raise BadInput(f"{root}: face set centering {fs.centering!r} differs from the mask "
                           f"model's {model.centering!r} ({model.path}); train one on "
                           f"{fs.centering}-centred faces")  # fmt: skip
        labels = load_labels(fs)
        folder = root / MASKS_DIR
        folder.mkdir(exist_ok=True)
        old = _manifest(root)
        if old is not None and (overwrite or old.get("fingerprint") != model.fingerprint):
            if not overwrite:
                raise BadInput(f"{folder}: masks were made by another mask model "
                               f"({old.get('model')}); pass --overwrite to replace them")  # fmt: skip
            old = None
        if old is None:
            _clear(folder)  # stale temps and another model's masks: never mixed with ours
            fsmod.atomic_write_text(folder / MANIFEST, json.dumps({
                "format": FORMAT, "version": VERSION, "model": str(model.path.resolve()),
                "fingerprint": model.fingerprint, "size": fs.size}, indent=2))  # fmt: skip
        else:
            _clear_temps(folder)
        todo = [f for f in fs.faces if not mask_path(root, f).exists()]
        skipped = len(fs.faces) - len(todo)
        predicted = from_labels = 0
        coverage: list[float] = []
        done = skipped
        for i in range(0, len(todo), batch_size):
            part = todo[i : i + batch_size]
            need = [f for f in part if f.name not in labels]
            preds = model.predict(np.stack([fs.load_image(f) for f in need])) if need else []
            by_name = {f.name: p for f, p in zip(need, preds)}
            for f in part:
                lab = labels.get(f.name)
                m = lab.render(fs.size, fs.size) if lab is not None else by_name[f.name]
                write_mask(root, f, m)
                coverage.append(float((np.asarray(m) >= (128 if lab else 0.5)).mean()))
            predicted += len(need)
            from_labels += len(part) - len(need)
            done += len(part)
            if progress:
                progress(done, len(fs.faces))
    seconds = time.perf_counter() - t0
    return ApplySummary(
        faceset=str(root), model=str(model.path), faces=len(fs.faces), predicted=predicted,
        from_labels=from_labels, skipped=skipped, seconds=round(seconds, 2),
        faces_per_second=round((predicted + from_labels) / seconds, 1) if seconds else 0.0,
        mean_coverage=round(float(np.mean(coverage)), 4) if coverage else 0.0,
    )  # fmt: skip


def _clear_temps(folder: Path) -> None:
    for p in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()
