"""The command line each action of the app runs: argv after `faceswap`, built from the project's
fixed layout and the page's options, each option checked (BadInput names it) before anything
starts. What the Project page lists as the equivalent commands comes from here too."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from faceswap.errors import BadInput
from faceswap.faceset import is_faceset
from faceswap.ui import project as pj
from faceswap.ui.security import Roots

KINDS = ("extract", "train", "fit", "convert", "report")
_PRESET = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CHOICES = {"mask": ("learned", "hull", "product"), "color": ("avg", "rct", "hist", "none"),
            "blend": ("feather", "seamless")}  # fmt: skip


def whole_number(options: dict, name: str, lo: int, hi: int) -> int | None:
    v = options.get(name)
    if v is None or v == "":
        return None
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise BadInput(f"{name}: expected a whole number")
    try:
        v = int(v)
    except ValueError:
        raise BadInput(f"{name}: expected a whole number, got {v!r}") from None
    if not lo <= v <= hi:
        raise BadInput(f"{name}: {v} is outside {lo}-{hi}")
    return v


def choice(options: dict, name: str, choices: tuple[str, ...]) -> str | None:
    v = options.get(name)
    if v is None or v == "":
        return None
    if v not in choices:
        raise BadInput(f"{name}: {v!r} is not one of {', '.join(choices)}")
    return v


def trained(project: Path, run: str) -> bool:
    return (project / run / "checkpoints").is_dir()


def pipeline(project: Path, inp: pj.Inputs) -> dict[str, list[str] | None]:
    """The base argv of every step (None where its inputs are not chosen yet)."""
    fs = pj.FACESETS
    out: dict[str, list[str] | None] = {}
    for side in pj.SIDES:
        media = getattr(inp, side)
        out[f"extract-{side}"] = ["extract", *media, "-o", fs[side]] if media else None
    out["train"] = ["train", "-A", fs["a"], "-B", fs["b"], "-o", pj.RUNS["train"]]
    out["fit"] = ["fit", "--from", pj.RUNS["train"], "--replace", "A", "-A", fs["target"], "-o",
                  pj.RUNS["fit"]]  # fmt: skip
    model = pj.RUNS["fit"] if trained(project, pj.RUNS["fit"]) else pj.RUNS["train"]
    out["convert"] = ["convert", *inp.target, "-m", model, "-o", pj.OUTPUT, "--alignments",
                      fs["target"], "--overwrite"] if inp.target else None  # fmt: skip
    report = ["report", fs["a"], fs["b"], "--run", pj.RUNS["train"], "-o", pj.REPORT]
    if is_faceset(project / fs["target"]):
        report[3:3] = ["--target", fs["target"]]
    out["report"] = report
    return out


def _need_facesets(project: Path, sides: tuple[str, ...]) -> None:
    for s in sides:
        if not is_faceset(project / pj.FACESETS[s]):
            raise BadInput(f"{pj.FACESETS[s]}: extract the faces of {s} first")


def job(roots: Roots, kind: object, side: object, o: dict[str, Any]) -> tuple[list[str], str]:
    """(argv, the output it writes) of one job; BadInput for anything not ready or not valid."""
    project = roots.project
    base = pipeline(project, pj.load_inputs(project))
    if kind == "extract":
        if side not in pj.SIDES:
            raise BadInput(f"side: {side!r} is not one of a, b, target")
        argv = base[f"extract-{side}"]
        if argv is None:
            raise BadInput(f"choose the clips or photos of {side} first (Project page)")
        for name, flag, lo, hi in (("size", "--size", 64, 1024),
                                   ("every_nth", "--every-nth", 1, 1000)):  # fmt: skip
            v = whole_number(o, name, lo, hi)
            if v is not None:
                argv += [flag, str(v)]
        return argv, pj.FACESETS[side]
    if kind in ("train", "fit"):
        argv = base[kind]
        assert argv is not None
        _need_facesets(project, ("a", "b") if kind == "train" else ("target",))
        if kind == "fit" and not trained(project, pj.RUNS["train"]):
            raise BadInput(f"{pj.RUNS['train']}: train a model first")
        steps = whole_number(o, "steps", 1, 10_000_000)
        if steps is not None:
            argv += ["--steps", str(steps)]
        if kind == "train":
            model = o.get("model")
            if model:
                if not isinstance(model, str) or not _PRESET.match(model):
                    raise BadInput(f"model: {model!r} is not a preset name")
                argv += ["--model", model]
            bs = whole_number(o, "batch_size", 1, 4096)
            if bs is not None:
                argv += ["--batch-size", str(bs)]
            if o.get("config"):
                argv += ["--config", roots.show(roots.resolve(o["config"], must_exist=True))]
        if o.get("resume"):
            argv.append("--resume")
        return argv, pj.RUNS[kind]
    if kind == "convert":
        argv = base["convert"]
        if argv is None:
            raise BadInput("choose the target clip first (Project page)")
        model = choice(o, "model", tuple(pj.RUNS))
        if model is not None:
            argv[argv.index("-m") + 1] = pj.RUNS[model]
        if not trained(project, argv[argv.index("-m") + 1]):
            raise BadInput("train a model first")
        if not is_faceset(project / pj.FACESETS["target"]):  # detect faces while converting
            argv = argv[: argv.index("--alignments")] + ["--overwrite"]
        for name, choices in _CHOICES.items():
            v = choice(o, name, choices)
            if v is not None:
                argv += [f"--{name}", v]
        if o.get("watermark"):
            argv.append("--watermark")
        return argv, pj.OUTPUT
    if kind == "report":
        argv = base["report"]
        assert argv is not None
        _need_facesets(project, ("a", "b"))
        if not trained(project, pj.RUNS["train"]):
            i = argv.index("--run")
            argv = argv[:i] + argv[i + 2 :]
        return argv, pj.REPORT
    raise BadInput(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
