"""A UI project: one folder holding the chosen inputs and everything made from them.

    faceswap-ui.json     which clips/photos are A, B and the target (written by the UI)
    faces/a faces/b faces/target    face sets           runs/ab runs/fit    training runs
    output/              converted clips                reports/ab          the report page
    .faceswap-ui/        job logs and progress, cached thumbnails and frame previews

The layout is fixed so that the UI can show the equivalent commands and a user can take over
in a terminal at any point.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from faceswap.faceset import atomic_write_text
from faceswap.media import IMAGE_EXTS, VIDEO_EXTS
from faceswap.ui.security import PathRefused, Roots

STATE = "faceswap-ui.json"
WORK = ".faceswap-ui"
FACESETS = {"a": "faces/a", "b": "faces/b", "target": "faces/target"}
RUNS = {"train": "runs/ab", "fit": "runs/fit"}
OUTPUT = "output/swapped.mp4"
REPORT = "reports/ab"
SIDES = ("a", "b", "target")


@dataclass
class Inputs:
    """The media of each side, as paths the browser shows (relative to the project)."""

    a: list[str] = field(default_factory=list)
    b: list[str] = field(default_factory=list)
    target: list[str] = field(default_factory=list)


def load_inputs(project: Path) -> Inputs:
    try:
        data = json.loads((project / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Inputs()
    if not isinstance(data, dict):
        return Inputs()
    out = Inputs()
    for side in SIDES:
        value = data.get(side)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            setattr(out, side, value)
    return out


def save_inputs(project: Path, inputs: Inputs) -> None:
    atomic_write_text(project / STATE, json.dumps(asdict(inputs), indent=1))


def check_inputs(roots: Roots, side: str, paths: object) -> list[str]:
    """The browser's choice for one side, every path inside the roots and a video, image or
    folder; PathRefused naming the first bad one. The target is one clip."""
    if side not in SIDES:
        raise PathRefused(f"unknown side {side!r}; choose one of a, b, target")
    if not isinstance(paths, list) or not paths:
        raise PathRefused(f"{side}: give at least one clip, photo or folder")
    if side == "target" and len(paths) != 1:
        raise PathRefused("target: exactly one video clip")
    out = []
    for raw in paths:
        real = roots.resolve(raw, must_exist=True)
        kind = media_kind(real)
        if kind is None or (side == "target" and kind != "video"):
            want = "a video clip" if side == "target" else "a video, a photo or a folder"
            raise PathRefused(f"{raw}: not {want}")
        out.append(roots.show(real))
    return out


def media_kind(p: Path) -> str | None:
    if p.is_dir():
        return "folder"
    ext = p.suffix.lower()
    if ext in VIDEO_EXTS:
        return "video"
    if ext in IMAGE_EXTS:
        return "image"
    return None


def list_dir(roots: Roots, raw: str | None) -> dict:
    """One folder of the server-side file browser: its entries (folders first) and its parent
    when that is still inside the roots. No path given: the roots themselves."""
    if not raw:
        return {"path": "", "parent": None,
                "entries": [{"name": str(r), "path": str(r), "kind": "folder"} for r in roots.all]}  # fmt: skip
    real = roots.resolve(raw, must_exist=True)
    if not real.is_dir():
        raise PathRefused(f"{raw}: not a folder")
    entries = []
    try:
        names = sorted(os.listdir(real))
    except OSError as exc:
        raise PathRefused(f"{raw}: cannot list ({exc.strerror})") from None
    for name in names:
        if name.startswith("."):
            continue
        p = real / name
        try:
            target = p.resolve()
            if not any(target == r or r in target.parents for r in roots.all):
                continue  # a link out of the roots is not shown (and refused if named)
        except OSError:
            continue
        kind = media_kind(p)
        if kind is None:
            continue
        entries.append({"name": name, "path": str(p), "kind": kind})
    entries.sort(key=lambda e: (e["kind"] != "folder", e["name"]))
    parent = real.parent
    inside = any(parent == r or r in parent.parents for r in roots.all) and real not in roots.all
    return {"path": str(real), "parent": str(parent) if inside else "", "entries": entries}
