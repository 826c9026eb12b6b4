"""A run's train/validation split, kept in its folder (`split.json`).

The split is a function of the face set, the seed and the split rule. Kept with the run, a
resume (and `faceswap evaluate`) validates on the faces the run held out when it started, even
after the rule changed (a newer version) or faces were added: a face that trained is never
counted as validation, and the validation loss of a resumed run continues its curve. A run
without the file (started by an older version) gets the split the rule gives today.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from faceswap import faceset as fsmod
from faceswap.data.split import DEFAULT_GAP, split_train_val, train_around
from faceswap.errors import BadInput
from faceswap.faceset import Face, FaceSet

log = logging.getLogger(__name__)

SPLIT_FILE = "split.json"
VERSION = 1


def face_key(face: Face) -> str:
    """A face's name within its set: its source key and file (a pool's source keys carry the
    member's index, so two members' faces never share a key)."""
    return f"{face.source}|{face.file}"


def read_split(run_dir: Path) -> dict[str, list[str]]:
    """{side: validation face keys} of the run; {} when the run has none recorded."""
    path = Path(run_dir) / SPLIT_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {side: list(map(str, keys)) for side, keys in data["val"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise BadInput(f"{path}: not a readable split record (delete it to split anew; the "
                       "run then validates on the faces today's rule holds out)") from None  # fmt: skip


def write_split(run_dir: Path, sets: dict[str, FaceSet], val: dict[str, list[int]]) -> None:
    """Record the validation faces of each side (atomically: a torn file is never left)."""
    data = {"version": VERSION, "gap": DEFAULT_GAP,
            "val": {side: [face_key(sets[side].faces[i]) for i in idx]
                    for side, idx in val.items()}}  # fmt: skip
    fsmod.atomic_write_text(Path(run_dir) / SPLIT_FILE, json.dumps(data, indent=1) + "\n")


def run_split(
    fs: FaceSet, side: str, recorded: dict[str, list[str]], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """(train, val) indices of one side: the recorded validation faces where the run has a
    record for this side, else the split the rule gives. Training faces are every other face
    beyond the guard band, so faces added since the run started train."""
    keys = recorded.get(side)
    if keys is None:
        return split_train_val(fs, val_fraction, seed=seed)
    wanted = set(keys)
    val = [i for i, f in enumerate(fs.faces) if face_key(f) in wanted]
    if keys and not val:
        log.warning("face set %s: none of the run's %d validation faces is in %s; splitting "
                    "anew", side.upper(), len(keys), fs.root)  # fmt: skip
        return split_train_val(fs, val_fraction, seed=seed)
    if len(val) < len(keys):
        log.warning("face set %s: %d of the run's %d validation faces are gone from %s",
                    side.upper(), len(keys) - len(val), len(keys), fs.root)  # fmt: skip
    train = train_around(fs, val)
    if not train:
        raise BadInput(f"face set {side.upper()} ({fs.root}): no training face is left beside "
                       "the run's recorded validation faces")  # fmt: skip
    return train, val
