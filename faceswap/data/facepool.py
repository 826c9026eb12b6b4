"""Several face sets pooled into one side of a training run (a base model over many identities).

A `FacePool` is a read-only union that the data pipeline (split, dataset, trainer) reads like
one FaceSet. Its faces are copies of the members' faces whose source keys carry the member's
index ("0:clip", "1:clip"), so two members that extracted the same clip never share a source:
the split's blocks, its guard band and `inside_frame` stay per member. Files are read from the
member folder (`root_of`), so stored masks (`masks/<name>.png`) are found where they are.

The run record of a pooled side has `paths` and `members` instead of one `path`; `paths_of`
reads both kinds, and `load_sets` rebuilds what a record (or a command line) names.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from faceswap import faceset as fsmod
from faceswap.errors import BadInput
from faceswap.faceset import Face, FaceSet


class FacePool(FaceSet):
    """The faces of `members` (two or more loaded face sets of one size and centering), in
    member order. `root` is the first member's folder (for code that needs one folder);
    `label` names them all."""

    def __init__(self, members: list[FaceSet]) -> None:  # noqa: D107  (no dataclass init)
        if len(members) < 2:
            raise ValueError("a pool needs at least two face sets")
        first = members[0]
        seen: dict[Path, int] = {}
        for i, m in enumerate(members):
            where = m.root.resolve()
            if where in seen:
                raise BadInput(f"{m.root}: face set given twice in one pool")
            seen[where] = i
            if not m.faces:
                raise BadInput(f"{m.root}: face set has no faces")
            if (m.size, m.centering) != (first.size, first.centering):
                raise BadInput(f"{m.root}: faces are {m.size}px {m.centering}, {first.root} "
                               f"is {first.size}px {first.centering}; pool face sets "
                               "extracted with the same --size and --centering")  # fmt: skip
        super().__init__(root=first.root, size=first.size, centering=first.centering,
                         image_format=first.image_format, extract=dict(first.extract))  # fmt: skip
        self.members = list(members)
        self.offsets: list[int] = []  # index in self.faces of each member's first face
        for i, m in enumerate(members):
            self.offsets.append(len(self.faces))
            for key, src in m.sources.items():
                self.sources[f"{i}:{key}"] = src
            for f in m.faces:
                # a copy without the member's arrays-row token: the pool never saves
                g = object.__new__(Face)
                g.__dict__.update({k: v for k, v in f.__dict__.items() if k != "_row"})
                g.source = f"{i}:{f.source}"
                self.faces.append(g)

    def __repr__(self) -> str:
        return f"FacePool({self.label}, {len(self.faces)} faces)"

    @property
    def label(self) -> str:
        return " + ".join(str(m.root) for m in self.members)

    def member_index(self, face: Face) -> int:
        """Which member a pooled face comes from (from its source key, "i:key")."""
        return int(face.source.split(":", 1)[0])

    def root_of(self, face: Face) -> Path:
        return self.members[self.member_index(face)].root

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"pool")
        for m in self.members:
            h.update(m.fingerprint().encode())
        return h.hexdigest()[:16]

    def save(self) -> None:
        raise TypeError("a face pool is read-only; change its member face sets instead")


def describe(fs: FaceSet) -> str:
    """The folder (or, for a pool, the folders) of a face set, for messages."""
    return fs.label if isinstance(fs, FacePool) else str(fs.root)


def record_of(fs: FaceSet) -> dict[str, Any]:
    """What a run records about one side's faces: `path` for one face set; `paths` and
    `members` (path, fingerprint, faces of each) for a pool, which has no single path."""
    out: dict[str, Any] = {}
    if isinstance(fs, FacePool):
        members = [{"path": str(m.root.resolve()), "fingerprint": m.fingerprint(),
                    "faces": len(m.faces)} for m in fs.members]  # fmt: skip
        out["paths"] = [m["path"] for m in members]
        out["members"] = members
    else:
        out["path"] = str(fs.root.resolve())  # a resume from elsewhere finds it
    out.update(fingerprint=fs.fingerprint(), faces=len(fs.faces), size=fs.size,
               centering=fs.centering)  # fmt: skip
    return out


def paths_of(record: dict[str, Any] | None) -> list[str]:
    """The face-set folders a run record names: [path], a pool's paths, or [] (none
    recorded)."""
    if not isinstance(record, dict):
        return []
    paths = record.get("paths")
    if isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths):
        return list(paths)
    path = record.get("path")
    return [path] if isinstance(path, str) and path else []


def single_path(record: dict[str, Any] | None) -> str | None:
    """The one face set a record names, None for a pool or no record (a pool's side is many
    identities: nothing that needs one person's faces should pick a member silently)."""
    paths = paths_of(record)
    return paths[0] if len(paths) == 1 else None


def pool(sets: list[FaceSet]) -> FaceSet:
    """One face set as is (today's behaviour exactly), several as a FacePool."""
    if not sets:
        raise ValueError("no face sets to pool")
    return sets[0] if len(sets) == 1 else FacePool(sets)


def load_sets(paths: list[str | os.PathLike]) -> FaceSet:
    """Load and pool face sets; any problem is one BadInput naming the folder."""
    return pool([fsmod.load(p) for p in paths])
