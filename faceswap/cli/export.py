"""`faceswap export`: a trained run's swap path as an ONNX model, checked on real faces."""

from __future__ import annotations

import argparse

from faceswap.cli.common import Command, emit

EXPORT_EXAMPLES = """examples:
  faceswap export -m runs/alice2bob -o alice2bob.onnx
  faceswap export -m runs/alice2bob --direction b2a -o bob2alice.onnx
  faceswap export -m runs/alice2bob -o a2b-fp16.onnx --precision fp16      (for a CUDA GPU)
  faceswap export -m runs/alice2bob/checkpoints/step-00100000 -o a2b.onnx --check-faces faces/clip7

then:
  faceswap convert clip.mp4 -m alice2bob.onnx -o swapped.mp4 --provider cpu
  faceswap live -m alice2bob.onnx --source 0

The model's face size, centering, preset and provenance (source run, step, the "synthetic"
purpose) are in the ONNX metadata. Before the file is written, onnxruntime's swaps are compared
with PyTorch's on real faces (the run's training face set, or --check-faces, else scikit-image's
astronaut); a difference beyond the tolerance writes nothing and exits 1.
"""


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True,
                   help="run folder (its best, else latest checkpoint) or a checkpoint folder")  # fmt: skip
    p.add_argument("-o", "--output", required=True, help="the ONNX file to write (.onnx)")
    p.add_argument("--direction", default="a2b",
                   help="a2b (default: B's face where A is) or b2a; one direction per file")  # fmt: skip
    p.add_argument("--precision", default="fp32",
                   help="fp32 (default) or fp16 (half the size; for GPUs, slow on most CPUs)")  # fmt: skip
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (13-20, default 17)")
    p.add_argument("--check-faces", metavar="FACESET",
                   help="face set to check the export on (default: the run's training faces)")  # fmt: skip
    p.add_argument("--check-count", type=int, default=16, help="faces in the check (16)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _run(args: argparse.Namespace) -> int:
    from faceswap.errors import BadInput

    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise BadInput(f"export needs the onnx and onnxruntime packages ({exc.name} is missing):"
                       " pip install onnx onnxruntime, or pip install -e \".[onnx]\"") from None  # fmt: skip
    from faceswap.export.onnx import export_onnx

    s = export_onnx(args.model, args.output, direction=args.direction, precision=args.precision,
                    opset=args.opset, overwrite=args.overwrite, check=not args.no_check,
                    check_faces=args.check_faces, check_count=args.check_count)  # fmt: skip

    def human() -> None:
        print(f"exported {s.run} (step {s.step}, {s.preset}, {s.direction}) -> {s.output}")
        print(f"  {s.precision}, opset {s.opset}, {s.megabytes:.1f} MB; input {s.resolution} px "
              f"faces cut at {s.face_size} px, centering {s.centering}; "
              f"{'rgb + mask' if s.learns_mask else 'rgb'} out; {s.seconds:.1f} s")  # fmt: skip
        c = s.check
        if c is None:
            print("  not checked (--no-check)")
        else:
            mask = "" if c["max_abs_mask"] is None else f", mask {c['max_abs_mask']:.1e}"
            print(f"  check on {c['faces']} faces ({c['source']}): max |onnxruntime - PyTorch| "
                  f"rgb {c['max_abs_rgb']:.1e}{mask} (tolerance {c['tolerance']:.0e}): passed")  # fmt: skip
        print("  metadata: purpose synthetic, source run, step, preset, face size, centering")

    emit(args, s.__dict__, human)
    return 0


EXPORT = Command(
    "export a trained model's swap path to ONNX (for onnxruntime, convert and live)",
    EXPORT_EXAMPLES,
    _add,
    _run,
)
