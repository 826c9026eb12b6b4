"""The face browser's side of the server: sorted listings, cached thumbnails, reject/restore
and the auto-filter's proposals, all through faceswap.curate (the code of `faceswap faceset`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceswap import curate
from faceswap import faceset as fsmod
from faceswap.errors import BadInput

THUMB = 96  # px: a grid cell; small JPEGs keep thousands of faces quick to scroll through


class FaceSets:
    """Face sets loaded once and reloaded when their index changes on disk (an extract or a
    curation writes it), so a listing or a thumbnail does not parse the index every time."""

    def __init__(self, thumbs: Path) -> None:
        self.thumbs = thumbs
        self.cache: dict[Path, tuple[tuple[int, int], fsmod.FaceSet]] = {}
        self.lock = threading.Lock()

    def load(self, root: Path) -> fsmod.FaceSet:
        try:
            st = (root / fsmod.INDEX).stat()
        except OSError:
            raise fsmod.FaceSetError(f"{root}: no face set here yet (extract it first)") from None
        stamp = (st.st_mtime_ns, st.st_size)
        with self.lock:
            hit = self.cache.get(root)
            if hit and hit[0] == stamp:
                return hit[1]
        fs = fsmod.load(root)
        with self.lock:
            self.cache[root] = (stamp, fs)
        return fs

    def by_name(self, root: Path) -> dict[str, fsmod.Face]:
        """Name -> face (kept or rejected) of the loaded set, built once per load."""
        fs = self.load(root)
        names = fs.__dict__.get("_ui_names")
        if names is None:
            names = {f.name: f for f in (*fs.faces, *fs.rejected)}
            fs.__dict__["_ui_names"] = names
        return names

    def listing(self, root: Path, key: str, reverse: bool, view: str, labelled: set[str],
                only_labelled: bool = False) -> dict[str, Any]:  # fmt: skip
        """One view of the set, sorted; faces in `labelled` are marked (and alone listed when
        `only_labelled`)."""
        fs = self.load(root)
        if view == "rejected":
            faces = [{"name": f.name, "value": None, "reason": f.reason} for f in fs.rejected]
        elif view == "faces":
            faces = [{"name": f.name, "value": None if np.isnan(v) else round(v, 4)}
                     for f, v in curate.sort_faces(fs, key, reverse=reverse)]  # fmt: skip
        else:
            raise BadInput(f"unknown view {view!r}; choose faces or rejected")
        for f in faces:
            if f["name"] in labelled:
                f["labelled"] = True
        if only_labelled:
            faces = [f for f in faces if "labelled" in f]
        return {"faces": faces, "count": len(fs.faces), "rejected": len(fs.rejected),
                "labelled": len(labelled), "sort_keys": list(curate.SORT_KEYS),
                "version": fs.updated}  # fmt: skip

    def thumbnail(self, root: Path, name: str) -> Path:
        """A cached JPEG of the named face (kept or rejected); KeyError for an unknown name."""
        face = self.by_name(root)[name]  # KeyError for a name not in the index
        fs = self.load(root)
        src = fs.path_of(face)
        st = src.stat()
        # the face's name and file state: a face moved to rejected/ keeps its thumbnail valid
        out = self.thumbs / root.name / f"{name}-{st.st_size}.jpg"
        if not out.is_file():
            img = fs.load_image(face)
            small = cv2.resize(img, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if not ok:
                raise BadInput(f"{src}: cannot make a thumbnail")
            out.parent.mkdir(parents=True, exist_ok=True)
            fsmod.atomic_write_bytes(out, buf.tobytes())
        return out

    def reject(self, root: Path, names: list[str], reason: str) -> int:
        self.load(root)  # a set that does not exist yet: say so (the lock would create it)
        with fsmod.writer_lock(root):  # the lock `faceswap faceset` and extract take
            fs = fsmod.load(root)
            faces = curate.select(fs, names)
            return curate.move_to_rejected(fs, [(f, reason) for f in faces])

    def reject_flagged(self, root: Path, flagged: list[dict[str, str]]) -> int:
        """Apply proposals: each face with its own reason."""
        self.load(root)
        with fsmod.writer_lock(root):
            fs = fsmod.load(root)
            faces = curate.select(fs, [p["name"] for p in flagged])
            return curate.move_to_rejected(fs, [(f, p["reason"]) for f, p in zip(faces, flagged)])

    def restore(self, root: Path, names: list[str] | None) -> int:
        self.load(root)
        with fsmod.writer_lock(root):
            return curate.restore(fsmod.load(root), names)

    def proposals(self, root: Path, strictness: float, dedupe: bool) -> list[dict[str, str]]:
        """What `faceswap faceset filter --auto --dry-run` (and `dedupe --dry-run`) would move."""
        fs = self.load(root)
        flagged = [(f, r) for f, r in curate.find_outliers(fs, curate.auto_rule(fs, strictness))]
        if dedupe:
            seen = {f.name for f, _ in flagged}
            flagged += [(dup, f"near-duplicate (of {kept.name})")
                        for dup, kept in curate.find_duplicates(fs) if dup.name not in seen]  # fmt: skip
        return [{"name": f.name, "reason": r} for f, r in flagged]
