"""Reading frames from videos, image files, folders and globs.

Inputs are checked up front (`open_inputs`), before anything is written, so a typo or a corrupt
file fails in one clear line instead of half-way through a long extraction.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceswap.errors import BadInput

# FFmpeg inside OpenCV prints its own errors ("moov atom not found") on stderr before ours;
# our one-line messages say the same thing with the file name. Read at the first capture, so
# setting it here (before any video is opened) is enough; a user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

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
        into: Callable[[int], np.ndarray | None] | None = None,
    ) -> Iterator[tuple[int, float | None, np.ndarray]]:
        """Yield (frame index, seconds, BGR frame) for the selected frames; `skip(i)` True
        frames are passed over without decoding the pixels. `into(i)` may give a buffer to
        decode frame i into (a frame of another size gets an array of its own)."""
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
                    buf = into(i) if into is not None else None
                    ok, frame = cap.read() if buf is None else cap.read(buf)
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
            subdirs = sorted(
                f.name for f in p.iterdir() if f.is_dir() and not f.name.startswith(".")
            )
            others = [f for f in files if f.suffix.lower() not in IMAGE_EXTS | VIDEO_EXTS]
            if others:
                raise BadInput(
                    f"{others[0]}: not an image or video (in input folder {p}); move it out "
                    "or pass the images by glob"
                )
            if not files and subdirs:
                shown = ", ".join(subdirs[:4]) + (", ..." if len(subdirs) > 4 else "")
                raise BadInput(f"{p}: input folder holds only subfolders ({shown}); pass them "
                               f"({p / '*'}) or a glob such as '{p}/**/*.jpg'")  # fmt: skip
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


# ---- writing videos ------------------------------------------------------------------------
#
# Frames are piped raw (BGR24) into the ffmpeg binary that the imageio-ffmpeg wheel ships, which
# encodes H.264 and muxes the source's audio track in the same pass. ffmpeg writes a hidden temp
# file in the output folder; `commit` renames it over the output, so an interrupted or failed
# run never leaves a truncated file under the output name.

VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow")  # fmt: skip
# audio codecs that MP4/MOV can carry as they are; anything else is re-encoded to AAC
_MP4_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def probe_audio(path: str | os.PathLike) -> str | None:
    """Codec name of the first audio stream of a media file (e.g. "aac"), or None."""
    import re
    import subprocess

    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, text=True, errors="replace")  # fmt: skip
    # ffmpeg exits 1 here (no output named); the stream list is on stderr either way:
    #   Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, ...
    found = re.search(r"Stream #\d+:\d+\S*: Audio: (\w+)", proc.stderr)
    return found.group(1) if found else None


def read_tags(path: str | os.PathLike) -> dict[str, str]:
    """The format-level metadata tags of a media file (what `ffprobe -show_format` lists)."""
    import subprocess

    proc = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path),
                           "-f", "ffmetadata", "-"], capture_output=True)  # fmt: skip
    if proc.returncode != 0:
        raise BadInput(f"{path}: cannot read the metadata ({_last_line(proc.stderr)})")
    return parse_ffmetadata(proc.stdout.decode("utf-8", "replace"))


def parse_ffmetadata(text: str) -> dict[str, str]:
    """Global `key=value` tags of an ffmetadata text (ffmpeg escapes '=', ';', '#', '\\' and
    newlines with a backslash); stops at the first [STREAM] or [CHAPTER] section."""
    tags: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        if text[i] == "[":
            break
        if text[i] in ";#\n":  # a comment (the ;FFMETADATA1 header) or an empty line
            i = text.find("\n", i)
            i = n if i < 0 else i + 1
            continue
        key: list[str] = []
        value: list[str] = []
        target = key
        while i < n and text[i] != "\n":
            ch = text[i]
            if ch == "\\" and i + 1 < n:
                target.append(text[i + 1])
                i += 2
                continue
            if ch == "=" and target is key:
                target = value
            else:
                target.append(ch)
            i += 1
        i += 1
        tags["".join(key)] = "".join(value)
    return tags


def _last_line(stderr: bytes | str) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def fps_fraction(fps: float) -> str:
    """A frame rate as the exact fraction ffmpeg wants: 29.97002997 -> "30000/1001"."""
    from fractions import Fraction

    f = Fraction(fps).limit_denominator(1001)
    return f"{f.numerator}/{f.denominator}"


def remove_dead_partials(path: Path) -> int:
    """Delete the `.NAME.PID-XXXXXXXX.partial` temp files (or folders, for a frame folder) of
    output `path` whose writing process is gone (killed before it could clean up); a live
    writer's file is left alone. Returns how many went."""
    n = 0
    for p in path.parent.glob(f".{glob.escape(path.name)}.*.partial"):
        pid = p.name[len(path.name) + 2 :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # alive (or another user's process): not ours to delete
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            n += 1
    if n:
        log.info("%s: removed %d temp file(s) left by an interrupted write", path.parent, n)
    return n


QUEUE_FRAMES = 8  # frames waiting for the encoder (8 x 2.7 MB at 720p, 8 x 6 MB at 1080p)


class VideoWriter:
    """H.264 video of BGR frames, with the audio of `audio_from` and format-level tags.

    `write` frames, then `finish()` (ffmpeg completes the temp file; returns its path, e.g.
    to hash it), then `commit()` (rename over `path`). `abort()`, or leaving a `with` block
    by an exception, stops ffmpeg and deletes the temp file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: float,
        *,
        crf: int = 18,
        preset: str = "superfast",
        audio_from: str | os.PathLike | None = None,
        audio_start: float = 0.0,
        audio_duration: float | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        import secrets
        import subprocess
        import tempfile

        self.path = Path(path)
        fmt = VIDEO_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise BadInput(f"{self.path}: video output must end in "
                           f"{', '.join(sorted(VIDEO_FORMATS))}")  # fmt: skip
        if preset not in X264_PRESETS:
            raise BadInput(f"preset {preset!r}: must be one of {', '.join(X264_PRESETS)}")
        self.width, self.height = width, height
        self.frame_bytes = width * height * 3
        self.frames = 0
        # a hidden name of our own that ffmpeg creates (with the usual permissions, which
        # mkstemp's 0600 would not give)
        self.tmp = (
            self.path.parent / f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial"
        )
        remove_dead_partials(self.path)
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
               "-framerate", fps_fraction(fps), "-i", "pipe:0"]  # fmt: skip
        self.audio = probe_audio(audio_from) if audio_from is not None else None
        if self.audio is not None:
            if audio_start > 0:
                cmd += ["-ss", f"{audio_start:.6f}"]
            if audio_duration is not None:
                cmd += ["-t", f"{audio_duration:.6f}"]
            cmd += ["-i", str(audio_from), "-map", "0:v:0", "-map", "1:a:0"]
        else:
            cmd += ["-map", "0:v:0"]
        if width % 2 or height % 2:
            # 4:2:0 chroma needs even sides: pad one black row/column rather than drop pixels
            log.warning("%dx%d has an odd side: the video is padded to even with black",
                        width, height)  # fmt: skip
            cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        cmd += ["-c:v", "libx264", "-crf", str(crf), "-preset", preset, "-pix_fmt", "yuv420p"]
        # say which conversion made the YUV (ffmpeg's default: BT.601, limited range), so that
        # players do not guess BT.709 for HD sizes and shift the colours
        cmd += ["-colorspace", "smpte170m", "-color_range", "tv"]
        if self.audio is not None:
            copy = fmt == "matroska" or self.audio in _MP4_AUDIO
            cmd += ["-c:a", "copy"] if copy else ["-c:a", "aac", "-b:a", "192k"]
            # no -shortest: it would drop video frames where the audio ends a little early;
            # the audio keeps its own length, as in the source (or audio_duration, if given)
        for key, value in (tags or {}).items():
            cmd += ["-metadata", f"{key}={value}"]
        if fmt in ("mp4", "mov"):
            # use_metadata_tags: keep custom keys (MP4 otherwise drops all but a fixed few)
            cmd += ["-movflags", "+faststart+use_metadata_tags"]
        cmd += ["-f", fmt, str(self.tmp)]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as ffmpeg)
        # own session: a Ctrl-C in the terminal reaches us, and we stop ffmpeg ourselves
        self.proc: subprocess.Popen | None = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr,
            start_new_session=True,
        )  # fmt: skip
        self.done = False
        # Frames reach ffmpeg from a thread of their own: the pipe takes 64 KiB at a time, so
        # a caller writing a 2.7 MB frame directly waits whenever x264 (a process of its own,
        # already encoding in parallel) is behind. The queue lets the caller go on computing
        # the next frames meanwhile; its bound keeps memory flat.
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._feed, name="faceswap-encode", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            if self._failed is not None:
                continue  # drain: the caller learns of the failure on its next call
            try:
                self.proc.stdin.write(memoryview(frame).cast("B"))
            except (BrokenPipeError, OSError, ValueError) as exc:
                self._failed = exc

    def _stop_feeding(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _error(self) -> str:
        self._stderr.seek(0)
        return _last_line(self._stderr.read())

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be ({self.height}, {self.width}, 3) uint8, "
                             f"not {frame.shape} {frame.dtype}")  # fmt: skip
        assert self.proc is not None and self.proc.stdin is not None
        if self._failed is not None:
            self._stop_feeding()
            self.proc.wait()
            raise BadInput(f"{self.path}: the video encoder stopped: {self._error()}") from None
        # a copy: the caller may reuse its buffer once write returns
        self._queue.put(np.array(frame, order="C", copy=True))
        self.frames += 1

    def finish(self) -> Path:
        """Close the stream and wait for ffmpeg; the complete video is at the returned path."""
        assert self.proc is not None and self.proc.stdin is not None
        self._stop_feeding()
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        rc = self.proc.wait()
        if rc != 0:
            msg = self._error()
            self.abort()
            raise BadInput(f"{self.path}: encoding failed: {msg}")
        self.done = True
        return self.tmp

    def commit(self) -> None:
        """Rename the finished temp file over the output path."""
        if not self.done:
            self.finish()
        os.replace(self.tmp, self.path)
        self._stderr.close()

    def abort(self) -> None:
        """Stop ffmpeg (if running) and delete the temp file; the output path is untouched."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stop_feeding()  # its pending write fails on the dead pipe, then it drains
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self.tmp.unlink(missing_ok=True)
        self._stderr.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
