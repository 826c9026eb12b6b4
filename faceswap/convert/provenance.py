"""The provenance label of every converted output (the contract is docs/ethics.md).

1. Container tags: format-level metadata of the video (PNG text chunks for images) saying that
   it is synthetic and was made with faceswap, naming the model run and the source video.
2. A sidecar `OUT.provenance.json` with the same facts in full, plus the output's SHA-256.
3. Optionally, a visible watermark burned into every frame.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceswap import __version__
from faceswap.faceset import atomic_write_text

STATEMENT = ("This video is synthetic: faces in it were replaced by a machine-learning model "
             "(faceswap). It does not show real events as they were recorded.")  # fmt: skip
IMAGE_STATEMENT = STATEMENT.replace("This video is", "This image is")
WATERMARK_TEXT = "SYNTHETIC - faces replaced with faceswap"
SIDECAR_SUFFIX = ".provenance.json"


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def sidecar_path(output: str | os.PathLike) -> Path:
    """`swap.mp4` -> `swap.mp4.provenance.json`, next to it."""
    out = Path(output)
    return out.parent / f"{out.name}{SIDECAR_SUFFIX}"


def make_label(
    *,
    source_path: str,
    source_sha256: str,
    run: dict[str, Any],
    settings: dict[str, Any],
    frames: dict[str, Any],
    watermark: bool,
    created: str,
    image: bool = False,
) -> dict[str, Any]:
    """The sidecar's content, without `output` (known only once the output is written)."""
    return {
        "synthetic": True,
        "statement": IMAGE_STATEMENT if image else STATEMENT,
        "tool": f"faceswap {__version__}",
        "created": created,
        "output": None,
        "source": {"path": source_path, "sha256": source_sha256},
        "run": run,
        "frames": frames,
        "settings": settings,
        "watermark": watermark,
    }


def container_tags(label: dict[str, Any]) -> dict[str, str]:
    """Format-level tags for the video file: plain strings, short enough for any player."""
    run = label["run"]
    src = label["source"]
    return {
        "synthetic": "true",
        "comment": label["statement"],
        "faceswap_tool": label["tool"],
        "faceswap_created": label["created"],
        "faceswap_run": str(run["folder"]),
        "faceswap_checkpoint": f"{run['checkpoint']} (step {run['step']})",
        "faceswap_source": f"{Path(src['path']).name} sha256:{src['sha256']}",
    }


def write_sidecar(output: Path, label: dict[str, Any], sha256: str, kind: str) -> Path:
    """Write OUT.provenance.json atomically, with the output's path and hash filled in."""
    data = dict(label)
    data["output"] = {"path": str(output), "sha256": sha256, "kind": kind}
    path = sidecar_path(output)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def read_label(output: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of an output and the tags in its container, for checking a file by hand:
    {"sidecar": {...} or None, "tags": {...}, "sha256_matches": bool or None}."""
    from faceswap.media import read_tags, sha256_file

    out = Path(output)
    side = sidecar_path(out)
    sidecar = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else None
    tags = read_tags(out) if out.is_file() and out.suffix.lower() != ".png" else {}
    matches = None
    if sidecar is not None and out.is_file():
        matches = sha256_file(out) == sidecar["output"]["sha256"]
    return {"sidecar": sidecar, "tags": tags, "sha256_matches": matches}


# ---- PNG text chunks ----------------------------------------------------------------------


def png_with_text(png: bytes, tags: dict[str, str]) -> bytes:
    """Insert one iTXt chunk per tag after the IHDR chunk of an encoded PNG.

    iTXt (UTF-8, uncompressed) is what image viewers and exiftool show as PNG text; keys are
    1-79 Latin-1 characters by the PNG spec.
    """
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG with IHDR first")
    ihdr_end = 8 + 8 + struct.unpack(">I", png[8:12])[0] + 4
    chunks = []
    for key, value in tags.items():
        data = key.encode("latin-1")[:79] + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")
        body = b"iTXt" + data
        chunks.append(struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body)))
    return png[:ihdr_end] + b"".join(chunks) + png[ihdr_end:]


def png_text(png: bytes) -> dict[str, str]:
    """The tEXt/iTXt tags of an encoded PNG (uncompressed ones)."""
    tags: dict[str, str] = {}
    i = 8
    while i + 8 <= len(png):
        n = struct.unpack(">I", png[i : i + 4])[0]
        kind, data = png[i + 4 : i + 8], png[i + 8 : i + 8 + n]
        if kind == b"tEXt":
            k, _, v = data.partition(b"\x00")
            tags[k.decode("latin-1")] = v.decode("latin-1")
        elif kind == b"iTXt":
            k, _, rest = data.partition(b"\x00")
            if rest[:1] == b"\x00":  # not compressed: skip method, language and keyword
                _, _, rest = rest[2:].partition(b"\x00")
                _, _, v = rest.partition(b"\x00")
                tags[k.decode("latin-1")] = v.decode("utf-8", "replace")
        elif kind == b"IEND":
            break
        i += 12 + n
    return tags


# ---- visible watermark --------------------------------------------------------------------


class Watermark:
    """A label in the bottom-left corner: white text on a dark translucent box, its height
    ~3.5% of the frame's, rendered once and alpha-blended into every frame."""

    def __init__(self, width: int, height: int, text: str = WATERMARK_TEXT) -> None:
        scale = max(0.35, height / 720 * 0.8)
        thick = max(1, round(scale * 2))
        font = cv2.FONT_HERSHEY_SIMPLEX
        (tw, th), base = cv2.getTextSize(text, font, scale, thick)
        while tw > 0.9 * width and scale > 0.2:  # narrow frames: shrink to fit
            scale *= 0.9
            thick = max(1, round(scale * 2))
            (tw, th), base = cv2.getTextSize(text, font, scale, thick)
        pad = max(2, th // 2)
        bw, bh = min(width, tw + 2 * pad), min(height, th + base + 2 * pad)
        text_layer = np.zeros((bh, bw), np.uint8)
        cv2.putText(text_layer, text, (pad, pad + th), font, scale, 255, thick, cv2.LINE_AA)
        t = text_layer.astype(np.float32)[..., None] / 255.0  # (bh, bw, 1)
        # box at 55% black, text opaque white
        self.alpha = 0.55 + 0.45 * t
        self.color = (255.0 * t) / np.maximum(self.alpha, 1e-6)
        margin = max(2, height // 60)
        self.x0 = min(margin, width - bw)
        self.y0 = max(0, height - bh - margin)
        self.text = text

    def apply(self, frame: np.ndarray) -> None:
        """Burn the label into `frame` (H, W, 3) uint8, in place."""
        h, w = self.alpha.shape[:2]
        roi = frame[self.y0 : self.y0 + h, self.x0 : self.x0 + w]
        out = roi.astype(np.float32) * (1.0 - self.alpha) + self.color * self.alpha
        roi[:] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
