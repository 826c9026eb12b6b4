"""The extraction run: inputs -> chunks of frames -> FaceFinder (in worker processes) ->
face images + index, with resume, atomic saves and a summary.

Pipelining: the main process decodes frames and writes results while the workers detect, align,
measure and encode; `imap` keeps chunk order so the index is written in frame order.
Crash safety: a face's image is written (temp + rename) before the face enters the index, and
a frame is marked processed only with its faces; the index is saved atomically every few
seconds. A re-run skips processed frames and rewrites any orphan image under the same name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceswap import faceset as fsmod
from faceswap.config import ExtractConfig, to_dict
from faceswap.errors import BadInput, MissingBackend
from faceswap.extract import weights
from faceswap.extract.finder import Backends, FaceFinder, FoundFace, iou
from faceswap.extract.workers import Chunk, FrameSlots, WorkerError, WorkerPool, prefetch
from faceswap.media import MediaSource, open_inputs, read_image

log = logging.getLogger(__name__)

# (frames just done, faces kept so far, frames this run has to do in all)
Progress = Callable[[int, int, int], None]


@dataclass
class ExtractSummary:
    output: str
    detector: str
    aligner: str
    device: str
    sources: int = 0
    frames_total: int = 0
    frames_read: int = 0
    frames_resumed: int = 0
    frames_without_face: int = 0
    faces_found: int = 0
    faces_kept: int = 0
    faces_in_set: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # kept in rejected/, by reason
    identity_closest: float | None = None  # --identity: smallest distance to a reference seen
    dropped: dict[str, int] = field(default_factory=dict)  # detections not saved, by reason
    seconds: float = 0.0
    frames_per_second: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def resolve_backends(cfg: ExtractConfig, check_weights: bool = True) -> Backends:
    """Turn auto choices into concrete ones; log what was picked and why.

    torch is imported (seconds) only when a face-alignment backend could be used: the auto
    choice looks for the weight files first, so a CPU-only dlib run never pays for it.
    """
    fa_weights = {
        name: weights.find_face_alignment_weight(name, cfg.weights_dir) is not None
        for name in ("s3fd", "fan")
    }
    wants_torch = (
        cfg.detector == "s3fd"
        or cfg.aligner == "fan"
        or (cfg.detector == "auto" and fa_weights["s3fd"])
        or (cfg.aligner == "auto" and fa_weights["fan"])
    )
    cuda = wants_torch and cfg.device != "cpu" and cuda_available()
    device = cfg.device if cfg.device != "auto" else ("cuda" if cuda else "cpu")
    if device.startswith("cuda") and not cuda_available():
        raise MissingBackend("device cuda was asked for, but torch sees no CUDA GPU")
    picked = {}
    for kind, name, fa_name, fallback in (
        ("detector", cfg.detector, "s3fd", "dlib-hog"),
        ("aligner", cfg.aligner, "fan", "dlib"),
    ):
        if name != "auto":
            picked[kind] = name
            continue
        ok = cuda and fa_weights[fa_name]
        picked[kind] = fa_name if ok else fallback
        why = (
            "CUDA and weights found"
            if ok
            else ("no CUDA GPU" if fa_weights[fa_name] else f"no {fa_name} weights")
        )
        log.debug("%s auto -> %s (%s)", kind, picked[kind], why)  # the summary names them
    if check_weights:
        # an explicit face-alignment backend without its weights fails here, before any
        # output is created, with the line that says how to get them
        for name in {picked["detector"], picked["aligner"]} & {"s3fd", "fan"}:
            weights.face_alignment_weight(name, cfg.weights_dir)
    return Backends(picked["detector"], picked["aligner"], device)


# ---- identity references ----------------------------------------------------------------


def identity_references(paths: list[str], finder: FaceFinder) -> np.ndarray:
    """Embeddings of the largest face in each reference photo; BadInput if one has none."""
    refs = []
    for p in paths:
        bgr = read_image(p)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        dets = finder.detect(rgb)
        if not dets:
            # reference photos are often small crops: try again upsampled
            big = np.ascontiguousarray(np.repeat(np.repeat(rgb, 2, 0), 2, 1))
            dets = [d.scaled(0.5) for d in finder.detect(big)]
        if not dets:
            raise BadInput(f"{p}: no face found in this --identity reference photo")
        d = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        lms = finder.aligner.landmarks(rgb, [d.box])[0]
        assert finder.embedder is not None
        refs.append(finder.embedder.embed(rgb, lms))
    return np.stack(refs)


# ---- the run ------------------------------------------------------------------------------


def _check_writable(out: Path) -> None:
    target = out if out.exists() else out.parent
    while not target.exists():
        target = target.parent
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: output exists and is not a folder")
    if not target.is_dir():
        raise BadInput(f"{out}: cannot create the output folder, {target} is not a folder")
    if not os.access(target, os.W_OK | os.X_OK):
        raise BadInput(f"{out}: output folder is not writable")


def _check_output(out: Path) -> None:
    """Refuse an output we must not write into, before anything is written there."""
    _check_writable(out)
    if out.exists() and not fsmod.is_faceset(out) and any(p.name != ".lock" for p in out.iterdir()):
        raise BadInput(f"{out}: folder exists and is not a face set; choose another -o")


def with_image_format(cfg: ExtractConfig, out: Path) -> ExtractConfig:
    """Resolve image_format "auto": JPEG q95 for a new face set (~0.3 ms a face against ~3.5 ms
    for PNG, 4x less disk, and training on it measured within a few tenths of a percent of
    PNG's validation loss: docs/performance.md), the set's own format when adding to one."""
    if cfg.image_format != "auto":
        return cfg
    fmt = "jpg"
    if fsmod.is_faceset(out):
        # a broken index is reported, with its reason, when the set is opened
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            fmt = json.loads((out / fsmod.INDEX).read_text(encoding="utf-8"))["image_format"]
    return dataclasses.replace(cfg, image_format=fmt if fmt in fsmod.IMAGE_FORMATS else "jpg")


def open_output(out: Path, cfg: ExtractConfig, force: bool, sources: list[MediaSource]):
    """Load the face set to resume, or create it; refuse an incompatible one untouched."""
    if fsmod.is_faceset(out):
        fs = fsmod.load(out)
        if (fs.size, fs.centering) != (cfg.size, cfg.centering):
            raise BadInput(
                f"{out}: face set was made with size {fs.size} and centering {fs.centering}, "
                f"not {cfg.size}/{cfg.centering}; use another -o or the same settings"
            )
        if fs.image_format != cfg.image_format:
            raise BadInput(f"{out}: face set stores {fs.image_format} images, not "
                           f"{cfg.image_format}")  # fmt: skip
        if force:
            keys = {s.key for s in sources}
            drop = [f for f in fs.faces + fs.rejected if f.source in keys]
            fs.faces = [f for f in fs.faces if f.source not in keys]
            fs.rejected = [f for f in fs.rejected if f.source not in keys]
            for k in keys:
                fs.sources.pop(k, None)
            fs.save()  # the index forgets them first, so a crash here leaves no dangling entry
            for f in drop:
                fs.path_of(f).unlink(missing_ok=True)
        return fs
    try:
        fs = fsmod.create(out, cfg.size, cfg.centering, cfg.image_format)
    except OSError as exc:
        raise BadInput(f"{out}: cannot create the face set ({exc.strerror})") from None
    return fs


def _chunks(src: MediaSource, source: fsmod.Source, cfg: ExtractConfig,
            slots: FrameSlots | None = None) -> Iterator[Chunk]:  # fmt: skip
    """The selected frames of a source in chunks of consecutive frames; with `slots`, each
    chunk's frames are decoded into a slot of their own."""
    chunk = Chunk()
    last = -1
    shape = (src.height, src.width, 3)
    taken: int | None = None  # slot taken for the chunk that the frame being decoded starts

    def starts_chunk(idx: int) -> bool:
        # a gap (resumed frames) breaks tracking continuity: start a new chunk
        return not chunk or len(chunk) >= cfg.chunk or idx - last > cfg.every_nth

    def into(idx: int) -> np.ndarray | None:
        nonlocal taken
        assert slots is not None
        if starts_chunk(idx):
            slots.release(taken)  # its frame was never read (end of the video)
            taken = slots.acquire()
            return slots.buffer(taken, 0, shape)
        return slots.buffer(chunk.slot, len(chunk), shape)

    use_slots = slots is not None and src.kind == "video"
    for idx, t, frame in src.iter_frames(cfg.start_frame, cfg.end_frame, cfg.every_nth,
                                         skip=source.is_processed,
                                         into=into if use_slots else None):  # fmt: skip
        if starts_chunk(idx):
            if chunk:
                yield chunk
            chunk = Chunk()
            chunk.slot, taken = taken, None
        chunk.append((idx, t, frame))
        last = idx
    if slots is not None:
        slots.release(taken)
    if chunk:
        yield chunk


class _TrackLinker:
    """Gives tracks ids that are unique within a source and continue across chunk borders."""

    def __init__(self) -> None:
        self.next_id = 0
        self.last: dict[int, tuple[int, np.ndarray]] = {}  # global id -> (frame, box)

    def link(self, faces: list[FoundFace], every_nth: int) -> None:
        mapping: dict[int, int] = {}
        for f in sorted(faces, key=lambda f: f.frame):
            if f.track not in mapping:
                best, best_iou = None, 0.3
                for gid, (frame, box) in self.last.items():
                    if 0 < f.frame - frame <= every_nth and gid not in mapping.values():
                        v = iou(box, f.box)
                        if v > best_iou:
                            best, best_iou = gid, v
                if best is None:
                    best = self.next_id
                    self.next_id += 1
                mapping[f.track] = best
            f.track = mapping[f.track]
            self.last[f.track] = (f.frame, f.box)


class _DurableWrites:
    """Face images are written (temp + rename) without an fsync each, which cost more than
    encoding them; they are fsynced together just before the index that lists them is saved,
    by which time the kernel has mostly written them already. The index never names an image
    that a power cut could lose."""

    def __init__(self, fs: fsmod.FaceSet) -> None:
        self.fs = fs
        self.pending: list[Path] = []

    def write(self, path: Path, data: bytes) -> None:
        fsmod.atomic_write_bytes(path, data, fsync=False)
        self.pending.append(path)

    def save(self) -> None:
        for p in [*self.pending, *{p.parent for p in self.pending}]:  # files, then renames
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.pending.clear()
        self.fs.save()


def _selected_frames(src: MediaSource, cfg: ExtractConfig) -> range:
    """The frame indices this run processes in a source (frame counts of videos are
    container estimates, used for progress and resume counts only)."""
    if src.kind == "image":
        return range(1)
    n = src.frames or 0
    end = n if cfg.end_frame is None else min(cfg.end_frame, n)
    return range(cfg.start_frame, end, cfg.every_nth)


def _finite(v: float) -> float:
    """A degenerate face (e.g. all landmarks on one point) can measure NaN; store 0 instead
    so one odd face never makes the index unloadable."""
    v = float(v)
    return v if np.isfinite(v) else 0.0


def _face_record(fs: fsmod.FaceSet, key: str, f: FoundFace, folder: str) -> fsmod.Face:
    name = f"{key}_f{f.frame:06d}_{f.index}.{fs.image_format}"
    return fsmod.Face(
        file=f"{folder}/{name}",
        source=key,
        frame=f.frame,
        time=f.time,
        box=np.asarray(f.box, np.float64),
        score=_finite(f.score),
        landmarks=np.asarray(f.landmarks, np.float64),
        matrix=np.asarray(f.matrix, np.float64),
        yaw=_finite(f.yaw),
        pitch=_finite(f.pitch),
        roll=_finite(f.roll),
        blur=_finite(f.blur),
        residual=_finite(f.residual),
        jitter=_finite(f.jitter),
        embedding=None if f.embedding is None else np.asarray(f.embedding, np.float32),
        embedding_frame=f.embedding_frame,
        track=f.track,
        reason=f.rejected,
    )


def extract(
    inputs: list[str],
    output: str | os.PathLike,
    cfg: ExtractConfig,
    *,
    identity: list[str] | None = None,
    force: bool = False,
    progress: Progress | None = None,
    random_init: bool = False,
) -> ExtractSummary:
    """Run extraction. Raises BadInput (nothing written) for bad inputs; KeyboardInterrupt
    after saving a valid, resumable face set."""
    t_start = time.perf_counter()
    out = Path(output)
    cfg = with_image_format(cfg, out)
    backends = resolve_backends(cfg, check_weights=not random_init)
    n_workers = worker_count(cfg, backends)

    def start_pool(refs) -> WorkerPool:
        return WorkerPool(n_workers, (cfg, backends, refs, random_init), preload=True,
                          frame_slots=_frame_slots(n_workers), frames_per_slot=cfg.chunk)  # fmt: skip

    pool = None
    if n_workers > 1 and not identity:
        # started first: the workers load their models while the inputs are probed and hashed
        pool = start_pool(None)
    try:
        sources = open_inputs(inputs)
        if identity and not cfg.embed:
            log.info("--identity needs embeddings: computing them although embed is off")
        main_finder = None
        refs = None
        if identity:
            main_finder = FaceFinder(cfg, backends, None, random_init)
            refs = identity_references(identity, main_finder)
            if n_workers > 1:
                pool = start_pool(refs)
        _check_output(out)
        with fsmod.writer_lock(out):
            return _extract_locked(sources, out, cfg, backends, refs, main_finder, force,
                                   progress, random_init, t_start, inputs, pool)  # fmt: skip
    except WorkerError as exc:
        raise WorkerError(f"extract stopped: {exc}; the face set keeps what was saved, "
                          "run again to resume") from None  # fmt: skip
    finally:
        if pool is not None:
            pool.close()


def _in_flight(n_workers: int) -> int:
    """Chunks given to the workers at once: one each. Frames reach them through shared memory
    at no cost, so the next chunk is handed over as soon as a result is back; every chunk more
    in flight is ~90 MB (720p) more memory to fault in."""
    return n_workers


def _frame_slots(n_workers: int) -> int:
    """Slots to decode into: the chunks in flight, the one decoded ahead (prefetch depth 1),
    the one being decoded. Memory stays flat at that many chunks of frames."""
    return _in_flight(n_workers) + 2


def worker_count(cfg: ExtractConfig, backends: Backends) -> int:
    """Worker processes for this run: one per core for the CPU backends; torch backends
    batch on one device in-process (extra processes only fight over it)."""
    if backends.device != "cpu" or backends.detector == "s3fd" or backends.aligner == "fan":
        return 1
    return cfg.workers or (os.cpu_count() or 1)


def _extract_locked(sources, out, cfg, backends, refs, main_finder, force, progress,
                    random_init, t_start, inputs, pool) -> ExtractSummary:  # fmt: skip
    fs = open_output(out, cfg, force, sources)
    fs.extract = to_dict(cfg)
    (out / fsmod.REJECTED_DIR).mkdir(exist_ok=True)

    summary = ExtractSummary(str(out), backends.detector, backends.aligner, backends.device)
    summary.sources = len(sources)
    rejected: Counter = Counter()
    dropped: Counter = Counter()
    stage: dict[str, float] = defaultdict(float)

    if pool is not None:
        slots = pool.shared
        run = lambda chunks: pool.imap(prefetch(chunks, depth=1), _in_flight(pool.n))  # noqa: E731
    else:
        finder = main_finder or FaceFinder(cfg, backends, refs, random_init)
        finder.refs = refs
        # the chunk being processed, one decoded ahead, one being decoded
        slots = FrameSlots(3, cfg.chunk)

        def process_here(chunk: Chunk):
            try:
                return finder.process(chunk)
            finally:
                slots.release(chunk.slot)

        run = lambda chunks: map(process_here, prefetch(chunks, depth=1))  # noqa: E731

    for src in sources:
        fs.sources.setdefault(src.key, fsmod.Source(
            path=str(src.path), sha256=src.sha256, kind=src.kind, width=src.width,
            height=src.height, fps=src.fps, frames=src.frames,
        ))  # fmt: skip
        selected = _selected_frames(src, cfg)
        summary.frames_total += len(selected)
        summary.frames_resumed += sum(1 for i in selected if fs.sources[src.key].is_processed(i))
    todo = summary.frames_total - summary.frames_resumed
    if progress:
        progress(0, 0, todo)

    durable = _DurableWrites(fs)
    last_save = time.monotonic()
    index_saved = True  # False once a save failed: the finally below does not try again
    try:
        for src in sources:
            key = src.key
            source = fs.sources[key]
            linker = _TrackLinker()
            if fs.faces or fs.rejected:
                linker.next_id = 1 + max(
                    (f.track for f in fs.faces + fs.rejected if f.source == key), default=-1
                )
            t_decode = time.perf_counter()
            for result in run(_chunks(src, source, cfg, slots)):
                stage["decode+transfer(main)"] += time.perf_counter() - t_decode
                for k, v in result.seconds.items():
                    stage[k] += v
                t0 = time.perf_counter()
                linker.link(result.faces, cfg.every_nth)
                for reason, n in result.dropped.items():
                    dropped[reason] += n
                with_face = {f.frame for f in result.faces}
                summary.frames_without_face += sum(1 for i in result.frames if i not in with_face)
                for f in result.faces:
                    summary.faces_found += 1
                    if f.identity_distance is not None:
                        summary.identity_closest = min(
                            f.identity_distance, summary.identity_closest or math.inf
                        )
                    folder = fsmod.REJECTED_DIR if f.rejected else fsmod.FACES_DIR
                    rec = _face_record(fs, key, f, folder)
                    durable.write(fs.path_of(rec), f.image)
                    if f.rejected:
                        rejected[f.rejected] += 1
                        fs.rejected.append(rec)
                    else:
                        summary.faces_kept += 1
                        fs.faces.append(rec)
                source.mark_processed(result.frames)
                summary.frames_read += len(result.frames)
                stage["write"] += time.perf_counter() - t0
                if time.monotonic() - last_save > cfg.save_every:
                    durable.save()
                    last_save = time.monotonic()
                if progress:
                    progress(len(result.frames), summary.faces_kept, todo)
                t_decode = time.perf_counter()
    except OSError as exc:
        # a full disk often refuses the index save too: then the index on disk stays as it
        # was at the last save (valid), and the next run redoes the frames after it
        try:
            durable.save()
            kept = "progress so far is saved"
        except OSError:
            index_saved = False
            kept = "the face set is as it was at its last save; run again to go on"
        what = "disk full" if exc.errno == errno.ENOSPC else "cannot write"
        raise BadInput(f"{out}: {what} while saving faces ({exc.strerror or exc}); "
                       f"{kept}") from None  # fmt: skip
    finally:
        # runs on success, Ctrl-C and errors alike: what was written is indexed
        try:
            if index_saved:
                durable.save()
        except OSError:
            log.error("could not save the face set index in %s", out)
    if summary.frames_read and not summary.faces_found and not summary.frames_resumed:
        raise BadInput(
            f"no face found in any of the {summary.frames_read} frames read from "
            f"{', '.join(inputs)}; try --upsample 1, a smaller --min-size or --detector s3fd"
        )
    summary.rejected = dict(rejected)
    summary.dropped = dict(dropped)
    summary.faces_in_set = len(fs.faces)
    summary.seconds = time.perf_counter() - t_start
    summary.frames_per_second = summary.frames_read / max(summary.seconds, 1e-9)
    summary.stage_seconds = {k: round(v, 3) for k, v in stage.items()}
    return summary
