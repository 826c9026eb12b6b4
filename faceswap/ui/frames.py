"""The Convert page's frame scrubber: one frame of the target clip, and one frame converted
with the chosen options by faceswap.convert's own pipeline (`convert --preview 1`), split into
its before and after halves for the slider."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceswap import faceset as fsmod
from faceswap.config import from_dict
from faceswap.convert.config import ConvertConfig
from faceswap.errors import BadInput
from faceswap.media import open_inputs

FRAME_HEIGHT = 360  # px of a scrubber frame: enough to judge, quick to send


def clip_info(clip: Path) -> dict[str, Any]:
    src = open_inputs([str(clip)])[0]
    return {"frames": src.frames, "fps": src.fps, "width": src.width, "height": src.height}


def read_frame(clip: Path, index: int) -> bytes:
    """Frame `index` of the clip as a JPEG, scaled to FRAME_HEIGHT."""
    cap = cv2.VideoCapture(str(clip))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if not 0 <= index < max(n, 1):
            raise BadInput(f"frame {index}: the clip has frames 0-{n - 1}")
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok:
        raise BadInput(f"{clip}: cannot read frame {index}")
    scale = min(1.0, FRAME_HEIGHT / frame.shape[0])
    if scale < 1:
        frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 88])
    return buf.tobytes()


class FramePreview:
    """Converts single frames; one at a time (each uses every core), results under `cache`."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.lock = threading.Lock()
        self.counter = itertools.count()

    def options(self, raw: dict[str, Any]) -> ConvertConfig:
        """A ConvertConfig from the page's options; its own checks name a bad value."""
        allowed = {"mask", "color", "blend", "erode", "feather", "sharpen", "hull", "direction"}
        unknown = set(raw) - allowed
        if unknown:
            raise BadInput(f"unknown convert option(s): {', '.join(sorted(unknown))}")
        try:
            return from_dict(ConvertConfig, dict(raw), "options")
        except ValueError as exc:
            raise BadInput(str(exc)) from None

    def render(self, clip: Path, run: Path, alignments: Path | None, index: int,
               cfg: ConvertConfig) -> dict[str, Any]:  # fmt: skip
        from faceswap.convert.pipeline import convert

        with self.lock:
            t0 = time.perf_counter()
            self.cache.mkdir(parents=True, exist_ok=True)
            n = next(self.counter) % 8  # a few recent results, never a growing pile
            strip = self.cache / f"preview-{n}.png"
            convert(clip, run, strip, cfg, alignments=alignments, start=index, end=index + 1,
                    preview=1, overwrite=True)  # fmt: skip
            img = cv2.imread(str(strip), cv2.IMREAD_COLOR)
            if img is None:
                raise BadInput(f"{strip}: the preview was not written")
            h = img.shape[0] // 2  # the strip: the original above, the swap below
            out = {}
            for part, tile in (("before", img[:h]), ("after", img[h : 2 * h])):
                ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(tile),
                                       [cv2.IMWRITE_JPEG_QUALITY, 90])  # fmt: skip
                path = self.cache / f"{part}-{n}.jpg"
                fsmod.atomic_write_bytes(path, buf.tobytes())
                out[part] = path
            out["seconds"] = time.perf_counter() - t0
            return out
