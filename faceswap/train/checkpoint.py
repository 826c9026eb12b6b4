"""Checkpoints: safetensors for every tensor, JSON for everything else; never pickle.

    RUN/checkpoints/step-00012000/
        model.safetensors       model weights ("encoder.*", "decoder_a.*", "decoder_b.*")
        optimizer.safetensors   optimizer tensors (exp_avg, exp_avg_sq, ... per parameter)
        rng.safetensors         torch CPU (and CUDA) generator states
        discriminator.safetensors, discriminator_optimizer.safetensors
                                only in runs with the GAN term on (loss.gan_power > 0): its
                                weights and optimizer tensors; their scalars in state.json
        state.json              step, optimizer hyper-parameters and scalar state, schedule,
                                monitor, data-stream positions, numpy/python RNG, scaler,
                                config, face-set fingerprints, lineage

A checkpoint is written into a temporary folder, every file fsynced, then renamed into place,
so a crash leaves the previous checkpoints untouched and never a half-written one. Loading
reads safetensors and JSON only: nothing in a checkpoint can execute code.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from faceswap.errors import BadInput

FORMAT = "faceswap-checkpoint"
VERSION = 1
PREFIX = "step-"
D_WEIGHTS = "discriminator.safetensors"
D_OPTIMIZER = "discriminator_optimizer.safetensors"

log = logging.getLogger(__name__)


class CheckpointError(BadInput):
    """A checkpoint that is missing, corrupt or not ours, or one that could not be written."""


# ---- optimizer state <-> (tensors, json) ------------------------------------------------------


def flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split torch's optimizer state_dict into named tensors and JSON-able scalars."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in state_dict["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, _, key = name.partition(".")
        state.setdefault(int(pid), {})[key] = value
    for pid, st in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


# ---- RNG ----------------------------------------------------------------------------------------


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    py = random.getstate()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": _jsonable(np.random.get_state(legacy=False)),
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(meta["numpy"])


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# ---- atomic folders ------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_folder(final: Path, files: dict[str, Any]) -> None:
    """Write files (tensor dicts -> safetensors, anything else -> JSON) into a temp folder and
    rename it to `final`. An existing `final` is replaced only after the new one is complete:
    it is moved aside to `.NAME.old-PID`, the new one renamed in, the old one removed. A kill
    between those renames leaves no `final`; `repair` (and `resolve_checkpoint`) use the
    moved-aside one then."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for name, content in files.items():
            path = tmp / name
            if name.endswith(".safetensors"):
                save_file(content, str(path))
            else:
                path.write_text(json.dumps(content, indent=1, default=_jsonable))
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        if final.exists():
            os.rename(final, old)
        os.rename(tmp, final)
        _fsync_dir(final.parent)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_folder(path: Path) -> None:
    """Delete a checkpoint folder so that no half-deleted one keeps its name: rename it to a
    hidden name first (one atomic step), then remove that."""
    gone = path.parent / f".{path.name}.del-{os.getpid()}"
    try:
        os.rename(path, gone)
    except OSError:
        return
    shutil.rmtree(gone, ignore_errors=True)


def _aside(p: Path) -> str | None:
    """NAME of a `.NAME.old-PID` folder (a published folder moved aside), else None."""
    head, sep, pid = p.name.rpartition(".old-")
    return head[1:] if p.name.startswith(".") and sep and pid.isdigit() else None


def repair(run_dir: Path) -> list[str]:
    """Clean up after a save that was killed: put back a moved-aside folder whose replacement
    never got its name (`.best.old-PID` with no `best`), and delete every other hidden leftover
    (temp folders of unfinished saves, moved-aside and half-deleted folders). Only the run's
    single writer calls this (save_checkpoint does, first). Returns what it did, for the log."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    done = []
    for p in sorted(folder.iterdir()):
        if not p.name.startswith(".") or not p.is_dir():
            continue
        name = _aside(p)
        if name and not (folder / name).exists() and (p / "state.json").is_file():
            os.rename(p, folder / name)
            done.append(f"restored {name} from {p.name}")
        else:
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name}")
    if done:
        _fsync_dir(folder)
    return done


def save_checkpoint(
    run_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
    *,
    keep_last: int = 3,
    best: bool = False,
    discriminator: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> Path:
    """Write checkpoints/step-XXXXXXXX (and checkpoints/best when `best`); prune old ones.
    discriminator: (weights, optimizer state_dict) of the GAN term, when it is on."""
    opt_tensors, opt_meta = flatten_optimizer(optimizer_state)
    rng_tensors, rng_meta = rng_state()
    meta = {"format": FORMAT, "version": VERSION, "step": step, "optimizer": opt_meta,
            "rng": rng_meta, **state}  # fmt: skip
    files = {
        "model.safetensors": {k: v.detach().cpu().contiguous() for k, v in model_state.items()},
        "optimizer.safetensors": opt_tensors,
        "rng.safetensors": rng_tensors,
        "state.json": meta,
    }
    if discriminator is not None:
        d_weights, d_opt = discriminator
        d_tensors, meta["discriminator_optimizer"] = flatten_optimizer(d_opt)
        files[D_WEIGHTS] = {k: v.detach().cpu().contiguous() for k, v in d_weights.items()}
        files[D_OPTIMIZER] = d_tensors
    folder = Path(run_dir) / "checkpoints"
    path = folder / f"{PREFIX}{step:08d}"
    for line in repair(run_dir):
        log.warning("%s: %s (left by an interrupted save)", folder, line)
    previous = latest_checkpoint(run_dir)
    try:
        # best first: a kill between the two writes leaves best ahead of the latest step, and
        # a resume replays up to it and finds the same best again (never a best older than
        # the one the resumed run's monitor believes in)
        if best:
            _write_folder(folder / "best", files)
        _write_folder(path, files)
    except (OSError, SafetensorError) as exc:
        # safetensors writes in Rust and reports an OS error as SafetensorError("... (os error N)")
        code = getattr(exc, "errno", None)
        found = re.search(r"os error (\d+)", str(exc))
        code = code if code is not None else int(found.group(1)) if found else None
        reason = os.strerror(code) if code is not None else str(exc)
        what = "disk full" if code == errno.ENOSPC else "cannot write"
        kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier one"
        raise CheckpointError(f"{what} while saving checkpoint {path} ({reason}); "
                              f"{kept}") from None  # fmt: skip
    for old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        _remove_folder(old)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete step checkpoints of a run, oldest first (temp folders are not listed)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir()
             if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()
             and (p / "state.json").is_file()]  # fmt: skip
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint(path_or_run: str | os.PathLike, which: str = "best") -> Path:
    """A checkpoint folder, or a run folder (-> its `best`, else its latest checkpoint)."""
    p = Path(path_or_run)
    if (p / "state.json").is_file():
        return p
    if not p.exists():
        raise CheckpointError(f"{p}: no such run or checkpoint")
    if which == "best" and (p / "checkpoints" / "best" / "state.json").is_file():
        return p / "checkpoints" / "best"
    if which == "best":
        # a save killed while replacing best: the previous best, moved aside, until the run's
        # next save puts it back (repair)
        aside = [q for q in sorted((p / "checkpoints").glob(".best.old-*"))
                 if _aside(q) == "best" and (q / "state.json").is_file()]  # fmt: skip
        if aside:
            return aside[-1]
    latest = latest_checkpoint(p)
    if latest is None:
        raise CheckpointError(f"{p}: no checkpoint found (train the model first)")
    return latest


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's state.json, checked to be ours and of a version this faceswap reads."""
    path = Path(path)
    try:
        meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not a faceswap checkpoint (no state.json)") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, OSError):
        raise CheckpointError(f"{path / 'state.json'}: corrupt (not valid JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a faceswap checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')!r} is not "
                              f"supported (this faceswap reads {VERSION})")  # fmt: skip
    return meta


def _tensors(path: Path, name: str) -> dict[str, torch.Tensor]:
    f = path / name
    if not f.is_file():
        raise CheckpointError(f"{f}: missing (incomplete or not a faceswap checkpoint)")
    try:
        return load_file(str(f))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{f}: corrupt or not a safetensors file ({exc})") from None


def load_model_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(model tensors, state.json) of a checkpoint, without its optimizer and RNG state: what
    weight import and fit-training read from a source run."""
    path = Path(path)
    meta = read_state(path)
    return _tensors(path, "model.safetensors"), meta


def _optimizer(path: Path, name: str, meta: Any) -> dict[str, Any]:
    """An optimizer state_dict from its tensors file and its state.json part."""
    tensors = _tensors(path, name)
    try:  # tensor names and state.json are data from the file: "<param>.<key>", a dict
        return unflatten_optimizer(tensors, meta)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{path}: malformed optimizer state ({exc.__class__.__name__}: "
                              f"{str(exc)[:200]})") from None  # fmt: skip


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """{"model": tensors, "optimizer": state_dict, "rng": (tensors, meta), "state": json}, plus
    "discriminator": {"model": tensors, "optimizer": state_dict} when the run had one."""
    path = Path(path)
    meta = read_state(path)
    optimizer = _optimizer(path, "optimizer.safetensors", meta.get("optimizer", {}))
    data = {
        "model": _tensors(path, "model.safetensors"),
        "optimizer": optimizer,
        "rng": (_tensors(path, "rng.safetensors"), meta.get("rng", {})),
        "state": meta,
    }
    if (path / D_WEIGHTS).is_file():
        data["discriminator"] = {
            "model": _tensors(path, D_WEIGHTS),
            "optimizer": _optimizer(path, D_OPTIMIZER, meta.get("discriminator_optimizer", {})),
        }
    return data


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, state: dict[str, Any], what: str = "optimizer"
) -> None:
    """optimizer.load_state_dict, checked: a moment whose shape is not its parameter's raises
    ValueError (load_state_dict only checks counts), and one saved in another memory layout
    is copied into its parameter's (saved contiguous; the fused AdamW kernel walks a moment and
    its parameter as flat memory, so they must share a layout: channels_last)."""
    optimizer.load_state_dict(state)
    for p, pst in optimizer.state.items():
        for key, t in pst.items():
            if not (torch.is_tensor(t) and t.dim()):
                continue
            if t.shape != p.shape:
                raise ValueError(f"{what} {key} is {tuple(t.shape)} for a parameter of "
                                 f"{tuple(p.shape)}")  # fmt: skip
            if t.stride() != p.stride():
                pst[key] = torch.empty_like(p).copy_(t)
