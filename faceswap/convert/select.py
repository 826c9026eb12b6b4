"""Which faces to swap: all, or only those of the model's identity (embedding distance).

With `select: identity` a face is swapped when its dlib identity embedding lies within
`threshold` of the nearest reference embedding (0.6 is dlib's same-person threshold). The
references are embeddings of the identity in the clip: the faces of `--identity` photos, or
else the training face set of that identity (A for a2b), as recorded in the checkpoint.

An embedding costs ~130 ms per face on a CPU core, so a tracked face is embedded when its track
starts and then every `every` frames; the frames in between reuse the verdict. Faces that come
with an embedding (from an --alignments face set) use theirs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceswap import faceset as fsmod
from faceswap.errors import BadInput
from faceswap.extract.identity import distances

log = logging.getLogger(__name__)

MAX_REFS = 512  # nearest-of-K distance: more references add time, not accuracy


def faceset_references(path: str | Path | None, side: str) -> np.ndarray:
    """(K, 128) embeddings of a training face set; BadInput if there are none."""
    if path is None:  # none recorded, or a pooled side (a base over several identities)
        raise BadInput(f"select identity needs reference faces: the run records no single "
                       f"training face set of {side.upper()} (pooled?); pass --identity "
                       "PHOTO")  # fmt: skip
    if not fsmod.is_faceset(Path(path)):
        raise BadInput(f"select identity needs reference faces: the training face set of "
                       f"{side.upper()} ({path}) is not there; pass --identity PHOTO")  # fmt: skip
    emb, _ = fsmod.load(path).embeddings()
    if len(emb) == 0:
        raise BadInput(f"{path}: face set has no identity embeddings (extracted with "
                       "--no-embed); pass --identity PHOTO")  # fmt: skip
    if len(emb) > MAX_REFS:
        emb = emb[np.linspace(0, len(emb) - 1, MAX_REFS).round().astype(int)]
    return emb


def photo_references(photos: list[str], cfg) -> np.ndarray:
    """(K, 128) embeddings of the largest face in each photo (as `extract --identity`)."""
    import dataclasses

    from faceswap.extract.finder import FaceFinder
    from faceswap.extract.pipeline import identity_references, resolve_backends

    cfg = dataclasses.replace(cfg, embed=True)
    return identity_references(photos, FaceFinder(cfg, resolve_backends(cfg)))


@dataclass
class _Verdict:
    frame: int
    keep: bool
    distance: float


class IdentitySelector:
    """Per track: embed now and then, keep the face if it is the reference identity."""

    def __init__(self, refs: np.ndarray, threshold: float, every: int) -> None:
        self.refs = np.asarray(refs, np.float32)
        self.threshold = threshold
        self.every = every
        self.embedder = None  # a DlibEmbedder, loaded when the first face needs one
        self.verdicts: dict[int, _Verdict] = {}
        self.embedded = 0
        self.nearest = float("inf")  # smallest distance seen, for the "no match" message

    def keep(self, frame_rgb: np.ndarray, index: int, track: int, landmarks: np.ndarray,
             embedding: np.ndarray | None = None) -> bool:  # fmt: skip
        v = self.verdicts.get(track)
        if embedding is None and v is not None and index - v.frame < self.every:
            return v.keep
        if embedding is None:
            if self.embedder is None:
                from faceswap.extract.identity import DlibEmbedder

                self.embedder = DlibEmbedder()
            embedding = self.embedder.embed(frame_rgb, np.asarray(landmarks))
            self.embedded += 1
        d = float(distances(embedding, self.refs)[0])
        self.nearest = min(self.nearest, d)
        v = _Verdict(index, d <= self.threshold, d)
        self.verdicts[track] = v
        return v.keep
