"""The label editor's side of the server: a face's polygons, the mask it falls back on while it
has none, and saving through faceswap.masks.labels (the code of `faceswap mask label import`):
validated, under the face set's writer lock, an atomic write of the versioned labels.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceswap import faceset as fsmod
from faceswap.data.stored_masks import load_mask
from faceswap.extract.masks import landmark_mask
from faceswap.masks import labels as lb

# what training uses for an unlabelled face without a stored mask (MaskTrainConfig.hull)
HULL = "extended"
SHADE = (40, 16, 0)  # BGR of the dimmed area outside the fallback mask


def labelled(fs: fsmod.FaceSet) -> tuple[set[str], str | None]:
    """The names of the labelled faces, and the error of a labels.json that does not load (the
    face grid still shows; saving a label says what is wrong)."""
    try:
        return set(lb.load_labels(fs)), None
    except lb.LabelError as exc:
        return set(), str(exc)


def fallback(fs: fsmod.FaceSet, face: fsmod.Face) -> tuple[np.ndarray, str]:
    """(size, size) uint8 mask of an unlabelled face as training takes it: its stored mask
    (`faceswap mask apply`), else the extended landmark hull; and which one it is."""
    stored = load_mask(fs, face)
    if stored is not None:
        return stored, "stored mask"
    hull = landmark_mask(face.aligned_landmarks(), fs.size, HULL)
    return (hull >= 0.5).astype(np.uint8) * 255, "landmark hull"


def view(fs: fsmod.FaceSet, face: fsmod.Face) -> dict[str, Any]:
    """What the editor opens a face with: its label (None when it has none), the name of the
    fallback mask and that mask traced into polygons (the editor's "Start from mask")."""
    lab = lb.load_labels(fs).get(face.name)
    mask, kind = fallback(fs, face)
    # a coarser trace than import's: fewer points to drag, still within ~1 px at 128 px
    traced = lb.from_mask(mask, fs.size, tolerance=max(0.75, fs.size / 128))
    return {"name": face.name, "size": fs.size, "label": None if lab is None else lab.to_json(),
            "fallback": kind, "traced": traced.to_json()}  # fmt: skip


def overlay_png(fs: fsmod.FaceSet, face: fsmod.Face) -> bytes:
    """The fallback mask as a PNG to lay over the face: transparent on the face, shaded off it."""
    mask, _ = fallback(fs, face)
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[..., :3] = SHADE
    rgba[..., 3] = ((255 - mask.astype(np.uint16)) * 160 // 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", rgba)
    if not ok:
        raise lb.LabelError(f"{fs.root}: cannot encode the mask of {face.name}")
    return buf.tobytes()


def save(root: Path, size: int, name: str, body: Any, where: str) -> dict[str, Any]:
    """Validate one face's polygons (in pixels of the set's `size` crop) and merge them into
    labels.json; LabelError naming `where`, the kind and the polygon, nothing written."""
    lab = lb.parse_face(body, size, where)
    merged, stale = lb.update(root, {name: lab})
    return {"name": name, "labelled": len(merged), "masks_removed": stale}


def remove(root: Path, name: str) -> dict[str, Any]:
    merged, stale = lb.update(root, {}, remove=[name])
    return {"name": name, "labelled": len(merged), "masks_removed": stale}
