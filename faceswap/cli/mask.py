"""`faceswap mask`: train a face segmentation model, apply it to face sets, import/export labels."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from faceswap.cli.common import Command, Parser, emit, progress_bar
from faceswap.errors import BadInput

MASK_EXAMPLES = """examples:
  faceswap mask train -i faces/alice faces/bob -o masks/m1
  faceswap mask train -i faces/alice -o masks/m1 --steps 3000 --batch-size 16
  faceswap mask apply -m masks/m1 faces/alice            (masks/<face>.png beside the faces)
  faceswap mask apply -m masks/m1 faces/alice --overwrite
  faceswap mask label export faces/alice -o alice-labels.json --png /tmp/alice-masks
  faceswap mask label import faces/alice alice-labels.json
  faceswap mask label import faces/alice painted/          (PNG masks named <face>.png)
  faceswap convert clip.mp4 -m runs/a2b -o out.mp4 --mask seg+hull --mask-model masks/m1

Labels are polygons per face (FACESET/labels.json, docs/masks.md). Training uses the labels
where present and the landmark hull elsewhere, with synthetic occluders pasted over the faces.
"""

_TRAIN_FLAGS = ("steps", "batch_size", "lr", "hull", "occlude", "seed", "threads")


def _add_mask(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    tr = sub.add_parser("train", help="train a segmentation model on face sets")
    tr.add_argument("-i", "--input", nargs="+", required=True, metavar="FACESET",
                    help="face sets to train on (one centering)")  # fmt: skip
    tr.add_argument("-o", "--output", required=True, metavar="MASKMODEL", help="model folder")
    tr.add_argument("--config", help="YAML of MaskTrainConfig fields (flags override it)")
    tr.add_argument("--steps", type=int, help="optimizer steps (1500)")
    tr.add_argument("--batch-size", type=int, help="faces per step (12)")
    tr.add_argument("--lr", type=float, help="peak learning rate (0.002)")
    tr.add_argument("--hull", help="pseudo-label of unlabelled faces: extended (default), hull, "
                    "components")  # fmt: skip
    tr.add_argument("--occlude", type=float, help="share of samples with occluders (0.75)")
    tr.add_argument("--seed", type=int, help="seed (0)")
    tr.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing model")
    tr.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap = sub.add_parser("apply", help="store a mask per face (FACESET/masks/<face>.png)")
    ap.add_argument("faceset", nargs="+")
    ap.add_argument("-m", "--model", required=True, metavar="MASKMODEL", help="model folder")
    ap.add_argument("--overwrite", action="store_true", help="redo every face's mask")
    ap.add_argument("--batch-size", type=int, default=16, help="faces per model call (16)")
    ap.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    lab = sub.add_parser("label", help="import or export user labels (polygons)")
    lsub = lab.add_subparsers(dest="label_action", required=True, metavar="ACTION",
                              parser_class=Parser)  # fmt: skip
    imp = lsub.add_parser("import", help="add labels from a label JSON or a folder of PNG masks")
    imp.add_argument("faceset")
    imp.add_argument("source", help="label JSON file, or folder of <face name>.png masks")
    imp.add_argument("--replace", action="store_true", help="drop the set's other labels")
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")
    exp = lsub.add_parser("export", help="write the set's labels as JSON (and PNG masks)")
    exp.add_argument("faceset")
    exp.add_argument("-o", "--output", required=True, help="label JSON file to write")
    exp.add_argument("--png", metavar="DIR", help="also render each label as DIR/<face>.png")
    exp.add_argument("--json", action="store_true", help="print the summary as JSON")


def _train(args: argparse.Namespace) -> int:
    from faceswap import faceset as fsmod
    from faceswap.config import from_dict, load_yaml
    from faceswap.masks.model import META
    from faceswap.masks.train import MaskTrainConfig, train

    out = Path(args.output)
    if (out / META).exists() and not args.overwrite:
        raise BadInput(f"{out}: a mask model is already there; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a folder")
    data = load_yaml(args.config) if args.config else {}
    for name in _TRAIN_FLAGS:
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    cfg = from_dict(MaskTrainConfig, data, args.config or "options")
    sets = [fsmod.load(p) for p in args.input]
    for p, fs in zip(args.input, sets):
        if not fs.faces:
            raise BadInput(f"{p}: face set has no faces")
    if len({fs.centering for fs in sets}) > 1:
        raise BadInput("--input: the face sets mix centerings; a mask model is trained on one")
    bar = progress_bar(cfg.steps, "mask train", unit="step")

    def progress(step: int, steps: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    try:
        s = train(sets, out, cfg, progress)
    finally:
        bar.close()

    def human() -> None:
        print(f"trained {s.output}: {s.steps} steps on {s.faces} faces ({s.labelled} labelled)"
              f" in {s.seconds:.0f} s ({s.samples_per_second:.1f} samples/s), loss {s.loss}")  # fmt: skip
        if s.val_iou_clean is not None:
            print(f"  held-out {s.val_faces} faces: IoU {s.val_iou_clean:.3f} clean, "
                  f"{s.val_iou_occluded:.3f} with an occluder (target: labels or hull)")  # fmt: skip
        print(f"  next: faceswap mask apply -m {s.output} FACESET")

    emit(args, dataclasses.asdict(s), human)
    return 0


def _apply(args: argparse.Namespace) -> int:
    from faceswap.masks.apply import apply_masks
    from faceswap.masks.model import load_model

    if args.batch_size < 1:
        raise BadInput("--batch-size must be at least 1")
    model = load_model(args.model, args.device)
    results = []
    for path in args.faceset:
        bar = progress_bar(None, f"mask {Path(path).name}", unit="face")

        def progress(done: int, total: int, bar=bar) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            results.append(apply_masks(path, model, overwrite=args.overwrite,
                                       batch_size=args.batch_size, progress=progress))  # fmt: skip
        finally:
            bar.close()

    def human() -> None:
        for s in results:
            print(f"{s.faceset}: {s.faces} faces: {s.predicted} masked by the model, "
                  f"{s.from_labels} from labels, {s.skipped} already done; "
                  f"{s.faces_per_second:.1f} faces/s; masks cover {s.mean_coverage:.0%} of "
                  "the crop on average")  # fmt: skip

    emit(args, [dataclasses.asdict(s) for s in results], human)
    return 0


def _label(args: argparse.Namespace) -> int:
    import json

    import cv2

    from faceswap import faceset as fsmod
    from faceswap.masks import labels as lb

    fs = fsmod.load(args.faceset)
    if args.label_action == "export":
        labels = lb.load_labels(fs)
        out = Path(args.output)
        if not out.parent.is_dir():
            raise BadInput(f"{out}: folder {out.parent} does not exist")
        fsmod.atomic_write_text(out, json.dumps(lb.document(fs.size, labels)))
        if args.png:
            folder = Path(args.png)
            folder.mkdir(parents=True, exist_ok=True)
            for name, lab in labels.items():
                cv2.imwrite(str(folder / f"{name}.png"), lab.render(fs.size, fs.size))
        data = {"faceset": str(fs.root), "output": str(out), "labels": len(labels),
                "png": args.png}  # fmt: skip
        emit(args, data, lambda: print(f"wrote {len(labels)} labels to {out}"
                                       + (f" and PNG masks to {args.png}" if args.png else "")))  # fmt: skip
        return 0
    src = Path(args.source)
    if src.is_dir():
        by_name = {f.name: f for f in fs.faces + fs.rejected}
        new: dict[str, lb.Label] = {}
        for p in sorted(src.glob("*.png")):
            lb.check_name(p.stem, str(p))
            if p.stem not in by_name:
                raise lb.LabelError(f"{p}: no face {p.stem!r} in the face set {fs.root}")
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            if img is None or img.shape[0] != img.shape[1]:
                raise lb.LabelError(f"{p}: not a readable square mask image")
            lab = lb.from_mask(img, fs.size)
            if not lab.include:
                raise lb.LabelError(f"{p}: the mask is empty (white = face)")
            new[p.stem] = lab
        if not new:
            raise BadInput(f"{src}: no <face name>.png masks in this folder")
    else:
        size, new = lb.read_file(src)
        lb.check_faces(fs, new, str(src))
        if size != fs.size:
            k = fs.size / size
            new = {n: lb.Label([q * k for q in v.include], [q * k for q in v.exclude])
                   for n, v in new.items()}  # fmt: skip
    # stored masks of relabelled faces are removed: the next apply redoes them from labels
    merged, stale = lb.update(fs.root, new, replace=args.replace)
    data = {"faceset": str(fs.root), "imported": len(new), "labels": len(merged),
            "masks_removed": stale, "pixels_labelled_face":
            int(sum((v.render(fs.size, fs.size) > 0).sum() for v in new.values()))}  # fmt: skip
    emit(args, data, lambda: print(
        f"imported {len(new)} labels into {fs.root} ({len(merged)} in all); "
        + (f"{stale} stored masks removed (run mask apply again)" if stale else "")))  # fmt: skip
    return 0


def _run_mask(args: argparse.Namespace) -> int:
    return {"train": _train, "apply": _apply, "label": _label}[args.action](args)


MASK = Command(
    "occlusion-aware face masks: train a segmentation model, apply it, import/export labels",
    MASK_EXAMPLES,
    _add_mask,
    _run_mask,
)
