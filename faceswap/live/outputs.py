"""Where live frames go: a window, a video file (labelled like convert's outputs), or a virtual
camera that other programs (video calls, OBS) read.

A file keeps the source's timing: it is written at the source's frame rate, and a source frame
the session dropped is filled with the last frame shown, so the recording plays in real time
as it was seen. It is written under a temp name and renamed after its provenance sidecar, as
in convert; an interrupted session still leaves a complete, labelled file.
"""

from __future__ import annotations

import logging
import os
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from faceswap.convert import provenance
from faceswap.errors import BadInput
from faceswap.media import VIDEO_FORMATS, VideoWriter

log = logging.getLogger(__name__)

WINDOW_TITLE = "faceswap live (synthetic) - q to quit"


class Output(ABC):
    kind: str
    path: str | None = None
    repeated = 0  # frames repeated to fill drops (files)

    @abstractmethod
    def write(self, index: int, frame: np.ndarray) -> bool:
        """Show or store the output frame for source frame `index`; False: the user quit."""

    @abstractmethod
    def finish(self, label: dict[str, Any]) -> None:
        """Complete the output (files: encoder, sidecar, rename; others: close)."""

    @abstractmethod
    def abort(self) -> None:
        """Drop a half-made output."""


def display_available() -> str | None:
    """None when a window can be opened here, else why not (one phrase)."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
    import cv2

    try:
        cv2.namedWindow(WINDOW_TITLE, cv2.WINDOW_NORMAL)
        cv2.destroyWindow(WINDOW_TITLE)
    except cv2.error:
        return "this OpenCV has no GUI support (opencv-python-headless; install opencv-python)"
    return None


class WindowOutput(Output):
    kind = "window"

    def __init__(self) -> None:
        why = display_available()
        if why is not None:
            raise BadInput(f"--output window: {why}; write a file instead (--output out.mp4)")
        import cv2

        cv2.namedWindow(WINDOW_TITLE, cv2.WINDOW_NORMAL)

    def write(self, index: int, frame: np.ndarray) -> bool:
        import cv2

        cv2.imshow(WINDOW_TITLE, frame)
        key = cv2.waitKey(1) & 0xFF
        closed = cv2.getWindowProperty(WINDOW_TITLE, cv2.WND_PROP_VISIBLE) < 1
        return key not in (ord("q"), 27) and not closed

    def finish(self, label: dict[str, Any]) -> None:
        import cv2

        cv2.destroyAllWindows()

    abort = finish  # type: ignore[assignment]


class VirtualCameraOutput(Output):
    """pyvirtualcam: v4l2loopback on Linux, OBS's virtual camera on Windows and macOS."""

    kind = "virtual-camera"

    def __init__(self, width: int, height: int, fps: float) -> None:
        try:
            import pyvirtualcam
        except ImportError:
            raise BadInput("--output virtual-camera needs pyvirtualcam (pip install pyvirtualcam)"
                           " and a virtual camera device (v4l2loopback on Linux, OBS on Windows "
                           "and macOS)") from None  # fmt: skip
        try:
            self.cam = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.BGR)
        except RuntimeError as exc:
            raise BadInput(f"--output virtual-camera: {exc}") from None
        log.info("virtual camera %s, %dx%d at %.1f fps", self.cam.device, width, height, fps)
        self.path = str(self.cam.device)

    def write(self, index: int, frame: np.ndarray) -> bool:
        self.cam.send(frame)
        return True

    def finish(self, label: dict[str, Any]) -> None:
        self.cam.close()

    abort = finish  # type: ignore[assignment]


class FileOutput(Output):
    kind = "file"

    def __init__(self, out: Path, width: int, height: int, fps: float, label: dict[str, Any],
                 crf: int, preset: str) -> None:  # fmt: skip
        self.out = out
        self.path = str(out)
        self.writer = VideoWriter(out, width, height, fps, crf=crf, preset=preset,
                                  tags=provenance.container_tags(label))  # fmt: skip
        self.last: np.ndarray | None = None
        self.last_index = -1
        self.written = 0

    def write(self, index: int, frame: np.ndarray) -> bool:
        if self.last is not None:
            for _ in range(index - self.last_index - 1):  # frames dropped since the last one
                self.writer.write(self.last)
                self.repeated += 1
        self.writer.write(frame)
        self.last, self.last_index = frame, index
        self.written += 1
        return True

    def finish(self, label: dict[str, Any]) -> None:
        if self.written == 0:
            self.writer.abort()
            raise BadInput(f"{self.out}: no frame was processed, so nothing was written")
        tmp = self.writer.finish()
        from faceswap.media import sha256_file

        # the label first, then the video under its name (as convert does)
        provenance.write_sidecar(self.out, label, sha256_file(tmp), "video")
        self.writer.commit()

    def abort(self) -> None:
        self.writer.abort()


def check_file_output(out: Path, overwrite: bool) -> None:
    """Before anything starts: a video suffix, no clobbering, a writable folder."""
    if out.suffix.lower() not in VIDEO_FORMATS:
        raise BadInput(f"--output {out}: must be window, virtual-camera or a video file "
                       f"({', '.join(sorted(VIDEO_FORMATS))})")  # fmt: skip
    if out.exists() and not overwrite:
        raise BadInput(f"{out}: exists; pass --overwrite to replace it")
    if out.is_dir():
        raise BadInput(f"{out}: is a folder")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{out}: cannot write there ({parent} is not a writable folder)")
