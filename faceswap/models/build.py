"""Architecture name -> Spec builder (a plain dict, as everywhere in faceswap)."""

from __future__ import annotations

from collections.abc import Callable

from faceswap.models.autoencoder import Autoencoder, Spec
from faceswap.models.config import ModelConfig
from faceswap.models.dfl import h128_spec
from faceswap.models.liae import LiaeAutoencoder, liae_spec
from faceswap.models.original import lightweight_spec, original_spec
from faceswap.models.sae import sae_spec

ARCHS: dict[str, Callable[[ModelConfig], Spec]] = {
    "original": original_spec,
    "lightweight": lightweight_spec,
    "dfl-h128": h128_spec,
    "sae": sae_spec,
    "liae": liae_spec,
}
FaceModel = Autoencoder | LiaeAutoencoder


def build_spec(cfg: ModelConfig) -> Spec:
    """Resolved layer widths for a config (no weights allocated)."""
    return ARCHS[cfg.arch](cfg)


def build_model(cfg: ModelConfig) -> FaceModel:
    """A freshly initialised autoencoder (on the current default device and dtype)."""
    cls = LiaeAutoencoder if cfg.arch == "liae" else Autoencoder
    return cls(cfg, build_spec(cfg))
