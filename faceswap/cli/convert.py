"""`faceswap convert`: swap the faces of a video clip with a trained model."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from faceswap.cli.common import (
    DETECTION_FLAGS,
    Command,
    add_detection_options,
    emit,
    flags_over_yaml,
    frame_range,
    progress_bar,
    provider_as_device,
)

CONVERT_EXAMPLES = """examples:
  faceswap convert clip.mp4 -m runs/alice2bob -o swapped.mp4
  faceswap convert clip.mp4 -m runs/alice2bob -o swapped.mp4 --alignments faces/clip
      (faces from a face set extracted from this clip: no detection, much faster)
  faceswap convert clip.mp4 -m runs/alice2bob -o check.png --preview 8 --frames 120-480
  faceswap convert clip.mp4 -m runs/alice2bob -o swapped.mp4 --color hist --blend seamless \\
      --erode 0.03 --feather 0.08 --sharpen 0.5 --watermark
  faceswap convert clip.mp4 -m runs/alice2bob -o swapped.mp4 --mask seg+hull --mask-model masks/m1
      (hands, microphones and glasses in front of the face stay visible; docs/masks.md)
  faceswap convert party.mp4 -m runs/alice2bob -o swapped.mkv --select identity --identity alice.jpg
  faceswap convert clip.mp4 -m runs/alice2bob/checkpoints/step-00100000 -o frames/ --crf 14
  faceswap convert clip.mp4 -m runs/alice2bob -o swapped.mp4 --config configs/convert/default.yaml
  faceswap convert clip.mp4 -m alice2bob.onnx -o swapped.mp4 --provider cuda
      (a model from `faceswap export`, run by onnxruntime)

Every output is labelled as synthetic (container tags + OUT.provenance.json; see docs/ethics.md).
"""

# flag -> ConvertConfig field (top level) or ExtractConfig field (section extract)
_TOP = ("direction", "batch_size", "device", "precision", "smooth", "mask", "mask_model", "hull",
        "erode", "feather", "color", "edge_color", "blend", "sharpen", "select",
        "identity_threshold", "crf",
        "preset", "workers", "threads")  # fmt: skip
_EXTRACT = (*DETECTION_FLAGS, "detect_workers")


def _add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("clip", help="the video whose faces are replaced")
    p.add_argument("-m", "--model", required=True,
                   help="run folder (its best, else latest checkpoint), a checkpoint folder, or "
                        "a model exported with `faceswap export` (.onnx, run by onnxruntime)")  # fmt: skip
    p.add_argument("-o", "--output", required=True,
                   help="video (.mp4 .m4v .mov .mkv), folder for PNG frames, or .png (--preview)")  # fmt: skip
    p.add_argument("--alignments", metavar="FACESET",
                   help="take faces from a face set extracted from this clip (skips detection)")  # fmt: skip
    p.add_argument("--config", help="YAML convert config (flags override it)")
    p.add_argument("--direction", help="a2b (default: B's face where A is) or b2a")
    p.add_argument("--frames", help="frames START-END, END not included (120-480, 120-)")
    p.add_argument("--preview", type=int, default=0, metavar="N",
                   help="convert N frames spread over the range into a before/after PNG strip")  # fmt: skip
    p.add_argument("--mask", help="learned, hull, product (default), or seg, seg+hull, "
                   "seg+learned (occlusion-aware: needs --mask-model)")  # fmt: skip
    p.add_argument("--mask-model", help="mask model folder (faceswap mask train; docs/masks.md)")
    p.add_argument("--hull", help="landmark mask: hull, extended (default) or components")
    p.add_argument("--forehead", metavar="REACH|auto",
                   help="extended hull: reach above the brows, brow-to-nose-tip distances "
                        "(0.4), or auto: the least visible edge over a few frames")  # fmt: skip
    p.add_argument("--erode", type=float, help="mask edge in (+) or out (-), fraction of the face")
    p.add_argument("--feather", type=float, help="soft edge width, fraction of the face (0.05)")
    p.add_argument("--color", help="avg, rct (default), hist or none")
    p.add_argument("--edge-color", type=float,
                   help="band inside the mask edge where the face's colour fades into the "
                        "original's, fraction of the face (0 = off)")  # fmt: skip
    p.add_argument("--blend", help="feather (default) or seamless")
    p.add_argument("--sharpen", type=float, help="unsharp amount on the swapped face (0 = off)")
    p.add_argument("--smooth", type=float,
                   help="landmark smoothing half-window in seconds (0.25; 0 = off)")  # fmt: skip
    p.add_argument("--select", help="all (default) or identity (only the model's identity)")
    p.add_argument("--identity", nargs="+", metavar="REF",
                   help="photos of the person to replace (implies --select identity, "
                        "whose default references are the run's training face set)")  # fmt: skip
    p.add_argument("--identity-threshold", type=float, help="max embedding distance (0.6)")
    p.add_argument("--crf", type=int, help="H.264 quality, lower is better (18)")
    p.add_argument("--preset", help="x264 preset, ultrafast .. veryslow (superfast)")
    p.add_argument("--watermark", action="store_true", help="burn a visible 'synthetic' label in")
    p.add_argument("--batch-size", type=int, help="faces per model call (8)")
    p.add_argument("--device", help="model device: auto, cpu or cuda")
    p.add_argument("--precision", help="auto, fp32, bf16 or fp16")
    p.add_argument("--provider", help="for an .onnx model: onnxruntime's execution provider, "
                   "auto (default: cuda if it has it), cpu or cuda (same as --device)")  # fmt: skip
    p.add_argument("--workers", type=int, help="compositing threads (default: one per core)")
    p.add_argument("--threads", type=int, help="torch threads on a CPU (default: half the cores)")
    add_detection_options(p)  # as in extract; used without --alignments
    p.add_argument("--detect-workers", type=int,
                   help="detection worker processes (default: one per core)")  # fmt: skip
    p.add_argument("--no-track", action="store_true", help="run the detector on every frame")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _config(args: argparse.Namespace):
    from faceswap.config import from_dict
    from faceswap.convert.config import ConvertConfig

    provider_as_device(args)
    data = flags_over_yaml(args, _TOP)
    if args.watermark:
        data["watermark"] = True
    if args.forehead is not None:
        data.update(_forehead(args.forehead))
    if args.identity and args.select is None:
        data["select"] = "identity"  # reference photos mean: only this person
    extract = dict(data.get("extract") or {})
    for name in _EXTRACT:
        if getattr(args, name) is not None:
            extract["workers" if name == "detect_workers" else name] = getattr(args, name)
    if args.no_track:
        extract["track"] = False
    if extract:
        data["extract"] = extract
    return from_dict(ConvertConfig, data, args.config or "options")


def _forehead(text: str) -> dict:
    """--forehead: a reach (a number) or auto."""
    from faceswap.errors import BadInput

    if text.strip().lower() == "auto":
        return {"forehead_auto": True}
    try:
        return {"forehead": float(text), "forehead_auto": False}
    except ValueError:
        raise BadInput(f"--forehead {text!r}: give a reach (e.g. 0.4) or auto") from None


def _run_convert(args: argparse.Namespace) -> int:
    from faceswap.convert.pipeline import convert, stage_rates
    from faceswap.errors import BadInput

    cfg = _config(args)
    if args.preview < 0:
        raise BadInput("--preview must be a positive number of frames")
    start, end = frame_range(args.frames)
    segmenter = None
    if cfg.mask.startswith("seg"):
        from faceswap.masks.model import load_model  # the CLI may use every package

        segmenter = load_model(cfg.mask_model, cfg.device)
    bar = progress_bar(None, "convert")

    def progress(done: int, total: int | None) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.update(1)

    try:
        s = convert(args.clip, args.model, args.output, cfg, alignments=args.alignments,
                    start=start, end=end, preview=args.preview, identity=args.identity,
                    overwrite=args.overwrite, progress=progress, segmenter=segmenter)  # fmt: skip
    except KeyboardInterrupt:
        bar.close()
        sys.stderr.write("faceswap convert: interrupted; no output was written "
                         f"({args.output} is unchanged)\n")  # fmt: skip
        return 130
    finally:
        bar.close()
    from faceswap.train.maturity import warn_if_untrained

    warn_if_untrained(args.model)  # after the work: a bad input stays one line
    rates = stage_rates(s)

    def human() -> None:
        what = {"video": f"video, H.264 crf {cfg.crf}", "images": "PNG frames",
                "preview": f"before/after strip of {s.frames} frames"}[s.kind]  # fmt: skip
        audio = f", audio {s.audio}" if s.audio else (", no audio" if s.kind == "video" else "")
        print(f"converted {s.source} -> {s.output} ({what}{audio})")
        print(f"  model {s.run} step {s.step}, {s.direction} on {s.device}; faces from "
              f"{s.faces_from}")  # fmt: skip
        print(f"  frames {s.frames}: {s.frames_swapped} swapped, {s.frames_unchanged} unchanged; "
              f"faces swapped {s.faces_swapped}"
              + (f", other people left alone {s.faces_other_identity}"
                 if s.faces_other_identity else ""))  # fmt: skip
        if s.forehead_seams:
            seams = ", ".join(f"{k} {'-' if v is None else f'{v:.2f}'}"
                              for k, v in s.forehead_seams.items())  # fmt: skip
            print(f"  forehead auto: {s.forehead:g} (edge seam by reach: {seams})")
        slow = min(rates, key=rates.get) if rates else None
        print(f"  {s.seconds:.1f} s, {s.frames_per_second:.1f} frames/s"
              + (f" (slowest stage: {slow} {rates[slow]:.1f} frames/s)" if slow else ""))  # fmt: skip
        print(f"  labelled synthetic: {s.sidecar}"
              + (" + container tags" if s.kind == "video" else " + PNG text")
              + (" + visible watermark" if cfg.watermark else ""))  # fmt: skip

    emit(args, {**dataclasses.asdict(s), "stage_frames_per_second": rates}, human)
    return 0


CONVERT = Command(
    "swap the faces of a video clip with a trained model (labelled as synthetic)",
    CONVERT_EXAMPLES,
    _add_convert,
    _run_convert,
)
