"""Identity of swapped faces: distances to identity centroids and identity retrieval.

Embeddings are dlib's 128-D face descriptors; two faces of one person are usually within 0.6.
A swap A->B should sit near B's centroid and far from A's; *retrieval* is the share of swaps
whose nearest centroid, among all identities given, is B's.
"""

from __future__ import annotations

import math

import numpy as np

from faceswap.curate import _robust_centroid
from faceswap.evaluate.metrics import summarize
from faceswap.extract.identity import SAME_PERSON


def centroid(embeddings: np.ndarray) -> np.ndarray:
    """(128,) robust centroid of (N, 128) embeddings (median, then the mean of the 80% nearest
    to it), the same one `faceswap faceset` measures identity spread with."""
    emb = np.asarray(embeddings, np.float64)
    if emb.ndim != 2 or len(emb) == 0:
        raise ValueError("centroid needs at least one embedding")
    return _robust_centroid(emb)


def centroid_distances(
    embeddings: np.ndarray, centroids: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """name -> (N,) Euclidean distance of each embedding to that identity's centroid."""
    emb = np.atleast_2d(np.asarray(embeddings, np.float64))
    return {k: np.linalg.norm(emb - np.asarray(c, np.float64)[None], axis=1)
            for k, c in centroids.items()}  # fmt: skip


def identity_scores(
    embeddings: np.ndarray, centroids: dict[str, np.ndarray], target: str
) -> dict[str, object]:
    """How much faces look like `target` among `centroids` (names -> (128,) centroids).

    distance_to: per identity, summary of the distances; retrieval: share of faces whose nearest
    centroid is `target`; nearest: count per identity; same_person: share within 0.6 of target.
    """
    if target not in centroids:
        raise ValueError(f"target {target!r} is not among the centroids")
    names = list(centroids)
    dist = centroid_distances(embeddings, centroids)
    n = len(next(iter(dist.values()))) if dist else 0
    if n == 0:
        return {"faces": 0, "distance_to": {}, "retrieval": None, "nearest": {},
                "same_person": None}  # fmt: skip
    stack = np.stack([dist[k] for k in names])  # (identities, N)
    nearest = np.argmin(stack, axis=0)
    t = names.index(target)
    return {
        "faces": n,
        "distance_to": {k: summarize(dist[k]) for k in names},
        "retrieval": round(float(np.mean(nearest == t)), 5),
        "nearest": {k: int(np.sum(nearest == i)) for i, k in enumerate(names)},
        "same_person": round(float(np.mean(dist[target] < SAME_PERSON)), 5),
    }


def centroid_gap(centroids: dict[str, np.ndarray]) -> dict[str, float]:
    """Pairwise distances between centroids, "a-b": d. Below ~0.6 dlib sees one person, and
    identity numbers cannot tell the identities apart."""
    names = list(centroids)
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            d = float(np.linalg.norm(np.asarray(centroids[a]) - np.asarray(centroids[b])))
            out[f"{a}-{b}"] = round(d, 5) if math.isfinite(d) else None
    return out
