"""The face-set on-disk format: a folder of aligned face images plus one JSON index.

    FACESET/
      faceset.json      the index (format below), replaced atomically on every save
      faces/            aligned crops, <source-stem>_<hash8>_f<frame>_<n>.png|jpg
      rejected/         faces moved out by curation (never deleted); listed in the index

Index (version 1):
    {"format": "faceswap-faceset", "version": 1, "size": 256, "centering": "face",
     "image_format": "png", "created": iso, "updated": iso, "tool": "faceswap 0.1.0",
     "extract": {...resolved ExtractConfig...},
     "sources": {key: {path, sha256, kind, width, height, fps, frames, processed: [[a, b], ...]}},
     "faces": [face, ...], "rejected": [face + {"reason": str}, ...]}

Loading validates everything (types, shapes, paths inside the folder) and never executes
anything from the file. Writes go to a temp file, are fsynced and renamed over the old index,
so a crash at any moment leaves either the old or the new index, both valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from faceswap import __version__
from faceswap.config import CENTERINGS, IMAGE_FORMATS
from faceswap.errors import BadInput
from faceswap.media import image_header_size

FORMAT = "faceswap-faceset"
VERSION = 1
INDEX = "faceset.json"
FACES_DIR = "faces"
REJECTED_DIR = "rejected"
MAX_FACES = 5_000_000

log = logging.getLogger(__name__)


class FaceSetError(BadInput):
    """A face set that is missing, corrupt, from another version or otherwise unusable."""


@dataclass
class Face:
    """One aligned face and everything measured about it at extraction."""

    file: str  # relative to the face-set folder, e.g. "faces/clip_ab12cd34_f000012_0.png"
    source: str  # key into FaceSet.sources
    frame: int  # frame index in a video (0 for a still image)
    time: float | None  # seconds into the video (None for a still image)
    box: list[float]  # detector box x0, y0, x1, y1 in source-frame pixels
    score: float  # detector confidence
    landmarks: list[list[float]]  # 68 x (x, y) in source-frame pixels
    matrix: list[list[float]]  # 2x3: source-frame pixels -> aligned-crop pixels
    yaw: float
    pitch: float
    roll: float
    blur: float  # variance of the Laplacian at 128 px; lower = blurrier
    residual: float  # landmark distance to the mean face, fraction of the crop side
    jitter: float  # landmark consistency: movement under a shifted box, in eye distances
    embedding: list[float] | None = None  # 128-D dlib identity embedding
    embedding_frame: int | None = None  # frame the embedding was computed on (track sharing)
    track: int = 0  # face track within its source (same person in consecutive frames)
    reason: str | None = None  # why a rejected face was rejected

    @property
    def name(self) -> str:
        return PurePosixPath(self.file).stem

    def landmarks_array(self) -> np.ndarray:
        return np.asarray(self.landmarks, dtype=np.float64)

    def matrix_array(self) -> np.ndarray:
        return np.asarray(self.matrix, dtype=np.float64)

    def aligned_landmarks(self) -> np.ndarray:
        """The 68 landmarks in aligned-crop pixels."""
        m = self.matrix_array()
        return self.landmarks_array() @ m[:, :2].T + m[:, 2]


_FACE_FIELDS = {f.name: f for f in dataclasses.fields(Face)}


@dataclass
class Source:
    """One input file that faces were taken from."""

    path: str
    sha256: str
    kind: str  # "video" or "image"
    width: int
    height: int
    fps: float | None = None
    frames: int | None = None
    processed: list[list[int]] = field(default_factory=list)  # [[start, end), ...] frames done

    def is_processed(self, frame: int) -> bool:
        return any(a <= frame < b for a, b in self.processed)

    def mark_processed(self, frames: Iterable[int]) -> None:
        spans = [list(s) for s in self.processed] + [[f, f + 1] for f in frames]
        self.processed = merge_spans(spans)


def merge_spans(spans: list[list[int]]) -> list[list[int]]:
    """Union of half-open [a, b) integer spans, sorted and merged."""
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class FaceSet:
    """A face set in memory. `root` is its folder; paths in faces are relative to it."""

    root: Path
    size: int
    centering: str
    image_format: str = "png"
    extract: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    faces: list[Face] = field(default_factory=list)
    rejected: list[Face] = field(default_factory=list)
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)

    # ---- paths -------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.root / INDEX

    def path_of(self, face: Face) -> Path:
        return self.root / face.file

    # ---- reading -----------------------------------------------------------------------
    def load_image(self, face: Face) -> np.ndarray:
        """The aligned crop as BGR uint8 (size, size, 3)."""
        path = self.path_of(face)
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError:
            raise FaceSetError(f"{path}: face image is missing or unreadable") from None
        dims = image_header_size(data)
        if dims is not None and dims != (self.size, self.size):
            # said before decoding: a tiny file can declare a huge image
            raise FaceSetError(f"{path}: face image is {dims[0]}x{dims[1]}, "
                               f"the face set says {self.size}x{self.size}")  # fmt: skip
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if img is None:
            raise FaceSetError(f"{path}: face image is missing or unreadable")
        if img.shape[:2] != (self.size, self.size):
            raise FaceSetError(f"{path}: face image is {img.shape[1]}x{img.shape[0]}, "
                               f"the face set says {self.size}x{self.size}")  # fmt: skip
        return img

    def embeddings(self) -> tuple[np.ndarray, list[int]]:
        """(K, 128) embeddings of the faces that have one, and their indices in self.faces."""
        idx = [i for i, f in enumerate(self.faces) if f.embedding is not None]
        if not idx:
            return np.zeros((0, 128), np.float32), []
        return np.asarray([self.faces[i].embedding for i in idx], np.float32), idx

    def fingerprint(self) -> str:
        """Short hash of the face list (which faces, from which sources) for run metadata."""
        import hashlib

        h = hashlib.sha256()
        for f in self.faces:
            h.update(f.file.encode())
            h.update(self.sources[f.source].sha256.encode())
        return h.hexdigest()[:16]

    # ---- writing -----------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "tool": f"faceswap {__version__}",
            "size": self.size,
            "centering": self.centering,
            "image_format": self.image_format,
            "created": self.created,
            "updated": self.updated,
            "extract": self.extract,
            "sources": {k: dataclasses.asdict(s) for k, s in self.sources.items()},
        }

    def to_json(self) -> dict[str, Any]:
        """The index as plain data (what `save` writes)."""
        return json.loads(self.dumps())

    def dumps(self) -> str:
        """The index as compact JSON text. Faces are serialized once and cached, so saving a
        growing set during a long extraction costs only the new faces."""
        head = json.dumps(self._header(), separators=(",", ":"))
        faces = ",".join(_face_json(f) for f in self.faces)
        rejected = ",".join(_face_json(f) for f in self.rejected)
        return f'{head[:-1]},"faces":[{faces}],"rejected":[{rejected}]}}'

    def save(self) -> None:
        """Atomically replace the index (temp file in the same folder, fsync, rename)."""
        self.updated = _now()
        atomic_write_text(self.index_path, self.dumps())


_ARRAYS = ("landmarks", "matrix", "embedding", "box")
_DECIMALS = {"landmarks": 3, "box": 3, "embedding": 5}


def _face_json(f: Face) -> str:
    """One face as JSON, rounded (landmarks to 1/1000 px, embeddings to 1e-5) to keep the
    index small; cached on the face and redone when any of its scalar fields changed."""
    scalars = tuple(getattr(f, n) for n in _FACE_FIELDS if n not in _ARRAYS)
    cached = f.__dict__.get("_json")
    if cached is not None and cached[0] == scalars:
        return cached[1]
    d: dict[str, Any] = {}
    for name in _FACE_FIELDS:
        v = getattr(f, name)
        if name in _ARRAYS and v is not None:
            arr = np.asarray(v, dtype=np.float64)
            v = np.round(arr, _DECIMALS[name]).tolist() if name in _DECIMALS else arr.tolist()
        elif isinstance(v, float):
            v = round(v, 6) if math.isfinite(v) else None
        if name == "reason" and v is None:
            continue
        d[name] = v
    text = json.dumps(d, separators=(",", ":"))
    f.__dict__["_json"] = (scalars, text)
    return text


def _file_mode() -> int:
    """0666 less the process umask: the mode open() would give a new file (mkstemp gives 0600,
    which would hide face sets and outputs from the other users of a shared machine)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see either the old or the new content, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ---- loading and validation -------------------------------------------------------------


def _bad(root: Path, msg: str) -> FaceSetError:
    return FaceSetError(f"{root / INDEX}: {msg}")


def _int(x: Any) -> bool:
    """An integer (JSON true/false are not numbers here)."""
    return isinstance(x, int) and not isinstance(x, bool)


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _matrix(x: Any, rows: int, cols: int) -> bool:
    """x is a rows x cols nested list of finite numbers (no bools, strings or ragged rows)."""
    if not isinstance(x, list) or len(x) != rows:
        return False
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError):
        return False
    return arr.shape == (rows, cols) and arr.dtype.kind in "if" and bool(np.isfinite(arr).all())


def safe_relpath(rel: Any, allowed_dirs: tuple[str, ...]) -> bool:
    """A face file path is `faces/<name>` or `rejected/<name>`: no '..', no absolute paths."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        return False
    p = PurePosixPath(rel)
    return (
        not p.is_absolute()
        and len(p.parts) == 2
        and p.parts[0] in allowed_dirs
        and p.parts[1] not in ("", ".", "..")
    )


def _face_from(d: Any, root: Path, where: str, sources: dict[str, Source]) -> Face:
    if not isinstance(d, dict):
        raise _bad(root, f"{where} is not an object")
    unknown = set(d) - set(_FACE_FIELDS)
    if unknown:
        raise _bad(root, f"{where} has unknown field {sorted(unknown)[0]!r}")
    missing = [n for n, f in _FACE_FIELDS.items()
               if n not in d and f.default is dataclasses.MISSING]  # fmt: skip
    if missing:
        raise _bad(root, f"{where} lacks {missing[0]!r}")
    if not safe_relpath(d["file"], (FACES_DIR, REJECTED_DIR)):
        raise _bad(root, f"{where} has an unsafe file path {str(d['file'])[:80]!r}")
    if not isinstance(d["source"], str) or d["source"] not in sources:
        raise _bad(root, f"{where} names an unknown source {str(d['source'])[:40]!r}")
    if not (isinstance(d["frame"], int) and not isinstance(d["frame"], bool) and d["frame"] >= 0):
        raise _bad(root, f"{where} has a bad frame number")
    if not _matrix([d["box"]] if isinstance(d["box"], list) else None, 1, 4):
        raise _bad(root, f"{where} has a bad box")
    if not _matrix(d["landmarks"], 68, 2):
        raise _bad(root, f"{where}: landmarks must be 68 x 2 numbers")
    if not _matrix(d["matrix"], 2, 3):
        raise _bad(root, f"{where}: matrix must be 2 x 3 numbers")
    for key in ("score", "yaw", "pitch", "roll", "blur", "residual", "jitter"):
        if not _num(d[key]):
            raise _bad(root, f"{where}: {key} must be a finite number")
    emb = d.get("embedding")
    if emb is not None and not _matrix([emb] if isinstance(emb, list) else emb, 1, 128):
        raise _bad(root, f"{where}: embedding must be 128 numbers or null")
    for key in ("track", "embedding_frame"):
        v = d.get(key)
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool)):
            raise _bad(root, f"{where}: {key} must be an integer")
    if d.get("reason") is not None and not isinstance(d["reason"], str):
        raise _bad(root, f"{where}: reason must be text")
    if d.get("time") is not None and not _num(d["time"]):
        raise _bad(root, f"{where}: time must be a number or null")
    return Face(**d)


def _source_from(d: Any, root: Path, key: str) -> Source:
    where = f"source {key[:40]!r}"
    names = {f.name for f in dataclasses.fields(Source)}
    if not isinstance(d, dict) or set(d) - names or not {"path", "sha256", "kind"} <= set(d):
        raise _bad(root, f"{where} is malformed")
    if not all(isinstance(d.get(k), str) for k in ("path", "sha256", "kind")):
        raise _bad(root, f"{where}: path, sha256 and kind must be text")
    if d["kind"] not in ("video", "image"):
        raise _bad(root, f"{where}: kind must be video or image")
    if d.get("fps") is not None and not (_num(d["fps"]) and d["fps"] > 0):
        raise _bad(root, f"{where}: fps must be a positive number")
    if d.get("frames") is not None and not (_int(d["frames"]) and d["frames"] >= 0):
        raise _bad(root, f"{where}: frames must be a non-negative integer")
    for k in ("width", "height"):
        if not (_int(d.get(k)) and 0 < d[k] <= 65536):
            raise _bad(root, f"{where}: {k} must be a positive integer up to 65536")
    spans = d.get("processed", [])
    if not (
        isinstance(spans, list)
        and all(
            isinstance(s, list) and len(s) == 2 and _int(s[0]) and _int(s[1]) and 0 <= s[0] < s[1]
            for s in spans
        )
    ):
        raise _bad(root, f"{where}: processed must be a list of [start, end) frame spans, "
                         "0 <= start < end")  # fmt: skip
    return Source(**d)


def is_faceset(root: str | os.PathLike) -> bool:
    return (Path(root) / INDEX).is_file()


def load(root: str | os.PathLike) -> FaceSet:
    """Load and validate a face set; any problem is one FaceSetError naming the file."""
    root = Path(root)
    path = root / INDEX
    if not root.is_dir():
        raise FaceSetError(f"{root}: face set folder does not exist")
    if not path.is_file():
        raise FaceSetError(f"{root}: not a face set (no {INDEX}); create one with faceswap extract")
    if path.stat().st_size > 2_000_000_000:
        raise _bad(root, "index is too large")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise _bad(root, "index is not valid JSON (corrupt?)") from None
    except OSError as exc:
        raise _bad(root, f"cannot read the index ({exc.strerror})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _bad(root, "not a faceswap face-set index")
    version = data.get("version")
    if version != VERSION:
        raise _bad(root, f"face-set format version {version!r} is not supported by this "
                         f"faceswap (it reads version {VERSION}); re-extract it")  # fmt: skip
    size, centering, fmt = data.get("size"), data.get("centering"), data.get("image_format")
    if not (isinstance(size, int) and 16 <= size <= 4096):
        raise _bad(root, f"size {size!r} is out of range")
    if centering not in CENTERINGS:
        raise _bad(root, f"unknown centering {centering!r}")
    if fmt not in IMAGE_FORMATS:
        raise _bad(root, f"unknown image format {fmt!r}")
    srcs, faces, rejected = data.get("sources", {}), data.get("faces"), data.get("rejected", [])
    if not isinstance(srcs, dict) or not isinstance(faces, list) or not isinstance(rejected, list):
        raise _bad(root, "sources/faces/rejected have the wrong type")
    if len(faces) + len(rejected) > MAX_FACES:
        raise _bad(root, "too many faces")
    sources = {str(k): _source_from(v, root, str(k)) for k, v in srcs.items()}
    fs = FaceSet(
        root=root,
        size=size,
        centering=centering,
        image_format=fmt,
        extract=data.get("extract") if isinstance(data.get("extract"), dict) else {},
        sources=sources,
        faces=[_face_from(d, root, f"face {i}", sources) for i, d in enumerate(faces)],
        rejected=[
            _face_from(d, root, f"rejected face {i}", sources) for i, d in enumerate(rejected)
        ],  # fmt: skip
        created=str(data.get("created", "")),
        updated=str(data.get("updated", "")),
    )
    seen: set[str] = set()
    for f in fs.faces + fs.rejected:
        if f.file in seen:
            raise _bad(root, f"face file {f.file!r} is listed twice")
        seen.add(f.file)
    return fs


@contextlib.contextmanager
def writer_lock(root: str | os.PathLike) -> Iterator[None]:
    """Exclusive right to change a face set, so two extracts (or an extract and a curation)
    never interleave their saves. Released when the process exits, even on kill -9."""
    import fcntl

    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fh = open(root / ".lock", "w")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise FaceSetError(f"{root}: cannot write here ({exc.strerror})") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FaceSetError(
                f"{root}: another faceswap process is writing to this face set; wait for it "
                "to finish or stop it"
            ) from None
        try:
            remove_stale_temps(root)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_stale_temps(root: Path) -> int:
    """Delete the temp files (`.NAME.XXXXXXXX.tmp`, see atomic_write_bytes) that a writer killed
    mid-write left in the set. Called with the writer lock held, so none is still being
    written. Returns how many went."""
    n = 0
    for folder in (root, root / FACES_DIR, root / REJECTED_DIR):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
                with contextlib.suppress(OSError):
                    p.unlink()
                    n += 1
    if n:
        log.info("%s: removed %d temp file(s) left by an interrupted write", root, n)
    return n


def create(root: str | os.PathLike, size: int, centering: str, image_format: str) -> FaceSet:
    """A new, empty face set (saved at once so the folder is a valid face set from the start)."""
    root = Path(root)
    (root / FACES_DIR).mkdir(parents=True, exist_ok=True)
    fs = FaceSet(root=root, size=size, centering=centering, image_format=image_format)
    fs.save()
    return fs
