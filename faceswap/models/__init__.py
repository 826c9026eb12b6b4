"""Model architectures: a shared encoder and one decoder per identity.

    cfg = load_preset("original")                # or model_config_from("x.yaml", {"icnr": False})
    model = build_model(cfg)
    z = model.encode(faces_a)                    # (B, 3, R, R) in [0, 1] -> latent
    rgb, mask = model.decode(z, "b")             # the swap: A's pose/expression, B's identity

Architectures (ModelConfig.arch): original, lightweight, dfl-h128, sae; presets in PRESETS.
"""

from __future__ import annotations

from faceswap.models.autoencoder import SIDES, Autoencoder, Decoder, Encoder, Spec
from faceswap.models.build import ARCHS, build_model, build_spec
from faceswap.models.config import ARCH_NAMES, ModelConfig
from faceswap.models.measure import count_parameters, flops_per_sample
from faceswap.models.presets import (
    PRESET_VALUES,
    PRESETS,
    load_preset,
    model_config_from,
    render_preset_yaml,
    write_preset_yaml,
)

__all__ = [
    "ARCHS",
    "ARCH_NAMES",
    "PRESETS",
    "PRESET_VALUES",
    "SIDES",
    "Autoencoder",
    "Decoder",
    "Encoder",
    "ModelConfig",
    "Spec",
    "build_model",
    "build_spec",
    "count_parameters",
    "flops_per_sample",
    "load_preset",
    "model_config_from",
    "render_preset_yaml",
    "write_preset_yaml",
]
