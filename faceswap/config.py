"""Typed configs for every stage, loaded from YAML.

The dataclasses are the single source of truth: each field carries a one-line help text in its
metadata (read by the CLI and by scripts/gen_config_docs.py), `__post_init__` rejects bad
values, and YAML keys that no field knows are errors, not silently ignored typos.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from faceswap.errors import BadInput

T = TypeVar("T")

CENTERINGS = ("face", "head", "legacy")
IMAGE_FORMATS = ("png", "jpg")


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a one-line help text (shown by --help and in the docs)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help}, **kwargs)


def check(cond: bool, msg: str) -> None:
    """Raise ValueError(msg) unless cond: what every config's __post_init__ uses."""
    if not cond:
        raise ValueError(msg)


@dataclass
class ExtractConfig:
    """Settings of `faceswap extract`: detection, landmarks, alignment and per-face measurements."""

    detector: str = option("auto", "face detector: auto, dlib-hog, dlib-cnn or s3fd")
    aligner: str = option("auto", "landmark aligner (68 points): auto, dlib or fan")
    device: str = option("auto", "torch device for s3fd/fan: auto, cpu or cuda")
    weights_dir: str | None = option(None, "folder with face-alignment weight files")
    detect_size: int = option(640, "longest side of the frame the detector sees (0 = full size)")
    upsample: int = option(0, "dlib detector upsampling steps, finds faces half as small per step")
    min_score: float = option(0.0, "detector score below which a detection is dropped")
    min_size: int = option(40, "smallest face (box side in source pixels) that is kept")
    max_faces: int = option(0, "keep at most this many faces per frame, largest first (0 = all)")
    every_nth: int = option(1, "process every n-th frame of a video")
    start_frame: int = option(0, "first frame of a video to process")
    end_frame: int | None = option(None, "frame after the last one to process (None = to the end)")
    size: int = option(256, "side of the aligned face crop in pixels")
    centering: str = option("face", "crop centering: face, head (wider, whole head) or legacy")
    image_format: str = option(
        "auto",
        "aligned face image format: auto (jpg for a new face set, the set's own when "
        "adding to one), jpg or png",
    )
    jpeg_quality: int = option(95, "JPEG quality when image_format is jpg")
    embed: bool = option(True, "compute the 128-D dlib identity embedding of faces")
    embed_every: int = option(
        32, "within a face track, embed one face every n frames and share (one track, one person)"
    )
    jitter_every: int = option(
        4, "within a face track, run the landmark consistency check every n frames and share"
    )
    identity_threshold: float = option(0.6, "max embedding distance to a --identity reference")
    track: bool = option(True, "detect near the previous frame's faces instead of the whole frame")
    redetect_every: int = option(16, "while tracking, search the whole frame every n frames")
    confirm_every: int = option(
        4,
        "while tracking, confirm a face with the detector every n source frames (its "
        "landmarks place it in between)",
    )
    workers: int = option(0, "worker processes (0 = one per CPU core, in-process on CUDA)")
    chunk: int = option(
        32, "consecutive frames handed to a worker at once (tracks restart per chunk)"
    )
    save_every: float = option(10.0, "seconds between atomic saves of the face set index")

    def __post_init__(self) -> None:
        check(
            self.detector in ("auto", "dlib-hog", "dlib-cnn", "s3fd"),
            f"detector must be auto, dlib-hog, dlib-cnn or s3fd, not {self.detector!r}",
        )
        check(
            self.aligner in ("auto", "dlib", "fan"),
            f"aligner must be auto, dlib or fan, not {self.aligner!r}",
        )
        check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"device must be auto, cpu or cuda, not {self.device!r}",
        )
        check(self.detect_size == 0 or self.detect_size >= 64, "detect_size must be 0 or >= 64")
        check(0 <= self.upsample <= 3, "upsample must be between 0 and 3")
        check(self.min_size >= 8, "min_size must be >= 8")
        check(self.max_faces >= 0, "max_faces must be >= 0")
        check(self.every_nth >= 1, "every_nth must be >= 1")
        check(self.start_frame >= 0, "start_frame must be >= 0")
        check(
            self.end_frame is None or self.end_frame > self.start_frame,
            "end_frame must be greater than start_frame",
        )
        check(
            64 <= self.size <= 1024 and self.size % 16 == 0,
            "size must be a multiple of 16 between 64 and 1024",
        )
        check(self.centering in CENTERINGS, f"centering must be one of {', '.join(CENTERINGS)}")
        check(
            self.image_format in ("auto", *IMAGE_FORMATS), "image_format must be auto, png or jpg"
        )
        check(50 <= self.jpeg_quality <= 100, "jpeg_quality must be between 50 and 100")
        check(self.embed_every >= 1, "embed_every must be >= 1")
        check(self.jitter_every >= 1, "jitter_every must be >= 1")
        check(0.0 < self.identity_threshold < 2.0, "identity_threshold must be in (0, 2)")
        check(self.redetect_every >= 1, "redetect_every must be >= 1")
        check(self.confirm_every >= 1, "confirm_every must be >= 1")
        check(self.workers >= 0, "workers must be >= 0")
        check(1 <= self.chunk <= 1024, "chunk must be between 1 and 1024")
        check(self.save_every > 0, "save_every must be > 0")


def _is_instance(value: Any, tp: Any) -> bool:
    """Loose runtime check of a YAML value against a field annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types raise BadInput."""
    if not isinstance(data, dict):
        raise BadInput(f"{where}: expected a mapping of {cls.__name__} fields")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BadInput(
            f"{where}: unknown key {unknown[0]!r} (valid keys: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = from_dict(tp, value, f"{where}.{name}")
        elif not _is_instance(value, tp):
            raise BadInput(f"{where}: {name} has the wrong type ({type(value).__name__})")
        if isinstance(value, float) and not math.isfinite(value):
            # YAML's .nan/.inf: NaN slips through every range check (all comparisons are false)
            raise BadInput(f"{where}: {name} must be a finite number, not {value}")
        if isinstance(value, float) and tp is float:
            value = float(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise BadInput(f"{where}: {exc}") from None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader (a config never runs code)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read config {p}: {exc.__class__.__name__}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"config {p} is not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"config {p}: expected a mapping at the top level")
    return data


def load_config(cls: type[T], path: str | os.PathLike | None, overrides: dict[str, Any]) -> T:
    """Defaults < YAML file < overrides (CLI flags that were given; None values are skipped)."""
    data: dict[str, Any] = load_yaml(path) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, data, str(path) if path else "options")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-serializable dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def field_help(cls: type) -> dict[str, str]:
    """Field name -> one-line help text."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
