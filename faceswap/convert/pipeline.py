"""The conversion run: decode -> find faces -> smooth -> swap -> composite -> encode, streamed.

    reader thread      frames of the clip (OpenCV decode, GIL released)
    faces thread       faces per frame (face-set lookup, or extract's FaceFinder in worker
                       processes), Savitzky-Golay smoothing, identity check, crops for the model
    main thread        batched model inference (torch releases the GIL)
    composite pool     per frame: mask, colour, sharpen, un-warp, blend, watermark (cv2)
    writer thread      frames in order into ffmpeg (H.264 + the source's audio), PNGs or a
                       preview strip

Stages hand work on through bounded queues, so a long clip holds at most about `queue` frames
in memory whatever its length, and all stages run at once: the run goes at the pace of the
slowest stage, not of their sum. An error in any stage, or Ctrl-C, stops every stage and
deletes the temp output; the output path only ever holds a complete, labelled file.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from faceswap.config import to_dict
from faceswap.convert import provenance
from faceswap.convert.blend import blend, sharpen
from faceswap.convert.color import edge_match, match_color
from faceswap.convert.config import ConvertConfig
from faceswap.convert.faces import AlignmentsLookup, Detector, RawFace, Stopped
from faceswap.convert.forehead import PROBE_FRAMES, ForeheadChoice, choose_forehead, probe_count
from faceswap.convert.masks import Segmenter, blend_mask, work_size
from faceswap.convert.model import SwapModel, load_swap_model, sides
from faceswap.convert.select import IdentitySelector, faceset_references, photo_references
from faceswap.convert.sinks import Sink, open_sink, output_kind
from faceswap.convert.smoothing import TrackSmoother, eye_distance
from faceswap.convert.warp import crop_face, face_matrices, paste_box, resize_matrix, unwarp
from faceswap.errors import BadInput
from faceswap.extract.alignment import compose, transform_points
from faceswap.media import MediaSource, open_inputs

log = logging.getLogger(__name__)

# (frames written so far, frames to write in all or None)
Progress = Callable[[int, int | None], None]
_END = object()


@dataclass
class ConvertSummary:
    output: str
    kind: str  # video, images or preview
    sidecar: str
    source: str
    run: str
    checkpoint: str
    step: int
    direction: str
    device: str
    faces_from: str  # "alignments" or the detector + aligner
    frames: int = 0
    frames_swapped: int = 0
    frames_unchanged: int = 0
    faces_swapped: int = 0
    faces_other_identity: int = 0
    audio: str | None = None
    seconds: float = 0.0
    frames_per_second: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    forehead: float | None = None  # the reach used (chosen per clip with forehead_auto)
    forehead_seams: dict[str, float | None] | None = None  # --forehead auto: seam per reach


@dataclass
class FaceJob:
    """One face of one frame on its way through the model and back into the frame."""

    landmarks: np.ndarray  # (68, 2) smoothed, frame pixels
    m_model: np.ndarray  # (2, 3) frame -> model crop (R)
    crop: np.ndarray  # (R, R, 3) BGR uint8 model input
    swapped: np.ndarray | None = None  # (R, R, 3) BGR float32 in [0, 255]
    mask: np.ndarray | None = None  # (R, R) float32 learned mask
    seg: np.ndarray | None = None  # (W, W) float32 segmentation mask (mask seg*)


@dataclass
class FrameJob:
    index: int
    frame: np.ndarray  # (H, W, 3) BGR uint8, composited in place
    faces: list[FaceJob]
    original: np.ndarray | None = None  # a copy before the swap (preview only)


# ---- compositing (pure per frame) --------------------------------------------------------


def composite(frame: np.ndarray, faces: list[FaceJob], cfg: ConvertConfig, resolution: int
              ) -> np.ndarray:  # fmt: skip
    """Blend every swapped face into `frame` (modified in place and returned)."""
    h, w = frame.shape[:2]
    size = work_size(resolution)
    for f in faces:
        assert f.swapped is not None
        lm = transform_points(f.m_model, f.landmarks)  # (68, 2) in model-crop pixels
        alpha = blend_mask(
            cfg.mask, f.mask, lm, resolution, cfg.erode, cfg.feather, cfg.hull, f.seg, cfg.forehead
        )  # (W, W)
        # colour statistics over the pixels that will show: the mask at model resolution
        inside = cv2.resize(alpha, (resolution, resolution), interpolation=cv2.INTER_AREA) > 0.5
        ref = f.crop.astype(np.float32)
        face = match_color(cfg.color, f.swapped, ref, inside)
        face = edge_match(face, ref, inside, cfg.edge_color)
        face = np.clip(sharpen(face, cfg.sharpen) + 0.5, 0, 255).astype(np.uint8)  # (R, R, 3)
        m_work = compose(resize_matrix(resolution, size), f.m_model)
        # only the frame pixels under the mask: about half of the crop's square
        rect = cv2.boundingRect((alpha > 0).view(np.uint8))
        box = paste_box(m_work, size, w, h, rect=rect) if rect[2] > 0 else None
        if box is None:
            continue
        x0, y0, x1, y1 = box
        face_roi = unwarp(face, f.m_model, box, cv2.INTER_CUBIC)  # (y1-y0, x1-x0, 3) uint8
        alpha_roi = unwarp(alpha, m_work, box, cv2.INTER_LINEAR, cv2.BORDER_CONSTANT)
        roi = frame[y0:y1, x0:x1]
        roi[:] = blend(cfg.blend, roi, face_roi, alpha_roi)
    return frame


# ---- plumbing ------------------------------------------------------------------------------


class _Run:
    """Shared stop flag, first error, and busy seconds per stage."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.seconds: dict[str, float] = defaultdict(float)

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc
        self.stop.set()

    def add(self, stage: str, seconds: float) -> None:
        with self.lock:
            self.seconds[stage] += seconds

    def put(self, q: queue.Queue, item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise Stopped
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                pass

    def get(self, q: queue.Queue) -> Any:
        while True:
            if self.stop.is_set():
                raise Stopped
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                pass

    def thread(self, name: str, target: Callable[[], None]) -> threading.Thread:
        def body() -> None:
            try:
                target()
            except Stopped:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self.fail(exc)

        t = threading.Thread(target=body, name=f"convert-{name}", daemon=True)
        t.start()
        return t


# ---- the run ---------------------------------------------------------------------------------


def _selected(src: MediaSource, start: int, end: int | None, preview: int) -> list[int] | None:
    """Frame indices of a preview (evenly spread over the range); None = every frame."""
    if not preview:
        return None
    last = src.frames if end is None else min(end, src.frames or end)
    if not last or last <= start:
        raise BadInput("--preview needs the clip's frame count: give --frames START-END")
    return sorted(set(np.linspace(start, last - 1, preview).round().astype(int).tolist()))


def convert(
    clip: str | os.PathLike,
    run: str | os.PathLike,
    output: str | os.PathLike,
    cfg: ConvertConfig,
    *,
    alignments: str | os.PathLike | None = None,
    start: int = 0,
    end: int | None = None,
    preview: int = 0,
    identity: list[str] | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    random_init: bool = False,
    segmenter: Segmenter | None = None,
) -> ConvertSummary:
    """Swap the faces of `clip` with the model of `run`, write `output` and its label.

    Everything a user can get wrong is checked before anything is written (BadInput). The output
    appears only complete: video or folder are written under a temp name and renamed at the end,
    after the provenance sidecar. random_init: detector/aligner weights may be random (tests).
    segmenter: what the seg masks need (the caller loads it: faceswap.masks, which the library
    does not import); called with (B, W, W, 3) BGR uint8 crops, returns (B, W, W) masks.
    """
    t_start = time.perf_counter()
    created = provenance.now_utc()
    out = Path(output)
    kind = output_kind(out, preview)
    sources = open_inputs([str(clip)])
    src = sources[0]
    if len(sources) != 1 or src.kind != "video":
        raise BadInput(f"{clip}: not a video (convert takes one video clip)")
    _check_output(out, src, overwrite)
    if end is not None and end <= start:
        raise BadInput(f"--frames {start}-{end}: the end must come after the start")
    if src.frames and start >= src.frames:
        raise BadInput(
            f"--frames starts at {start}, after the clip's last frame ({src.frames - 1})"
        )
    wanted = _selected(src, start, end, preview)

    model = load_swap_model(run, cfg.direction, cfg.device, cfg.precision)
    if cfg.mask.startswith("seg"):
        if segmenter is None:
            raise BadInput(f"--mask {cfg.mask} needs a mask model (--mask-model, from faceswap "
                           "mask train)")  # fmt: skip
        if segmenter.centering != model.centering:
            raise BadInput(f"--mask-model: trained on {segmenter.centering}-centred faces, the "
                           f"swap model on {model.centering}-centred ones")  # fmt: skip
    else:
        segmenter = None
    lookup: AlignmentsLookup | None = None
    detector: Detector | None = None
    if alignments is not None:
        lookup = AlignmentsLookup(alignments, src)
        if lookup.count(start, end) == 0:
            raise BadInput(f"{alignments}: no faces of {src.path} in frames {start}-"
                           f"{'' if end is None else end} (a clip with no faces?)")  # fmt: skip
        frames_range = range(start, end if end is not None else (src.frames or start))
        n_uncovered = lookup.uncovered(frames_range)
        if n_uncovered:
            log.warning("%d frames of the range were never processed into %s: they pass "
                        "through unswapped", n_uncovered, alignments)  # fmt: skip
    else:
        detector = Detector(cfg.extract, random_init=random_init)
    selector = None
    if cfg.select == "identity":
        src_side = sides(cfg.direction)[0]
        refs = (photo_references(identity, cfg.extract) if identity
                else faceset_references(model.source_faceset, src_side))  # fmt: skip
        selector = IdentitySelector(refs, cfg.identity_threshold, cfg.embed_every)
    if model.learns_mask is False and cfg.mask not in ("hull", "seg", "seg+hull"):
        log.warning("the model learns no mask: using the landmark hull (mask %s asked)", cfg.mask)

    choice = None
    if cfg.forehead_auto:
        choice = _choose_forehead(src, start, end, cfg, model, lookup, detector)
        cfg = dataclasses.replace(cfg, forehead=choice.forehead)
    fps = src.fps or 25.0
    label = provenance.make_label(
        source_path=str(src.path), source_sha256=src.sha256, run=model.lineage(),
        settings={**to_dict(cfg), "alignments": None if alignments is None else str(alignments),
                  "identity": identity or None},
        frames={"start": start, "end": end, "preview": preview or None, "fps": fps,
                "width": src.width, "height": src.height},
        watermark=cfg.watermark, created=created, image=kind != "video",
    )  # fmt: skip
    audio_start = start / fps
    audio_len = None if end is None else (end - start) / fps
    sink = open_sink(kind, out, src, cfg, label, audio_start, audio_len)
    summary = ConvertSummary(
        output=str(out), kind=kind, sidecar=str(provenance.sidecar_path(out)),
        source=str(src.path), run=str(model.run_dir), checkpoint=str(model.checkpoint),
        step=model.step, direction=cfg.direction, device=str(model.device),
        faces_from="alignments" if detector is None else
        f"{detector.backends.detector} + {detector.backends.aligner}",
        audio=sink.audio, forehead=cfg.forehead if cfg.hull == "extended" else None,
        forehead_seams=None if choice is None else {f"{k:g}": v for k, v in choice.seams.items()},
    )  # fmt: skip
    try:
        _stream(src, start, end, wanted, cfg, model, lookup, detector, selector, sink, summary,
                progress, segmenter)  # fmt: skip
        if summary.faces_swapped == 0:
            if summary.faces_other_identity:
                near = selector.nearest if selector is not None else float("nan")
                raise BadInput(f"{clip}: none of the {summary.faces_other_identity} faces found "
                               f"is the model's identity (nearest distance {near:.2f} > "
                               f"{cfg.identity_threshold}); check --identity or raise "
                               "--identity-threshold")  # fmt: skip
            raise BadInput(f"{clip}: no face found in any of the {summary.frames} frames read "
                           "(a clip with no faces?); nothing was written")  # fmt: skip
        tmp = sink.finish()
        # the label first, then the output under its name: a crash between the two leaves a
        # stale label beside no output, never an output without its label
        provenance.write_sidecar(out, label, sink.sha256(tmp), kind)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    summary.seconds = time.perf_counter() - t_start
    summary.frames_per_second = summary.frames / max(summary.seconds, 1e-9)
    return summary


def _choose_forehead(src: MediaSource, start: int, end: int | None, cfg: ConvertConfig,
                     model: SwapModel, lookup: AlignmentsLookup | None,
                     detector: Detector | None) -> ForeheadChoice:  # fmt: skip
    """--forehead auto: swap the faces of a few frames spread over the range once
    (probe_count) and keep the reach whose pasted edge shows least (faceswap.convert.forehead).
    Only the extended hull has a reach, and a segmentation mask decides its own top edge: there
    the configured reach stays."""
    if cfg.hull != "extended" or cfg.mask in ("learned", "seg", "seg+learned"):
        log.info("--forehead auto: the mask %s (hull %s) has no forehead reach to choose; "
                 "keeping %g", cfg.mask, cfg.hull, cfg.forehead)  # fmt: skip
        return ForeheadChoice(cfg.forehead, {}, 0)
    if cfg.mask.startswith("seg"):
        log.info("--forehead auto: not with a segmentation mask; keeping %g", cfg.forehead)
        return ForeheadChoice(cfg.forehead, {}, 0)
    last = end if end is not None else src.frames
    if not last:
        last = start + 25 * PROBE_FRAMES  # the container does not say: the first seconds
    count = probe_count(last - start)
    wanted = set(np.linspace(start, last - 1, count).round().astype(int).tolist())
    frames = ((i, f) for i, _, f in src.iter_frames(start, max(wanted) + 1,
                                                     skip=lambda i: i not in wanted))  # fmt: skip
    if lookup is not None:
        found = ((i, f, lookup.faces(i)) for i, f in frames)
    else:
        assert detector is not None
        found = detector.run(frames, lambda: False)
    res = model.resolution
    probes: list[tuple[np.ndarray, list[FaceJob]]] = []
    for _, frame, raws in found:
        jobs = []
        for raw in raws:
            m_crop, m_model = face_matrices(raw.landmarks, model.crop_size, res, model.centering)
            jobs.append(FaceJob(raw.landmarks, m_model,
                                crop_face(frame, m_crop, model.crop_size, res)))  # fmt: skip
        if not jobs:
            continue
        swapped, masks = model.swap(np.stack([f.crop for f in jobs]))
        for k, f in enumerate(jobs):
            f.swapped = swapped[k]
            f.mask = masks[k] if masks is not None else None
        probes.append((frame, jobs))

    def render(i: int, reach: float) -> np.ndarray:
        frame, jobs = probes[i]
        return composite(frame.copy(), jobs, dataclasses.replace(cfg, forehead=reach), res)

    choice = choose_forehead(
        [(frame, eye_distance(jobs[0].landmarks)) for frame, jobs in probes], render,
        fallback=cfg.forehead,
    )  # fmt: skip
    seams = ", ".join(f"{k:g}: " + ("-" if v is None else f"{v:.2f}")
                      for k, v in choice.seams.items())  # fmt: skip
    log.info("--forehead auto: %g (seam over %d frames: %s)", choice.forehead, choice.frames,
             seams)  # fmt: skip
    return choice


def _check_output(out: Path, src: MediaSource, overwrite: bool) -> None:
    if out.resolve() == src.path.resolve():
        raise BadInput(f"{out}: is the input clip; choose another -o")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise BadInput(f"{out}: exists; pass --overwrite to replace it")
        if out.is_dir() != (out.suffix == ""):
            raise BadInput(f"{out}: exists and is a {'folder' if out.is_dir() else 'file'}; "
                           "--overwrite replaces only an output of the same kind")  # fmt: skip
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{out}: cannot write there ({parent} is not a writable folder)")


def _stream(src, start, end, wanted, cfg: ConvertConfig, model: SwapModel, lookup, detector,
            selector, sink: Sink, summary: ConvertSummary, progress,
            segmenter: Segmenter | None = None) -> None:  # fmt: skip
    r = _Run()
    res, crop_size, centering = model.resolution, model.crop_size, model.centering
    fps = src.fps or 25.0
    q_frames: queue.Queue = queue.Queue(maxsize=max(2, cfg.queue // 4))
    q_faces: queue.Queue = queue.Queue(maxsize=max(2, cfg.queue // 4))
    q_out: queue.Queue = queue.Queue(maxsize=max(2, cfg.queue // 2))
    if wanted is not None:
        total: int | None = len(wanted)
    elif src.frames:
        total = max(0, (src.frames if end is None else min(end, src.frames)) - start)
    else:
        total = None  # the container does not say
    wanted_set = set(wanted) if wanted is not None else None
    last = (max(wanted) + 1) if wanted else end

    def reader() -> None:
        skip = (lambda i: i not in wanted_set) if wanted_set else None
        frames = src.iter_frames(start, last, skip=skip)
        t0 = time.perf_counter()
        for idx, _, frame in frames:
            r.add("decode", time.perf_counter() - t0)
            r.put(q_frames, (idx, frame))
            t0 = time.perf_counter()
        r.put(q_frames, _END)

    def frames_in() -> Iterator[tuple[int, np.ndarray]]:
        while (item := r.get(q_frames)) is not _END:
            yield item

    def raw_faces() -> Iterator[tuple[int, np.ndarray, list[RawFace]]]:
        if lookup is not None:
            for idx, frame in frames_in():
                yield idx, frame, lookup.faces(idx)
        else:
            yield from detector.run(frames_in(), r.stop.is_set)

    def faces_stage() -> None:
        smoother = TrackSmoother(round(cfg.smooth * fps))

        def emit(idx: int, item: tuple[np.ndarray, list[RawFace]], tracked: list) -> None:
            t1 = time.perf_counter()
            t_identity = 0.0
            frame, raws = item
            jobs: list[FaceJob] = []
            rgb = None
            for raw, (track, lm) in zip(raws, tracked):
                if selector is not None:
                    t2 = time.perf_counter()
                    if raw.embedding is None and rgb is None:
                        rgb = np.ascontiguousarray(frame[:, :, ::-1])
                    keep = selector.keep(rgb, idx, track, raw.landmarks, raw.embedding)
                    t_identity += time.perf_counter() - t2
                    if not keep:
                        summary.faces_other_identity += 1
                        continue
                m_crop, m_model = face_matrices(lm, crop_size, res, centering)
                jobs.append(FaceJob(lm, m_model, crop_face(frame, m_crop, crop_size, res)))
            job = FrameJob(idx, frame, jobs, frame.copy() if wanted is not None else None)
            if selector is not None:
                r.add("identity", t_identity)
            r.add("align", time.perf_counter() - t1 - t_identity)
            r.put(q_faces, job)

        for idx, frame, raws in raw_faces():
            # the smoother holds frames back until their window is complete (~smooth seconds)
            for done in smoother.push(idx, (frame, raws), [f.landmarks for f in raws]):
                emit(*done)
        for done in smoother.flush():
            emit(*done)
        r.put(q_faces, _END)

    def writer() -> None:
        while (item := r.get(q_out)) is not _END:
            job, fut = item
            frame = fut.result()
            t0 = time.perf_counter()
            sink.write(job.index, frame, job.original)
            r.add("write", time.perf_counter() - t0)
            summary.frames += 1
            if job.faces:
                summary.frames_swapped += 1
                summary.faces_swapped += len(job.faces)
            else:
                summary.frames_unchanged += 1
            if progress:
                progress(summary.frames, total)

    def composite_job(job: FrameJob) -> np.ndarray:
        t0 = time.perf_counter()
        frame = composite(job.frame, job.faces, cfg, res) if job.faces else job.frame
        if sink.watermark is not None:
            sink.watermark.apply(frame)
        r.add("composite", time.perf_counter() - t0)
        return frame

    workers = cfg.workers or (os.cpu_count() or 1)
    pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="convert-composite")
    torch_threads = torch.get_num_threads()
    if model.device.type == "cpu":
        # decode, composite and the encoder need the other cores: a model spread over all of
        # them mostly spins waiting for a core (measured: 1 thread converts faster than 2 on a
        # 2-core machine, and with half the CPU time per face)
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // 2))
    threads = [r.thread("reader", reader), r.thread("faces", faces_stage),
               r.thread("writer", writer)]  # fmt: skip

    def flush(batch: list[FrameJob]) -> None:
        faces = [f for job in batch for f in job.faces]
        for i in range(0, len(faces), cfg.batch_size):
            part = faces[i : i + cfg.batch_size]
            t0 = time.perf_counter()
            swapped, masks = model.swap(np.stack([f.crop for f in part]))
            r.add("swap", time.perf_counter() - t0)
            for k, f in enumerate(part):
                f.swapped = swapped[k]
                f.mask = masks[k] if masks is not None else None
        if segmenter is not None:
            seg_faces(segmenter, batch, res, cfg.batch_size, r)
        for job in batch:
            r.put(q_out, (job, pool.submit(composite_job, job)))

    try:
        batch: list[FrameJob] = []
        n_faces = 0
        while (job := r.get(q_faces)) is not _END:
            batch.append(job)
            n_faces += len(job.faces)
            # a full batch of faces, or enough frames waiting (faceless stretches go through)
            if n_faces >= cfg.batch_size or len(batch) >= max(2, cfg.queue // 4):
                flush(batch)
                batch, n_faces = [], 0
        flush(batch)
        r.put(q_out, _END)
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    except Stopped:
        pass
    except BaseException as exc:
        r.fail(exc)
    finally:
        for t in threads:
            t.join()
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(torch_threads)
        summary.stage_seconds = {k: round(v, 3) for k, v in r.seconds.items()}
        if detector is not None:
            summary.stage_seconds["detect"] = round(detector.seconds, 3)
    if r.error is not None:
        raise r.error


def seg_faces(segmenter: Segmenter, batch: list[FrameJob], res: int, batch_size: int,
              r: _Run) -> None:  # fmt: skip
    """Segmentation masks of the batch's faces, from crops of the original frames at the
    working size (the model crop's framing, sharper than the model crop when R < W)."""
    size = work_size(res)
    pairs = [(job.frame, f) for job in batch for f in job.faces]
    for i in range(0, len(pairs), batch_size):
        part = pairs[i : i + batch_size]
        t0 = time.perf_counter()
        crops = np.stack([
            cv2.warpAffine(frame, compose(resize_matrix(res, size), f.m_model), (size, size),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            for frame, f in part])  # fmt: skip
        masks = segmenter(crops)
        for k, (_, f) in enumerate(part):
            f.seg = masks[k]
        r.add("seg", time.perf_counter() - t0)


def stage_rates(summary: ConvertSummary) -> dict[str, float]:
    """Frames per second each stage would manage alone (frames / its busy seconds)."""
    return {k: summary.frames / v for k, v in summary.stage_seconds.items() if v > 0}
