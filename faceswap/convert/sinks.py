"""Where converted frames go: an H.264 video, a folder of PNG frames, or a preview strip.

Every sink writes under a hidden temp name in the output's folder; `finish` completes that,
`commit` renames it to the output path (replacing an old output only then), `abort` deletes it.
Each output carries the provenance tags: container metadata for a video, text chunks in every
PNG.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceswap.convert import provenance
from faceswap.errors import BadInput
from faceswap.faceset import atomic_write_bytes
from faceswap.media import (
    VIDEO_FORMATS,
    MediaSource,
    VideoWriter,
    remove_dead_partials,
    sha256_file,
)

PREVIEW_HEIGHT = 240  # height of one tile of the preview strip


def output_kind(out: Path, preview: int) -> str:
    """video (.mp4 .m4v .mov .mkv), images (a path without suffix: a folder) or preview."""
    suffix = out.suffix.lower()
    if preview:
        if suffix != ".png":
            raise BadInput(f"{out}: --preview writes a PNG strip, so -o must end in .png")
        return "preview"
    if suffix in VIDEO_FORMATS:
        return "video"
    if suffix == "":
        return "images"
    raise BadInput(f"{out}: unknown output type {suffix!r}; use {', '.join(sorted(VIDEO_FORMATS))}"
                   " for a video or a folder name (no suffix) for PNG frames")  # fmt: skip


def _temp_name(out: Path) -> Path:
    return out.parent / f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.partial"


def _png(img: np.ndarray, tags: dict[str, str]) -> bytes:
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("could not encode a PNG")
    return provenance.png_with_text(buf.tobytes(), tags)


class Sink(ABC):
    """Base: the shared temp-file discipline and the optional watermark."""

    def __init__(self, out: Path, src: MediaSource, watermark: bool) -> None:
        self.out = out
        self.tmp = _temp_name(out)
        remove_dead_partials(out)  # left by a killed run (a live writer's stay)
        self.watermark = provenance.Watermark(src.width, src.height) if watermark else None
        self.audio: str | None = None
        self.created_dirs: list[Path] = []

    @abstractmethod
    def write(self, index: int, frame: np.ndarray, original: np.ndarray | None) -> None:
        """Take one output frame (and the source frame, for before/after outputs)."""

    def finish(self) -> Path:
        return self.tmp

    def sha256(self, path: Path) -> str:
        return sha256_file(path)

    def commit(self) -> None:
        os.replace(self.tmp, self.out)

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)
        self._remove_created_dirs()

    def _remove_created_dirs(self) -> None:
        for d in self.created_dirs:
            try:
                d.rmdir()
            except OSError:
                return  # not empty (or gone): leave it and its parents


class VideoSink(Sink):
    def __init__(self, out, src, cfg, label, audio_start, audio_len) -> None:
        super().__init__(out, src, cfg.watermark)
        self.writer = VideoWriter(
            out, src.width, src.height, src.fps or 25.0, crf=cfg.crf, preset=cfg.preset,
            audio_from=src.path, audio_start=audio_start, audio_duration=audio_len,
            tags=provenance.container_tags(label),
        )  # fmt: skip
        self.tmp = self.writer.tmp
        self.audio = self.writer.audio

    def write(self, index, frame, original) -> None:
        self.writer.write(frame)

    def finish(self) -> Path:
        return self.writer.finish()

    def commit(self) -> None:
        self.writer.commit()

    def abort(self) -> None:
        self.writer.abort()
        self._remove_created_dirs()


class ImageSink(Sink):
    """PNG frames named by their frame index in the clip (000120.png)."""

    def __init__(self, out, src, cfg, label) -> None:
        super().__init__(out, src, cfg.watermark)
        self.tags = provenance.container_tags(label)
        self.tmp.mkdir()

    def write(self, index, frame, original) -> None:
        (self.tmp / f"{index:06d}.png").write_bytes(_png(frame, self.tags))

    def sha256(self, path: Path) -> str:
        """Hash of the folder's `sha256sum *.png` listing, so `(cd OUT && sha256sum *.png) |
        sha256sum` checks the whole folder against the label."""
        lines = [f"{sha256_file(p)}  {p.name}\n" for p in sorted(path.glob("*.png"))]
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    def commit(self) -> None:
        old = None
        if self.out.exists():
            old = self.out.parent / f".{self.out.name}.{os.getpid()}-old"
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._remove_created_dirs()


class PreviewSink(Sink):
    """A before/after strip: each column one frame, the original above, the swap below."""

    def __init__(self, out, src, cfg, label) -> None:
        super().__init__(out, src, cfg.watermark)
        self.tags = provenance.container_tags(label)
        self.scale = min(1.0, PREVIEW_HEIGHT / src.height)
        self.size = (max(1, round(src.width * self.scale)), max(1, round(src.height * self.scale)))
        self.columns: list[np.ndarray] = []

    def write(self, index, frame, original) -> None:
        assert original is not None
        before = cv2.resize(original, self.size, interpolation=cv2.INTER_AREA)
        after = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        for img, text in ((before, f"{index} before"), (after, f"{index} after")):
            cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                        cv2.LINE_AA)  # fmt: skip
        self.columns.append(np.vstack([before, after]))

    def finish(self) -> Path:
        gap = np.full((self.size[1] * 2, 4, 3), 255, np.uint8)
        parts: list[np.ndarray] = []
        for col in self.columns:
            parts += [col, gap]
        atomic_write_bytes(self.tmp, _png(np.hstack(parts[:-1]), self.tags))
        return self.tmp


def open_sink(kind: str, out: Path, src: MediaSource, cfg: Any, label: dict,
              audio_start: float, audio_len: float | None) -> Sink:  # fmt: skip
    """Create the output's folder (checks are done by now) and the sink that writes there."""
    missing = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{out}: cannot create its folder ({exc.strerror})") from None
    sink: Sink
    if kind == "video":
        sink = VideoSink(out, src, cfg, label, audio_start, audio_len)
    elif kind == "images":
        sink = ImageSink(out, src, cfg, label)
    else:
        sink = PreviewSink(out, src, cfg, label)
    sink.created_dirs = missing  # innermost first: removed again by abort if still empty
    return sink
