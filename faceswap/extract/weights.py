"""Where model weights live: dlib's files ship in `face-recognition-models`; face-alignment's
S3FD and 2D-FAN weights are downloaded once (on a machine with internet) to the torch hub cache
or a folder the user names.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from faceswap.errors import MissingBackend

DLIB_FILES = {
    "dlib-cnn": "mmod_human_face_detector.dat",
    "dlib-landmarks": "shape_predictor_68_face_landmarks.dat",
    "dlib-identity": "dlib_face_recognition_resnet_model_v1.dat",
}

_FA_BASE = "https://www.adrianbulat.com/downloads/python-fan/"
FACE_ALIGNMENT_FILES = {
    "s3fd": "s3fd-619a316812.pth",
    "fan": "2DFAN4-11f355bf06.pth.tar",
}
WEIGHTS_ENV = "FACESWAP_WEIGHTS"


@dataclass(frozen=True)
class WeightInfo:
    """One weight file: which backend uses it, where it is (or would be), and whether it is there."""

    name: str
    package: str
    file: str
    path: Path | None
    source: str

    @property
    def present(self) -> bool:
        return self.path is not None and self.path.is_file()


def dlib_models_dir() -> Path | None:
    """The models folder of `face_recognition_models`, located without importing the package
    (its __init__ imports pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def dlib_weight(name: str) -> Path:
    """Path of a dlib model file, or MissingBackend saying how to get it."""
    folder = dlib_models_dir()
    path = folder / DLIB_FILES[name] if folder else None
    if path is None or not path.is_file():
        raise MissingBackend(
            f"{name}: {DLIB_FILES[name]} not found; install it with "
            "'pip install face-recognition-models'"
        )
    return path


def hub_checkpoints_dir() -> Path:
    """torch.hub's checkpoint folder. Worked out the way torch.hub.get_dir() does when torch is
    not loaded yet: looking for weight files must not cost a CPU-only dlib run the seconds of
    importing torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return Path(torch.hub.get_dir()) / "checkpoints"
    if os.environ.get("TORCH_HOME"):
        hub = Path(os.environ["TORCH_HOME"]).expanduser() / "hub"
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        hub = Path(cache).expanduser() / "torch" / "hub"
    return hub / "checkpoints"


def search_dirs(weights_dir: str | os.PathLike | None) -> list[Path]:
    """Folders searched for face-alignment weights, in order."""
    dirs = []
    if weights_dir:
        dirs.append(Path(weights_dir))
    if os.environ.get(WEIGHTS_ENV):
        dirs.append(Path(os.environ[WEIGHTS_ENV]))
    dirs.append(hub_checkpoints_dir())
    return dirs


def find_face_alignment_weight(name: str, weights_dir: str | os.PathLike | None) -> Path | None:
    for folder in search_dirs(weights_dir):
        path = folder / FACE_ALIGNMENT_FILES[name]
        if path.is_file():
            return path
    return None


def face_alignment_weight(name: str, weights_dir: str | os.PathLike | None) -> Path:
    """Path of an S3FD/FAN weight file, or MissingBackend saying how to get it."""
    path = find_face_alignment_weight(name, weights_dir)
    if path is None:
        where = ", ".join(str(d) for d in search_dirs(weights_dir))
        raise MissingBackend(
            f"{name}: weights {FACE_ALIGNMENT_FILES[name]} not found in {where}; run "
            f"'faceswap weights download {name}' on a machine with internet, or copy the file "
            "there and pass --weights-dir"
        )
    return path


def list_weights(weights_dir: str | os.PathLike | None = None) -> list[WeightInfo]:
    """Every weight file the backends use, with where it was found."""
    rows = []
    folder = dlib_models_dir()
    for name, file in DLIB_FILES.items():
        path = folder / file if folder else None
        rows.append(WeightInfo(name, "face-recognition-models", file, path, "pip package"))
    for name, file in FACE_ALIGNMENT_FILES.items():
        found = find_face_alignment_weight(name, weights_dir)
        target = found or search_dirs(weights_dir)[0] / file
        rows.append(WeightInfo(name, "face-alignment", file, target, _FA_BASE + file))
    return rows


def download_face_alignment(name: str, weights_dir: str | os.PathLike | None) -> Path:
    """Fetch one face-alignment weight file (needs internet); atomic, so a broken download
    never leaves a truncated file behind."""
    import torch

    if name not in FACE_ALIGNMENT_FILES:
        raise MissingBackend(
            f"unknown weight {name!r} (downloadable: {', '.join(FACE_ALIGNMENT_FILES)})"
        )
    existing = find_face_alignment_weight(name, weights_dir)
    if existing is not None:
        return existing
    folder = search_dirs(weights_dir)[0]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / FACE_ALIGNMENT_FILES[name]
    url = _FA_BASE + FACE_ALIGNMENT_FILES[name]
    try:
        # download_url_to_file writes to a temp file and renames it when complete
        torch.hub.download_url_to_file(url, str(target), progress=False)
    except Exception as exc:  # network errors come in many types
        raise MissingBackend(
            f"{name}: download from {url} failed ({exc.__class__.__name__}); copy "
            f"{FACE_ALIGNMENT_FILES[name]} into {folder} by hand"
        ) from None
    return target
