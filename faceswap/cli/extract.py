"""`faceswap extract`: videos and images to a face set."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from faceswap.cli.common import (
    DETECTION_FLAGS,
    Command,
    add_detection_options,
    emit,
    frame_range,
    progress_bar,
)
from faceswap.errors import BadInput

log = logging.getLogger("faceswap")

EXTRACT_EXAMPLES = """examples:
  faceswap extract interview.mp4 -o faces/alice
  faceswap extract clips/*.mp4 photos/ -o faces/alice --identity alice.jpg
  faceswap extract party.mp4 -o faces/bob --identity bob1.jpg bob2.jpg --identity-threshold 0.55
  faceswap extract film.mkv -o faces/x --frames 1200-4800 --every-nth 2 --size 512 --centering head
  faceswap extract film.mkv -o faces/x --detector s3fd --aligner fan --weights-dir ~/weights
"""


def _add_extract(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="video files, image folders or globs")
    p.add_argument("-o", "--output", required=True, help="face set folder (created or resumed)")
    p.add_argument("--config", help="YAML file of extract settings (flags override it)")
    add_detection_options(p)
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--every-nth", type=int, help="process every n-th video frame")
    p.add_argument("--frames", help="video frames START-END, END not included (120-480, 120-)")
    p.add_argument("--size", type=int, help="aligned face size in pixels (default 256)")
    p.add_argument("--centering", help="face (default), head or legacy")
    p.add_argument(
        "--image-format",
        help="jpg (default for a new face set; one being added to keeps its own) or png",
    )
    p.add_argument("--no-embed", action="store_true", help="skip identity embeddings")
    p.add_argument("--embed-every", type=int, help="embed one face per track every n frames")
    p.add_argument("--identity", nargs="+", metavar="REF", help="keep only this person's faces")
    p.add_argument("--identity-threshold", type=float, help="max distance to a reference (0.6)")
    p.add_argument("--no-track", action="store_true", help="run the detector on every frame")
    p.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    p.add_argument("--force", action="store_true", help="redo these inputs instead of resuming")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _run_extract(args: argparse.Namespace) -> int:
    from faceswap.config import ExtractConfig, load_config
    from faceswap.extract.pipeline import extract

    start, end = frame_range(args.frames)
    overrides = {
        **{name: getattr(args, name) for name in DETECTION_FLAGS},
        "device": args.device,
        "every_nth": args.every_nth,
        "start_frame": start if args.frames else None,
        "end_frame": end,
        "size": args.size,
        "centering": args.centering,
        "image_format": args.image_format,
        "embed": False if args.no_embed else None,
        "embed_every": args.embed_every,
        "identity_threshold": args.identity_threshold,
        "track": False if args.no_track else None,
        "workers": args.workers,
    }
    cfg = load_config(ExtractConfig, args.config, overrides)
    bar = progress_bar(None, "extract")

    def progress(frames: int, kept: int, todo: int) -> None:
        if bar.total != todo:
            # the first call comes once the workers are up: restart the clock there, so the
            # rate (and the ETA) is that of the work, not of the start-up; resumed frames are
            # not in `todo`, so a resumed run's ETA is right too
            bar.reset(total=todo)
        bar.update(frames)
        bar.set_postfix(faces=kept, refresh=False)

    try:
        summary = extract(args.inputs, args.output, cfg, identity=args.identity,
                          force=args.force, progress=progress)  # fmt: skip
    finally:
        bar.close()
    s = summary

    def human() -> None:
        print(f"extracted {s.output} with {s.detector} + {s.aligner} on {s.device}")
        print(f"  frames read {s.frames_read} of {s.frames_total}"
              f" (resumed past {s.frames_resumed}), without a face {s.frames_without_face}")  # fmt: skip
        print(f"  faces kept {s.faces_kept}, face set now holds {s.faces_in_set}")
        for reason, n in sorted(s.rejected.items()):
            print(f"  faces rejected to rejected/ ({reason}): {n}")
        for reason, n in sorted(s.dropped.items()):
            print(f"  detections not kept ({reason}): {n}")
        print(f"  {s.seconds:.1f} s, {s.frames_per_second:.1f} frames/s")
        if s.frames_read and not s.faces_found:
            print("  no face was found: check the input, or try --upsample 1 or --detector s3fd")

    emit(args, dataclasses.asdict(s), human)
    if args.identity and s.faces_found and not s.faces_kept:
        closest = "" if s.identity_closest is None else (
            f"; the closest of {s.faces_found} faces was at distance {s.identity_closest:.2f}"
        )  # fmt: skip
        line = (f"--identity kept no face{closest}, over the threshold "
                f"{cfg.identity_threshold:.2f}: are the references this person? (--identity-threshold "
                "raises it; the faces are in rejected/)")  # fmt: skip
        if not s.faces_in_set:
            raise BadInput(f"{s.output}: {line}")
        log.warning("%s", line)
    return 0


EXTRACT = Command(
    "detect, align and save faces from videos and images into a face set",
    EXTRACT_EXAMPLES,
    _add_extract,
    _run_extract,
)
