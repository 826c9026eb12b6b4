"""User labels: polygons that say which pixels of an aligned face are visible face.

    FACESET/labels.json
    {"format": "faceswap-labels", "version": 1, "size": 256,
     "faces": {"<face name>": {"include": [[[x, y], ...], ...], "exclude": [[[x, y], ...]]}}}

A face name is the face file's name without extension (as `faceset remove` takes it); it must
name a face of the set. Points are aligned-crop pixels of a `size` x `size` crop (0..size, the
crop's outer edge included), so a label file made at 256 px still fits a 512 px copy. The
labelled mask is the union of the `include` polygons less the union of the `exclude` ones
(draw the face, then the hand over it). Loading validates everything and never trusts a name
as a path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceswap import faceset
from faceswap.data.stored_masks import mask_path
from faceswap.errors import BadInput
from faceswap.faceset import FaceSet, atomic_write_text

FORMAT = "faceswap-labels"
VERSION = 1
LABELS = "labels.json"
MAX_POINTS = 4096  # per polygon
MAX_POLYGONS = 64  # per face and kind
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


class LabelError(BadInput):
    """A label file that is malformed or does not fit its face set."""


@dataclass
class Label:
    """The polygons of one face, in pixels of a `size` crop."""

    include: list[np.ndarray] = field(default_factory=list)  # (K, 2) float64 each
    exclude: list[np.ndarray] = field(default_factory=list)

    def render(self, size: int, src_size: int) -> np.ndarray:
        """(size, size) uint8 mask (255 = face); points scaled from a src_size crop."""
        mask = np.zeros((size, size), np.uint8)
        scale = size / src_size
        for polys, value in ((self.include, 255), (self.exclude, 0)):
            if polys:
                pts = [np.round(p * scale * 16).astype(np.int32) for p in polys]
                cv2.fillPoly(mask, pts, value, lineType=cv2.LINE_8, shift=4)
        return mask

    def to_json(self) -> dict[str, Any]:
        return {k: [np.round(p, 2).tolist() for p in getattr(self, k)]
                for k in ("include", "exclude")}  # fmt: skip


def check_name(name: Any, where: str) -> str:
    """A face name, never a path: no separators, no '..', no leading dot."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise LabelError(f"{where}: {str(name)[:60]!r} is not a face name (letters, digits, "
                         "'._+-'; no paths)")  # fmt: skip
    return name


def _polygon(raw: Any, size: int, where: str) -> np.ndarray:
    if not isinstance(raw, list) or not 3 <= len(raw) <= MAX_POINTS:
        raise LabelError(f"{where}: a polygon needs 3 to {MAX_POINTS} points")
    if not all(isinstance(p, list) and len(p) == 2 for p in raw):
        raise LabelError(f"{where}: each point must be [x, y]")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for p in raw for v in p):
        raise LabelError(f"{where}: point coordinates must be numbers")
    pts = np.asarray(raw, dtype=np.float64)
    if not np.isfinite(pts).all():
        raise LabelError(f"{where}: point coordinates must be finite")
    bad = np.flatnonzero(((pts < 0) | (pts > size)).any(axis=1))
    if bad.size:
        x, y = pts[bad[0]]
        raise LabelError(f"{where}: point {bad[0]} ({x:g}, {y:g}) is outside the "
                         f"{size}x{size} crop")  # fmt: skip
    if abs(cv2.contourArea(pts.astype(np.float32))) < 1.0:
        raise LabelError(f"{where}: polygon has no area (points in a line or repeated)")
    return pts


def parse(data: Any, source: str) -> tuple[int, dict[str, Label]]:
    """(size, {face name: Label}) from a label document; LabelError naming `source`."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LabelError(f"{source}: not a faceswap label file (format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise LabelError(f"{source}: label format version {data.get('version')!r} is not "
                         f"supported (this faceswap reads {VERSION})")  # fmt: skip
    size = data.get("size")
    if not (isinstance(size, int) and not isinstance(size, bool) and 16 <= size <= 4096):
        raise LabelError(f"{source}: size must be an integer from 16 to 4096")
    faces = data.get("faces")
    if not isinstance(faces, dict):
        raise LabelError(f"{source}: faces must be an object of face name -> polygons")
    unknown = set(data) - {"format", "version", "size", "faces", "tool", "updated"}
    if unknown:
        raise LabelError(f"{source}: unknown field {sorted(unknown)[0]!r}")
    out: dict[str, Label] = {}
    for name, entry in faces.items():
        check_name(name, source)
        out[name] = parse_face(entry, size, f"{source}: face {name}")
    return size, out


def parse_face(entry: Any, size: int, where: str) -> Label:
    """One face's {"include": [...], "exclude": [...]} in a `size` crop; LabelError naming
    `where`, the kind and the polygon."""
    if not isinstance(entry, dict) or set(entry) - {"include", "exclude"}:
        raise LabelError(f"{where}: must be {{'include': [...], 'exclude': [...]}}")
    lab = Label()
    for kind in ("include", "exclude"):
        polys = entry.get(kind, [])
        if not isinstance(polys, list) or len(polys) > MAX_POLYGONS:
            raise LabelError(f"{where}: {kind} must be a list of up to {MAX_POLYGONS} "
                             "polygons")  # fmt: skip
        getattr(lab, kind).extend(
            _polygon(p, size, f"{where} {kind}[{i}]") for i, p in enumerate(polys)
        )
    if not lab.include:
        raise LabelError(f"{where}: needs at least one include polygon (the face)")
    return lab


def read_file(path: str | Path) -> tuple[int, dict[str, Label]]:
    path = Path(path)
    if path.is_file() and path.stat().st_size > 256 * 2**20:
        raise LabelError(f"{path}: label file is too large")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabelError(f"{path}: label file does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise LabelError(f"{path}: not readable JSON") from None
    return parse(data, str(path))


def document(size: int, labels: dict[str, Label]) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "size": size,
            "faces": {n: labels[n].to_json() for n in sorted(labels)}}  # fmt: skip


def check_faces(fs: FaceSet, labels: dict[str, Label], source: str) -> None:
    """Every labelled name must be a face (or rejected face) of the set."""
    names = {f.name for f in fs.faces + fs.rejected}
    for name in labels:
        if name not in names:
            raise LabelError(f"{source}: face {name!r} is not in the face set {fs.root}")


def load_labels(fs: FaceSet) -> dict[str, Label]:
    """The set's labels scaled to its size ({} when it has no labels.json)."""
    path = fs.root / LABELS
    if not path.exists():
        return {}
    size, labels = read_file(path)
    check_faces(fs, labels, str(path))
    if size != fs.size:
        k = fs.size / size
        labels = {n: Label([p * k for p in lab.include], [p * k for p in lab.exclude])
                  for n, lab in labels.items()}  # fmt: skip
    return labels


def save_labels(fs: FaceSet, labels: dict[str, Label]) -> None:
    """Atomically replace FACESET/labels.json (call under faceset.writer_lock)."""
    atomic_write_text(fs.root / LABELS, json.dumps(document(fs.size, labels)))


def update(root: str | Path, new: dict[str, Label], *, remove: Iterable[str] = (),
           replace: bool = False) -> tuple[dict[str, Label], int]:  # fmt: skip
    """Merge `new` (polygons at the set's size) into the set's labels, less the `remove`d names
    (all others when `replace`), under the set's writer lock. Stored masks of the faces it
    changes are deleted: the next `mask apply` redoes them from the labels.
    Returns (the set's labels now, how many stored masks were deleted)."""
    changed = set(new) | set(remove)
    with faceset.writer_lock(root):
        fs = faceset.load(root)  # the set as it is now, under the lock
        check_faces(fs, new, str(fs.root))
        merged = merge({} if replace else load_labels(fs), new, replace)
        for name in remove:
            merged.pop(name, None)
        save_labels(fs, merged)
        stale = 0
        for face in fs.faces + fs.rejected:
            if face.name in changed and mask_path(fs.root, face).exists():
                mask_path(fs.root, face).unlink()
                stale += 1
    return merged, stale


def from_mask(mask: np.ndarray, size: int, tolerance: float = 0.75) -> Label:
    """Polygons tracing a painted mask (white = face): outlines are included, holes (a hand
    inside the face outline) excluded. Tolerance in pixels of the mask."""
    binary = (np.asarray(mask) >= 128).astype(np.uint8)
    outer, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(binary)
    cv2.drawContours(filled, outer, -1, 1, -1)
    # holes traced on their own pixels (tracing the face around them would cut a ring of face)
    holes, _ = cv2.findContours(filled - binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    scale = size / binary.shape[0]
    lab = Label()
    for contours, polys in ((outer, lab.include), (holes, lab.exclude)):
        for c in contours:
            c = cv2.approxPolyDP(c, tolerance, True)[:, 0, :].astype(np.float64)
            if len(c) < 3 or abs(cv2.contourArea(c.astype(np.float32))) < 4.0:
                continue
            # contour points are the centres of edge pixels, as render's fillPoly takes them
            polys.append(np.clip((c + 0.5) * scale - 0.5, 0, size))
    lab.include, lab.exclude = lab.include[:MAX_POLYGONS], lab.exclude[:MAX_POLYGONS]
    return lab


def merge(old: dict[str, Label], new: dict[str, Label], replace: bool) -> dict[str, Label]:
    return dict(new) if replace else {**old, **new}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks thresholded at half their range."""
    ta = a >= (128 if a.dtype == np.uint8 else 0.5)
    tb = b >= (128 if b.dtype == np.uint8 else 0.5)
    union = np.logical_or(ta, tb).sum()
    return float(np.logical_and(ta, tb).sum() / union) if union else 1.0


__all__ = [
    "Label",
    "LabelError",
    "load_labels",
    "save_labels",
    "read_file",
    "parse",
    "parse_face",
    "update",
    "iou",
    "from_mask",
    "document",
    "check_faces",
    "check_name",
    "merge",
]
