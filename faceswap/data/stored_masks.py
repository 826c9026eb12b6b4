"""Per-face masks stored beside the faces: `FACESET/masks/<face name>.png`.

Written by `faceswap mask apply` (the faceswap.masks package); read here so that training can
use them without importing that package (the library never imports the parts built on it).
One 8-bit grey PNG per face at the face set's size, 255 = visible face; files are written
atomically, so a mask is either absent or complete. The index (faceset.json) does not list
them: a missing file just means "no stored mask, use the landmark hull".
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from faceswap.faceset import Face, FaceSet, FaceSetError, atomic_write_bytes
from faceswap.media import image_header_size

MASKS_DIR = "masks"

log = logging.getLogger(__name__)


def mask_path(root: str | Path, face: Face) -> Path:
    return Path(root) / MASKS_DIR / f"{face.name}.png"


def load_mask(fs: FaceSet, face: Face) -> np.ndarray | None:
    """The stored (size, size) uint8 mask of `face`, or None when it has none."""
    path = mask_path(fs.root_of(face), face)  # a pool's face: its member's folder
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FaceSetError(f"{path}: stored mask is unreadable ({exc.strerror})") from None
    dims = image_header_size(data)
    if dims is not None and dims != (fs.size, fs.size):
        raise FaceSetError(f"{path}: stored mask is {dims[0]}x{dims[1]}, the face set says "
                           f"{fs.size}x{fs.size}; redo it with faceswap mask apply")  # fmt: skip
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if img is None or img.shape != (fs.size, fs.size):
        raise FaceSetError(f"{path}: stored mask is corrupt; redo it with faceswap mask apply")
    return img


def write_mask(root: str | Path, face: Face, mask: np.ndarray) -> Path:
    """Store a (size, size) uint8 mask (or float in [0, 1]) for `face`, atomically."""
    m = np.asarray(mask)
    if m.dtype != np.uint8:
        m = np.clip(np.rint(m.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    path = mask_path(root, face)
    path.parent.mkdir(exist_ok=True)
    ok, buf = cv2.imencode(".png", m, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())
    return path


def count_masks(fs: FaceSet) -> int:
    """How many of the set's faces have a stored mask."""
    names: dict[Path, set[str]] = {}  # per folder: one per member of a pool
    n = 0
    for f in fs.faces:
        root = Path(fs.root_of(f))
        if root not in names:
            folder = root / MASKS_DIR
            names[root] = {p.stem for p in folder.glob("*.png")} if folder.is_dir() else set()
        n += f.name in names[root]
    return n
