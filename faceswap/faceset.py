"""The face-set on-disk format: a folder of aligned face images, a JSON index and a binary
sidecar of the per-face arrays.

    FACESET/
      faceset.json       the index (format below), replaced atomically on every save
      faceset.N.arrays   landmarks, matrices, boxes and embeddings, one fixed-size record a face
      faces/             aligned crops, <source-stem>_<hash8>_f<frame>_<n>.png|jpg
      rejected/          faces moved out by curation (never deleted); listed in the index

Index (version 2):
    {"format": "faceswap-faceset", "version": 2, "size": 256, "centering": "face",
     "image_format": "png", "created": iso, "updated": iso, "tool": "faceswap 0.1.0",
     "extract": {...resolved ExtractConfig...},
     "sources": {key: {path, sha256, kind, width, height, fps, frames, processed: [[a, b], ...]}},
     "arrays": {"file": "faceset.0.arrays", "rows": R},
     "faces": [face, ...], "rejected": [face + {"reason": str}, ...]}
A face holds its scalars (file, source, frame, scores, pose...) and "row", its record in the
arrays file. Version 1 (still read) held the arrays in the JSON as lists of numbers: parsing
tens of millions of JSON floats made a 20,000-face set take 5 s to load.

Arrays file: a 64-byte header (magic b"FSARRAY\0", uint32 version, uint32 record size, zeros),
then R little-endian records of RECORD (no pickle, nothing executable). It only grows: a save
appends the records of new or changed faces (cost proportional to what changed) and the index,
written after them, says how many rows are valid; rows no face uses any more are garbage until
a save finds them to outnumber the live ones and writes a compact new generation N+1 (the old
file is deleted after the index that names the new one is in place).

Loading validates everything (types, shapes, paths inside the folder, rows in range, finite
numbers) and never executes anything from the files. Writes go to a temp file, are fsynced and
renamed over the old index, so a crash at any moment leaves either the old or the new index,
both valid. A v1 set loads as is and is upgraded to v2 by its first save.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import re
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
VERSION = 2
READABLE_VERSIONS = (1, 2)
ARRAYS_MAGIC = b"FSARRAY\x00"
ARRAYS_VERSION = 1
ARRAYS_HEADER = 64
# one face's arrays; float32 landmarks are exact to 1/2000 px below 8192 px (v1 kept 1/1000)
RECORD = np.dtype(
    [
        ("landmarks", "<f4", (68, 2)),
        ("matrix", "<f8", (2, 3)),
        ("box", "<f8", (4,)),
        ("embedding", "<f4", (128,)),
        ("has_embedding", "u1"),
        ("pad", "V7"),
    ]
)
INDEX = "faceset.json"
FACES_DIR = "faces"
REJECTED_DIR = "rejected"
MAX_FACES = 5_000_000

log = logging.getLogger(__name__)


class FaceSetError(BadInput):
    """A face set that is missing, corrupt, from another version or otherwise unusable."""


@dataclass(eq=False)
class Face:
    """One aligned face and everything measured about it at extraction.

    box, landmarks, matrix and embedding are lists or numpy arrays (a loaded set gives
    read-only arrays: replace them, don't edit them in place)."""

    file: str  # relative to the face-set folder, e.g. "faces/clip_ab12cd34_f000012_0.png"
    source: str  # key into FaceSet.sources
    frame: int  # frame index in a video (0 for a still image)
    time: float | None  # seconds into the video (None for a still image)
    box: Any  # (4,) detector box x0, y0, x1, y1 in source-frame pixels
    score: float  # detector confidence
    landmarks: Any  # (68, 2) x, y in source-frame pixels
    matrix: Any  # (2, 3): source-frame pixels -> aligned-crop pixels
    yaw: float
    pitch: float
    roll: float
    blur: float  # variance of the Laplacian at 128 px; lower = blurrier
    residual: float  # landmark distance to the mean face, fraction of the crop side
    jitter: float  # landmark consistency: movement under a shifted box, in eye distances
    embedding: Any = None  # (128,) dlib identity embedding, or None
    embedding_frame: int | None = None  # frame the embedding was computed on (track sharing)
    track: int = 0  # face track within its source (same person in consecutive frames)
    reason: str | None = None  # why a rejected face was rejected

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Face):
            return NotImplemented
        for name in _FACE_FIELD_NAMES:
            a, b = getattr(self, name), getattr(other, name)
            if name in _ARRAYS:
                if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  (mutable, like the dataclass default)

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
_FACE_FIELD_NAMES = tuple(_FACE_FIELDS)


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
    # the arrays file the index names and how many of its rows are valid (None: not saved yet)
    _arrays: str | None = field(default=None, init=False, repr=False, compare=False)
    _rows: int = field(default=0, init=False, repr=False, compare=False)

    # ---- paths -------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.root / INDEX

    def root_of(self, face: Face) -> Path:
        """The folder `face.file` (and its stored mask) is relative to: the set's own root
        (a pool of sets, faceswap.data.facepool, answers with the face's member)."""
        return self.root

    def path_of(self, face: Face) -> Path:
        return self.root_of(face) / face.file

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
        """The index as plain data, as the last save wrote it (faces saved since carry no
        row)."""
        return json.loads(self.dumps())

    def dumps(self, rows: dict[int, int] | None = None) -> str:
        """The index as compact JSON text; `rows` maps id(face) -> arrays row for faces whose
        records are being written by this save. Faces are serialized once and cached, so
        saving a growing set during a long extraction costs only the new faces."""
        head = self._header()
        head["arrays"] = {"file": self._arrays, "rows": self._rows}
        if rows:
            head["arrays"]["rows"] = max(self._rows, 1 + max(rows.values()))
        head = json.dumps(head, separators=(",", ":"))
        rows = rows or {}
        faces = ",".join(_face_json(f, rows.get(id(f))) for f in self.faces)
        rejected = ",".join(_face_json(f, rows.get(id(f))) for f in self.rejected)
        return f'{head[:-1]},"faces":[{faces}],"rejected":[{rejected}]}}'

    def save(self) -> None:
        """Write the arrays of new or changed faces, then atomically replace the index
        (temp file in the same folder, fsync, rename). A v1 set becomes v2 here."""
        self.updated = _now()
        everyone = self.faces + self.rejected
        path = self.root / self._arrays if self._arrays else None
        token = str(path)
        stale = [f for f in everyone if not _row_is_current(f, token)]
        live = len(everyone) - len(stale)
        old = None
        if path is None or not path.is_file() or self._rows - live > _compact_at(live):
            # first save, a v1 set, or mostly garbage rows: a compact new generation
            gen = 0 if not self._arrays else int(self._arrays.split(".")[1]) + 1
            name = f"faceset.{gen}.arrays"
            atomic_write_bytes(self.root / name, _arrays_header() + _records(everyone).tobytes())
            rows = {id(f): i for i, f in enumerate(everyone)}
            old, self_arrays, self_rows = path, name, len(everyone)
        else:
            _append_records(path, self._rows, stale)
            rows = {id(f): self._rows + i for i, f in enumerate(stale)}
            self_arrays, self_rows = self._arrays, self._rows + len(stale)
        prev = (self._arrays, self._rows)
        self._arrays, self._rows = self_arrays, self_rows
        try:
            atomic_write_text(self.index_path, self.dumps(rows))
        except BaseException:
            self._arrays, self._rows = prev  # the index on disk still names the old rows
            raise
        new_token = str(self.root / self._arrays)
        for f in everyone:
            if id(f) in rows:
                f.__dict__["_row"] = (new_token, rows[id(f)], f.landmarks, f.matrix, f.box,
                                      f.embedding)  # fmt: skip
        if old is not None and old != self.root / self._arrays:
            with contextlib.suppress(OSError):
                old.unlink()


def _compact_at(live: int) -> int:
    """Garbage rows above which a save writes a compact new arrays file: more than the live
    ones (so the file is never over twice what it needs) and not for a few rows."""
    return max(live, 4096)


def _row_is_current(f: Face, token: str) -> bool:
    """The face's arrays are stored in row r of the arrays file `token` and were not replaced
    since (the arrays of a loaded face are read-only views, so they cannot change in place)."""
    r = f.__dict__.get("_row")
    return (
        r is not None
        and r[0] == token
        and r[2] is f.landmarks
        and r[3] is f.matrix
        and r[4] is f.box
        and r[5] is f.embedding
    )


def _arrays_header() -> bytes:
    head = ARRAYS_MAGIC + np.array([ARRAYS_VERSION, RECORD.itemsize], "<u4").tobytes()
    return head.ljust(ARRAYS_HEADER, b"\x00")


def _records(faces: list[Face]) -> np.ndarray:
    rec = np.zeros(len(faces), RECORD)
    if not faces:
        return rec
    rec["landmarks"] = np.asarray([np.asarray(f.landmarks, np.float64) for f in faces])
    rec["matrix"] = np.asarray([np.asarray(f.matrix, np.float64) for f in faces])
    rec["box"] = np.asarray([np.asarray(f.box, np.float64) for f in faces])
    for i, f in enumerate(faces):
        if f.embedding is not None:
            rec["embedding"][i] = np.asarray(f.embedding, np.float32)
            rec["has_embedding"][i] = 1
    return rec


def _append_records(path: Path, rows: int, faces: list[Face]) -> None:
    """Append the faces' records after the `rows` valid ones (a torn tail that a killed save
    left is cut first) and make them durable before the index that names them is written."""
    with open(path, "r+b") as fh:
        if fh.read(ARRAYS_HEADER) != _arrays_header():
            raise FaceSetError(f"{path}: not a face-set arrays file of this version")
        if faces or fh.seek(0, 2) != ARRAYS_HEADER + rows * RECORD.itemsize:
            fh.truncate(ARRAYS_HEADER + rows * RECORD.itemsize)
            fh.seek(0, 2)
            fh.write(_records(faces).tobytes())
            fh.flush()
            os.fsync(fh.fileno())


_ARRAYS = ("landmarks", "matrix", "embedding", "box")
_DECIMALS = {"landmarks": 3, "box": 3, "embedding": 5}


def _face_json(f: Face, row: int | None = None) -> str:
    """One face as v2 JSON (its scalars and its arrays row); cached on the face and redone
    when any of its scalar fields or its row changed."""
    if row is None:
        r = f.__dict__.get("_row")
        row = r[1] if r is not None else None
    scalars = (row, *(getattr(f, n) for n in _FACE_FIELD_NAMES if n not in _ARRAYS))
    cached = f.__dict__.get("_json")
    if cached is not None and cached[0] == scalars:
        return cached[1]
    d: dict[str, Any] = {}
    for name in _FACE_FIELD_NAMES:
        if name in _ARRAYS:
            continue
        v = getattr(f, name)
        if isinstance(v, float):
            v = round(v, 6) if math.isfinite(v) else None
        if name == "reason" and v is None:
            continue
        d[name] = v
    d["row"] = row
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


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write a file so that readers see either the old or the new content, never a mix.
    fsync=False leaves durability to the caller (who fsyncs a batch of files at once)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
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


# the usual face path, accepted without the slower general check (safe_relpath)
_PLAIN_FILE = re.compile(r"(?:faces|rejected)/(?!\.\.?$)[^/\\\x00]+")
_ARRAYS_NAME = re.compile(r"faceset\.[0-9]{1,9}\.arrays")
_V2_FIELDS = frozenset(n for n in _FACE_FIELD_NAMES if n not in _ARRAYS) | {"row"}
_V2_REQUIRED = frozenset(
    n for n, f in _FACE_FIELDS.items() if n not in _ARRAYS and f.default is dataclasses.MISSING
) | {"row"}
_SCALARS = ("score", "yaw", "pitch", "roll", "blur", "residual", "jitter")


def _load_arrays(root: Path, meta: Any) -> tuple[str, int, dict[str, list]]:
    """Read and check the arrays file the index names: (name, valid rows, per-row columns of
    read-only arrays, embedding None where a face has none)."""
    if not (
        isinstance(meta, dict)
        and isinstance(meta.get("file"), str)
        and _ARRAYS_NAME.fullmatch(meta["file"])
        and _int(meta.get("rows"))
        and 0 <= meta["rows"] <= MAX_FACES
    ):
        raise _bad(root, "arrays must name a faceset.N.arrays file and its row count")
    name, rows = meta["file"], meta["rows"]
    path = root / name
    need = ARRAYS_HEADER + rows * RECORD.itemsize
    try:
        with open(path, "rb") as fh:
            head = fh.read(ARRAYS_HEADER)
            if head != _arrays_header():
                raise FaceSetError(f"{path}: not a face-set arrays file (or another version)")
            rec = np.fromfile(fh, dtype=RECORD, count=rows)
    except FileNotFoundError:
        raise FaceSetError(f"{path}: the face set's arrays file is missing") from None
    except OSError as exc:
        raise FaceSetError(f"{path}: cannot read the arrays file ({exc.strerror})") from None
    if len(rec) != rows:
        raise FaceSetError(f"{path}: arrays file is shorter ({path.stat().st_size} bytes) than "
                           f"the {rows} rows the index names ({need} bytes)")  # fmt: skip
    lms, mat, box = (np.ascontiguousarray(rec[k]) for k in ("landmarks", "matrix", "box"))
    emb, has = np.ascontiguousarray(rec["embedding"]), rec["has_embedding"]
    finite = (
        np.isfinite(lms).all(axis=(1, 2))
        & np.isfinite(mat).all(axis=(1, 2))
        & np.isfinite(box).all(axis=1)
        & (np.isfinite(emb).all(axis=1) | (has == 0))
        & (has <= 1)
    )
    for a in (lms, mat, box, emb):
        a.flags.writeable = False
    # rows that are not finite stay out of reach: a face naming one is refused
    bad = set(np.flatnonzero(~finite).tolist())
    embs = [e if h else None for e, h in zip(emb, has.tolist(), strict=True)]
    return name, rows, {"landmarks": list(lms), "matrix": list(mat), "box": list(box),
                        "embedding": embs, "bad": bad}  # fmt: skip


def _faces_v2(items: Any, root: Path, what: str, sources: dict[str, Source], rows: int,
              columns: dict[str, Any], token: str) -> list[Face]:  # fmt: skip
    """Validate and build v2 faces; the same checks as v1, written for speed (50,000 faces
    in well under a second)."""
    out = []
    new = object.__new__
    lms, mat, box, emb, bad = (columns[k] for k in ("landmarks", "matrix", "box", "embedding",
                                                     "bad"))  # fmt: skip
    for i, d in enumerate(items):
        if type(d) is not dict:
            raise _bad(root, f"{what} {i} is not an object")
        keys = d.keys()
        if not keys <= _V2_FIELDS:
            raise _bad(root, f"{what} {i} has unknown field {sorted(keys - _V2_FIELDS)[0]!r}")
        if not _V2_REQUIRED <= keys:
            raise _bad(root, f"{what} {i} lacks {sorted(_V2_REQUIRED - keys)[0]!r}")
        file = d["file"]
        if not (
            type(file) is str
            and (_PLAIN_FILE.fullmatch(file) or safe_relpath(file, (FACES_DIR, REJECTED_DIR)))
        ):
            raise _bad(root, f"{what} {i} has an unsafe file path {str(file)[:80]!r}")
        src = d["source"]
        if type(src) is not str or src not in sources:
            raise _bad(root, f"{what} {i} names an unknown source {str(src)[:40]!r}")
        frame = d["frame"]
        if type(frame) is not int or frame < 0:
            raise _bad(root, f"{what} {i} has a bad frame number")
        row = d["row"]
        if type(row) is not int or not 0 <= row < rows:
            raise _bad(root, f"{what} {i} has a bad arrays row {row!r:.20}")
        if row in bad:
            raise _bad(root, f"{what} {i}: its arrays (row {row}) hold non-finite numbers")
        for key in _SCALARS:
            v = d[key]
            if not (type(v) is float or type(v) is int) or not math.isfinite(v):
                raise _bad(root, f"{what} {i}: {key} must be a finite number")
        for key in ("track", "embedding_frame"):
            v = d.get(key)
            if v is not None and type(v) is not int:
                raise _bad(root, f"{what} {i}: {key} must be an integer")
        if d.get("reason") is not None and type(d["reason"]) is not str:
            raise _bad(root, f"{what} {i}: reason must be text")
        t = d.get("time")
        if t is not None and (type(t) not in (int, float) or not math.isfinite(t)):
            raise _bad(root, f"{what} {i}: time must be a number or null")
        f = new(Face)
        fd = f.__dict__
        fd.update(d)
        del fd["row"]
        fd.setdefault("embedding_frame", None)
        fd.setdefault("track", 0)
        fd.setdefault("reason", None)
        fd.setdefault("time", None)
        fd["landmarks"], fd["matrix"], fd["box"] = lms[row], mat[row], box[row]
        fd["embedding"] = emb[row]
        fd["_row"] = (token, row, fd["landmarks"], fd["matrix"], fd["box"], fd["embedding"])
        out.append(f)
    return out


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
    if version not in READABLE_VERSIONS:
        raise _bad(root, f"face-set format version {version!r} is not supported by this "
                         f"faceswap (it reads versions 1 and {VERSION}); re-extract it")  # fmt: skip
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
    if version == 1:
        face_list = [_face_from(d, root, f"face {i}", sources) for i, d in enumerate(faces)]
        rejected_list = [
            _face_from(d, root, f"rejected face {i}", sources) for i, d in enumerate(rejected)
        ]
        arrays_name, rows = None, 0
    else:
        arrays_name, rows, columns = _load_arrays(root, data.get("arrays"))
        token = str(root / arrays_name)
        face_list = _faces_v2(faces, root, "face", sources, rows, columns, token)
        rejected_list = _faces_v2(rejected, root, "rejected face", sources, rows, columns, token)
    fs = FaceSet(
        root=root,
        size=size,
        centering=centering,
        image_format=fmt,
        extract=data.get("extract") if isinstance(data.get("extract"), dict) else {},
        sources=sources,
        faces=face_list,
        rejected=rejected_list,
        created=str(data.get("created", "")),
        updated=str(data.get("updated", "")),
    )
    fs._arrays, fs._rows = arrays_name, rows
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
