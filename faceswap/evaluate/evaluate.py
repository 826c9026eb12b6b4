"""`faceswap evaluate`: measure a trained run on its face sets.

    run + checkpoint ──▶ model
    face sets A, B ──split like training──▶ train / validation faces per identity
      reconstruction  A->A, B->B on train and validation faces: masked PSNR, SSIM, the gap
      swap            A's validation faces -> decoder B, then through one analysis pipeline
                      (analyze.py) with their inputs: identity (distance to centroids of A's
                      and B's training faces, retrieval), pose and expression error
      temporal        (--clip) landmark jitter of a converted clip against its source clip
    ──▶ RUN/evaluation.json (latest), RUN/evaluations.jsonl (history), TensorBoard eval/*

Everything is checked before anything is written; the JSON files are replaced atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceswap import __version__
from faceswap import faceset as fsmod
from faceswap.config import option, to_dict
from faceswap.data import FaceDataset
from faceswap.errors import BadInput
from faceswap.evaluate import identity, pose, temporal
from faceswap.evaluate.analyze import CropAnalyzer
from faceswap.evaluate.metrics import psnr, ssim, summarize
from faceswap.extract.masks import MASK_KINDS
from faceswap.models import Autoencoder, build_model
from faceswap.train import checkpoint as ck
from faceswap.train.config import TrainConfig
from faceswap.train.split_record import read_split, run_split
from faceswap.train.trainer import check_facesets, pick_device, read_run_config

log = logging.getLogger(__name__)

RESULT_FILE = "evaluation.json"
HISTORY_FILE = "evaluations.jsonl"
# (faces done, faces in all) after each face that goes through the analysis pipeline
Progress = Callable[[int, int], None]


@dataclass
class EvaluateConfig:
    """Settings of `faceswap evaluate`."""

    checkpoint: str = option("best", "checkpoint: best, latest, or a checkpoint folder path")
    max_faces: int = option(64, "faces per group (train/val per identity, swaps, centroids)")
    analysis_size: int = option(
        256, "side that crops are upscaled to for dlib landmarks/embeddings"
    )
    mask: str = option("hull", "face mask for PSNR/SSIM: hull, extended or components")
    batch_size: int = option(32, "faces per model forward pass")
    device: str = option("auto", "auto, cpu or cuda")
    tensorboard: bool = option(True, "also write the numbers as TensorBoard scalars (RUN/logs)")

    def __post_init__(self) -> None:
        if not self.checkpoint:
            raise ValueError("checkpoint must be best, latest or a path")
        if not 2 <= self.max_faces <= 100_000:
            raise ValueError("max_faces must be between 2 and 100000")
        if not 64 <= self.analysis_size <= 1024:
            raise ValueError("analysis_size must be between 64 and 1024")
        if self.mask not in MASK_KINDS:
            raise ValueError(f"mask must be one of {', '.join(MASK_KINDS)}, not {self.mask!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")


# ---- inputs ------------------------------------------------------------------------------


def resolve(run_dir: Path, which: str) -> Path:
    """The checkpoint folder to evaluate: best, latest, or a given folder."""
    if which == "latest":
        path = ck.latest_checkpoint(run_dir)
        if path is None:
            raise BadInput(f"{run_dir}: no checkpoint found (train the model first)")
        return path
    if which == "best":
        return ck.resolve_checkpoint(run_dir, "best")
    path = Path(which)
    if not (path / "state.json").is_file():
        raise BadInput(f"--checkpoint {which}: not a checkpoint folder (no state.json)")
    return path


@dataclass
class LoadedRun:
    run_dir: Path
    checkpoint: Path
    step: int
    model: Autoencoder
    config: TrainConfig
    state: dict[str, Any]


def load_run(run_dir: Path, which: str, device: torch.device) -> LoadedRun:
    """The run's config and the chosen checkpoint's weights in a model in eval mode."""
    cfg = read_run_config(run_dir)
    path = resolve(run_dir, which)
    data = ck.load_checkpoint(path)
    model = build_model(cfg.model)
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise BadInput(f"{path}: checkpoint does not fit the run's model ({first})") from None
    model.to(device).eval()
    return LoadedRun(run_dir, path, int(data["state"].get("step", 0)), model, cfg, data["state"])


def sample(indices: list[int], n: int) -> list[int]:
    """At most n of the indices, evenly spread (deterministic: the same faces every time)."""
    if len(indices) <= n:
        return list(indices)
    pick = np.linspace(0, len(indices) - 1, n).round().astype(int)
    return [indices[i] for i in pick]


def _faces(fs: fsmod.FaceSet, idx: list[int], res: int, mask: str) -> dict[str, torch.Tensor]:
    """Clean faces (B, 3, R, R) RGB in [0, 1] and their landmark masks (B, 1, R, R)."""
    ds = FaceDataset(fs, idx, res, None, 0, mask_kind=mask, threads=1)
    items = [ds[i] for i in range(len(ds))]
    if not items:
        return {"image": torch.zeros(0, 3, res, res), "mask": torch.zeros(0, 1, res, res)}
    return {"image": torch.stack([it["target"] for it in items]),
            "mask": torch.stack([it["mask"] for it in items])}  # fmt: skip


@torch.no_grad()
def _decode(model: Autoencoder, x: torch.Tensor, side: str, batch: int) -> torch.Tensor:
    """(B, 3, R, R) faces -> the decoder `side`'s rgb (B, 3, R, R) on the CPU."""
    device = next(model.parameters()).device
    out = [model(x[i : i + batch].to(device), side)[0].float().cpu()
           for i in range(0, len(x), batch)]  # fmt: skip
    return torch.cat(out) if out else torch.zeros_like(x)


def _uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, R, R) in [0, 1] -> (B, R, R, 3) uint8 RGB, as a saved image would be."""
    return (x.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).astype(np.uint8)


def _share(flags: np.ndarray) -> float | None:
    return round(float(np.mean(flags)), 5) if len(flags) else None


# ---- the evaluation ----------------------------------------------------------------------


def reconstruction(
    model: Autoencoder, side: str, groups: dict[str, dict[str, torch.Tensor]], batch: int
) -> dict[str, Any]:
    """PSNR/SSIM of side->side on each group of faces ("train", "val": images and masks from
    `_faces`), and the gap train minus validation of the means."""
    out: dict[str, Any] = {}
    for name, faces in groups.items():
        rec = _decode(model, faces["image"], side, batch)
        out[name] = {
            "psnr": summarize(psnr(rec, faces["image"], faces["mask"])),
            "ssim": summarize(ssim(rec, faces["image"], faces["mask"])),
        }
    gap = {}
    for metric in ("psnr", "ssim"):
        t, v = out["train"][metric]["mean"], out["val"][metric]["mean"]
        gap[metric] = None if t is None or v is None else round(t - v, 5)
    out["gap"] = gap
    return out


def evaluate_run(
    run_dir: str | Path,
    fs_a: fsmod.FaceSet,
    fs_b: fsmod.FaceSet,
    cfg: EvaluateConfig,
    *,
    clip: fsmod.FaceSet | None = None,
    clip_source: fsmod.FaceSet | None = None,
    others: dict[str, fsmod.FaceSet] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """All numbers of one evaluation as a JSON-able dict (nothing is written; see `save`)."""
    run_dir = Path(run_dir)
    others = others or {}
    for name in others:
        if name in ("a", "b"):
            raise ValueError("other identities cannot be named a or b")
    device = pick_device(cfg.device)
    run = load_run(run_dir, cfg.checkpoint, device)
    check_facesets(fs_a, fs_b, run.config)
    for name, fs in others.items():
        if (fs.size, fs.centering) != (fs_a.size, fs_a.centering):
            raise BadInput(f"{fs.root}: face set is {fs.size}px {fs.centering}, A is "
                           f"{fs_a.size}px {fs_a.centering}; extract it like A and B")  # fmt: skip
        if not fs.faces:
            raise BadInput(f"{fs.root}: face set {name} has no faces")
    matched = None
    if clip is not None:
        src = clip_source if clip_source is not None else fs_a
        matched = temporal.match_clip(src, clip)
        if len(matched[0]) < 3:
            raise BadInput(f"--clip {clip.root}: only {len(matched[0])} of its faces match a face "
                           f"of {src.root} in the same frame (need 3); pass the source clip's "
                           "face set with --clip-source")  # fmt: skip

    res = run.config.model.resolution
    fs = {"a": fs_a, "b": fs_b}
    splits, same_split = {}, {}
    saved = run.state.get("facesets", {})
    recorded = read_split(run_dir)
    for side, f in fs.items():
        train_idx, val_idx = run_split(f, side, recorded, run.config.val_fraction,
                                       run.config.seed)  # fmt: skip
        splits[side] = {"train": sample(train_idx, cfg.max_faces),
                        "val": sample(val_idx, cfg.max_faces)}  # fmt: skip
        fp = saved.get(side, {}).get("fingerprint")
        # a recorded split names the faces held out, so a changed set keeps them apart
        same_split[side] = side in recorded or fp is None or fp == f.fingerprint()
        if not same_split[side]:
            log.warning("face set %s changed since training: its validation faces are not the "
                        "ones training held out, so the gap is not meaningful", side.upper())  # fmt: skip

    faces = {side: {g: _faces(fs[side], idx, res, cfg.mask) for g, idx in splits[side].items()}
             for side in fs}  # fmt: skip
    recon = {side: reconstruction(run.model, side, faces[side], cfg.batch_size) for side in fs}

    # swaps of A's held-out faces; they, their inputs and the centroid faces all go through
    # one analysis pipeline
    groups = {"swap_in": faces["a"]["val"]["image"], "a": faces["a"]["train"]["image"],
              "b": faces["b"]["train"]["image"]}  # fmt: skip
    for name, f in others.items():
        groups[name] = _faces(f, sample(list(range(len(f.faces))), cfg.max_faces), res,
                              cfg.mask)["image"]  # fmt: skip
    groups["swap"] = _decode(run.model, groups["swap_in"], "b", cfg.batch_size)
    total = sum(len(x) for x in groups.values())
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    analyzer = CropAnalyzer(fs_a.centering, cfg.analysis_size, embed=True)
    found = {name: analyzer.analyze(_uint8(x), embed=True, tick=tick) for name, x in groups.items()}

    centroids = {name: identity.centroid(found[name]["embeddings"])
                 for name in ("a", "b", *others) if len(found[name]["embeddings"])}  # fmt: skip
    ident = identity.identity_scores(found["swap"]["embeddings"], centroids, "b")
    ident["inputs"] = identity.identity_scores(found["swap_in"]["embeddings"], centroids, "a")
    ident["centroid_distance"] = identity.centroid_gap(centroids)

    result: dict[str, Any] = {
        "tool": f"faceswap {__version__}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run": str(run_dir),
        "checkpoint": str(run.checkpoint),
        "step": run.step,
        "model": {"arch": run.config.model.arch, "resolution": res},
        "facesets": {
            side: {
                "path": str(f.root),
                "faces": len(f.faces),
                "train_faces": len(splits[side]["train"]),
                "val_faces": len(splits[side]["val"]),
                "split_matches_training": same_split[side],
            }
            for side, f in fs.items()
        },
        "others": {name: str(f.root) for name, f in others.items()},
        "config": to_dict(cfg),
        "reconstruction": recon,
        "identity": ident,
        "pose": pose.pose_summary(found["swap_in"]["pose"], found["swap"]["pose"]),
        "expression": pose.expression_summary(
            found["swap_in"]["landmarks"], found["swap"]["landmarks"]
        ),
        "faces_detected": {
            "inputs": _share(found["swap_in"]["detected"]),
            "swaps": _share(found["swap"]["detected"]),
        },
        "landmark_residual": {
            "inputs": summarize(found["swap_in"]["residual"]),
            "swaps": summarize(found["swap"]["residual"]),
        },
        "temporal": None,
    }
    if matched is not None:
        frames, src_lm, swap_lm = matched
        result["temporal"] = {"clip": str(clip.root),  # type: ignore[union-attr]
                              "source": str((clip_source or fs_a).root),
                              **temporal.temporal_stability(src_lm, swap_lm, frames)}  # fmt: skip
    return result


# ---- output ------------------------------------------------------------------------------

# TensorBoard tag -> path into the result dict
SCALARS = {
    "eval/psnr_train_a": ("reconstruction", "a", "train", "psnr", "mean"),
    "eval/psnr_val_a": ("reconstruction", "a", "val", "psnr", "mean"),
    "eval/psnr_gap_a": ("reconstruction", "a", "gap", "psnr"),
    "eval/ssim_train_a": ("reconstruction", "a", "train", "ssim", "mean"),
    "eval/ssim_val_a": ("reconstruction", "a", "val", "ssim", "mean"),
    "eval/ssim_gap_a": ("reconstruction", "a", "gap", "ssim"),
    "eval/psnr_train_b": ("reconstruction", "b", "train", "psnr", "mean"),
    "eval/psnr_val_b": ("reconstruction", "b", "val", "psnr", "mean"),
    "eval/psnr_gap_b": ("reconstruction", "b", "gap", "psnr"),
    "eval/ssim_train_b": ("reconstruction", "b", "train", "ssim", "mean"),
    "eval/ssim_val_b": ("reconstruction", "b", "val", "ssim", "mean"),
    "eval/ssim_gap_b": ("reconstruction", "b", "gap", "ssim"),
    "eval/identity_distance_b": ("identity", "distance_to", "b", "mean"),
    "eval/identity_distance_a": ("identity", "distance_to", "a", "mean"),
    "eval/identity_retrieval": ("identity", "retrieval"),
    "eval/swaps_detected_as_faces": ("faces_detected", "swaps"),
    "eval/pose_error_yaw": ("pose", "yaw", "mean"),
    "eval/pose_error_pitch": ("pose", "pitch", "mean"),
    "eval/pose_error_roll": ("pose", "roll", "mean"),
    "eval/expression_error_mouth": ("expression", "mouth", "mean"),
    "eval/expression_error_eyes": ("expression", "eyes", "mean"),
    "eval/temporal_jitter_ratio": ("temporal", "jitter_ratio"),
    "eval/temporal_added_jitter": ("temporal", "added_jitter", "mean"),
}


def scalars(result: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars of a result (tags whose value is missing are left out)."""
    out = {}
    for tag, path in SCALARS.items():
        v: Any = result
        for key in path:
            v = v.get(key) if isinstance(v, dict) else None
        if isinstance(v, (int, float)) and np.isfinite(v):
            out[tag] = float(v)
    return out


def save(run_dir: Path, result: dict[str, Any], tensorboard: bool = True) -> None:
    """RUN/evaluation.json (replaced atomically), one line more in RUN/evaluations.jsonl (the
    file is rewritten atomically, never left half-written), and TensorBoard eval/* scalars at
    the checkpoint's step."""
    text = json.dumps(result, indent=1)
    hist = run_dir / HISTORY_FILE
    old = hist.read_text(encoding="utf-8") if hist.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    fsmod.atomic_write_text(run_dir / RESULT_FILE, text + "\n")
    fsmod.atomic_write_text(hist, old + json.dumps(result, separators=(",", ":")) + "\n")
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "logs"))
        try:
            for tag, value in scalars(result).items():
                writer.add_scalar(tag, value, result["step"])
        finally:
            writer.close()
