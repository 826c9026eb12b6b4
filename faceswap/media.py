"""Reading frames from videos, image files, folders and globs.

Inputs are checked up front (`open_inputs`), before anything is written, so a typo or a corrupt
file fails in one clear line instead of half-way through a long extraction.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceswap.errors import BadInput

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
MAX_PIXELS = 8192 * 8192  # larger frames are refused rather than exhausting memory


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_header_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) that a PNG or JPEG file's header declares, read without decoding the
    pixels; None for other formats or a header that does not say. data: the file's bytes as
    uint8 (np.fromfile)."""
    head = data[:24].tobytes()
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 9 < n:  # JPEG segments: FF marker, 2-byte length (which counts itself), payload
        if data[i] != 0xFF:
            return None
        marker = int(data[i + 1])
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:  # FF Cx, length, precision, height, width
            h = int(data[i + 5]) << 8 | int(data[i + 6])
            w = int(data[i + 7]) << 8 | int(data[i + 8])
            return w, h
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length
            i += 2
            continue
        i += 2 + (int(data[i + 2]) << 8 | int(data[i + 3]))
    return None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to BGR uint8; BadInput naming the file if it can't."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from None
    if data.size == 0:
        raise BadInput(f"{path}: empty file")
    dims = image_header_size(data)
    if dims is not None and dims[0] * dims[1] > MAX_PIXELS:
        # refused before decoding: a 50 KB PNG can declare 20000x20000 (a 1.2 GB decode)
        raise BadInput(f"{path}: image is {dims[0]}x{dims[1]}, too large")
    # IMREAD_COLOR applies EXIF orientation and turns gray, 16-bit and alpha images into
    # 3-channel 8-bit BGR, which is what every later stage expects.
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise BadInput(f"{path}: not a readable image (corrupt or unsupported format)")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise BadInput(f"{path}: image is {img.shape[1]}x{img.shape[0]}, too large")
    return img


@dataclass
class MediaSource:
    """One input file: a video or a still image."""

    path: Path
    kind: str  # "video" | "image"
    width: int
    height: int
    fps: float | None = None
    frames: int | None = None
    _sha: str | None = None

    @property
    def sha256(self) -> str:
        if self._sha is None:
            self._sha = sha256_file(self.path)
        return self._sha

    @property
    def key(self) -> str:
        """Stable id of the source in a face set: file stem + first 8 hex of its hash."""
        stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.path.stem)[:40]
        return f"{stem or 'src'}_{self.sha256[:8]}"

    def iter_frames(
        self,
        start: int = 0,
        end: int | None = None,
        every_nth: int = 1,
        skip: Callable[[int], bool] | None = None,
    ) -> Iterator[tuple[int, float | None, np.ndarray]]:
        """Yield (frame index, seconds, BGR frame) for the selected frames; `skip(i)` True
        frames are passed over without decoding the pixels."""
        if self.kind == "image":
            if start == 0 and not (skip and skip(0)):
                yield 0, None, read_image(self.path)
            return
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise BadInput(f"{self.path}: cannot open video")
        try:
            fps = self.fps or 25.0
            if start > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, start)
                # seeking is keyframe-based in some containers: trust the reported position
                pos = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
                i = pos if pos >= 0 else 0
                while i < start:
                    if not cap.grab():
                        return
                    i += 1
            i = start
            while end is None or i < end:
                wanted = (i - start) % every_nth == 0 and not (skip and skip(i))
                if wanted:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    yield i, i / fps, frame
                elif not cap.grab():
                    break
                i += 1
        finally:
            cap.release()


def probe_video(path: Path) -> MediaSource:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise BadInput(f"{path}: cannot open video (corrupt or unsupported format)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise BadInput(f"{path}: video has no readable frames (corrupt or truncated?)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    h, w = frame.shape[:2]
    return MediaSource(
        path, "video", w, h, fps=float(fps) if fps and fps > 0 else None, frames=n or None
    )


def probe_image(path: Path) -> MediaSource:
    # a header check up front; the pixels are decoded when the frame is processed
    if path.stat().st_size == 0:
        raise BadInput(f"{path}: empty file")
    if not cv2.haveImageReader(str(path)):
        raise BadInput(f"{path}: not a readable image (corrupt or unsupported format)")
    img = read_image(path)
    return MediaSource(path, "image", img.shape[1], img.shape[0])


def _probe(path: Path) -> MediaSource:
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return probe_image(path)
    if ext in VIDEO_EXTS:
        return probe_video(path)
    # unknown extension: try as video, then as image, else refuse
    try:
        return probe_video(path)
    except BadInput:
        pass
    if cv2.haveImageReader(str(path)):
        return probe_image(path)
    raise BadInput(f"{path}: neither a video nor an image this tool can read")


def open_inputs(inputs: list[str]) -> list[MediaSource]:
    """Expand files, folders and globs into checked sources (sorted, de-duplicated)."""
    if not inputs:
        raise BadInput("no input given: name a video, an image folder or a glob")
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if any(ch in item for ch in "*?[") and not p.exists():
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise BadInput(f"{item}: the pattern matches no files")
            paths.extend(Path(m) for m in matches if Path(m).is_file())
        elif p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            others = [f for f in files if f.suffix.lower() not in IMAGE_EXTS | VIDEO_EXTS]
            if others:
                raise BadInput(
                    f"{others[0]}: not an image or video (in input folder {p}); move it out "
                    "or pass the images by glob"
                )
            if not files:
                raise BadInput(f"{p}: input folder has no images or videos")
            paths.extend(files)
        elif p.is_file():
            paths.append(p)
        else:
            raise BadInput(f"{item}: no such file or folder")
    seen: set[Path] = set()
    out = []
    for p in paths:
        rp = p.resolve()
        if rp in seen:
            continue
        seen.add(rp)
        out.append(_probe(p))
    return out
