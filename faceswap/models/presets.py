"""Named model presets. The dicts here are canonical; configs/models/*.yaml are generated copies.

Keeping the presets in Python means `load_preset` works from an installed (non-editable)
package, where the repository's configs/ folder does not exist. Regenerate the YAML copies
after editing PRESET_VALUES with
`python -c "from faceswap.models import write_preset_yaml; write_preset_yaml()"`
(a test checks they match).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from faceswap.config import field_help, from_dict, load_yaml, to_dict
from faceswap.errors import BadInput
from faceswap.models.config import ModelConfig

PRESET_VALUES: dict[str, dict[str, Any]] = {
    # deepfakes/faceswap "original": 82 M parameters, ~11 GFLOP per 64 px training sample.
    "original": {"arch": "original", "resolution": 64, "encoder_dims": 128, "decoder_dims": 64,
                 "bottleneck": 1024},
    # For CPUs and small GPUs: ~15 M parameters, a quarter of original's FLOPs.
    "lightweight": {"arch": "lightweight", "resolution": 64, "encoder_dims": 64,
                    "decoder_dims": 32, "bottleneck": 512},
    # lightweight at 128 px: a half-width stage added at each end (1.38x lightweight's FLOPs,
    # ~1.5x its time a step), for more than 64 px of detail on a CPU: the CPU default. One run in
    # four at LR 8e-4 collapsed to a flat colour before the trainer rolled collapses back.
    "lightweight-128": {"arch": "lightweight", "resolution": 128, "encoder_dims": 64,
                        "decoder_dims": 32, "bottleneck": 512},
    # lightweight at 256 px: a second octave of narrow stages (E/4 in, D/2 out), for faces a
    # viewer sees with more than ~60 px between the eyes, where a 128 px face is upscaled 2-3x.
    "lightweight-256": {"arch": "lightweight", "resolution": 256, "encoder_dims": 64,
                        "decoder_dims": 32, "bottleneck": 512},
    # DeepFaceLab H128.
    "dfl-h128": {"arch": "dfl-h128", "resolution": 128, "encoder_dims": 128,
                 "decoder_dims": 128, "bottleneck": 512},
    # DeepFaceLab SAEHD defaults (df layout) at 128 px, and a 256 px version with a wider code.
    "sae-128": {"arch": "sae", "resolution": 128, "encoder_dims": 64, "decoder_dims": 64,
                "bottleneck": 256},
    "sae-256": {"arch": "sae", "resolution": 256, "encoder_dims": 64, "decoder_dims": 64,
                "bottleneck": 512},
    # SAE at 128 px with half sae-128's encoder and a quarter of its decoder widths: ~12 GFLOP a
    # training sample (5x lightweight), sized for a CPU that wants more than 64 px of detail
    # (docs/quality.md: detail 0.60 of B's real faces at 2,400 CPU-seconds on d9-face2).
    "sae-128-lite": {"arch": "sae", "resolution": 128, "encoder_dims": 32, "decoder_dims": 16,
                     "bottleneck": 256},
    # DeepFaceLab's LIAE: lightweight's widths at 64 px (CPU), SAE's at 128 px (GPU).
    "liae-64": {"arch": "liae", "resolution": 64, "encoder_dims": 64, "decoder_dims": 32,
                "bottleneck": 512},
    "liae-128": {"arch": "liae", "resolution": 128, "encoder_dims": 64, "decoder_dims": 64,
                 "bottleneck": 256},
}  # fmt: skip

# The model `faceswap train` builds when none is named: what trains best in an hour on the
# device. CPU: `lightweight-128` held 1.6-1.9x `lightweight`'s detail at 1,200 CPU-seconds on
# both real pairs with identity kept, over two machines and seeds (docs/quality.md), with the
# trainer's collapse rollback behind it. CUDA: not measured here (no GPU); LIAE is
# DeepFaceLab's usual choice there.
DEFAULT_PRESET = {"cpu": "lightweight-128", "cuda": "liae-128"}


def default_preset(device_type: str) -> str:
    """The preset a run on this device type ("cpu", "cuda") gets by default."""
    return DEFAULT_PRESET.get(device_type, DEFAULT_PRESET["cpu"])


# The peak LR and batch that go with the device's default preset when none is given. CPU:
# 8e-4 and 4 a side, the TrainConfig defaults. At 1,200 CPU-seconds of a 2-core AVX2 machine
# (~1,000-1,400 steps) they took d9-face2 from 9% of frames verified as B (4e-4, batch 8) to
# 95% and 96% over two seeds (8e-4 at batch 8: 87%), d9-d6 staying at 100% (docs/quality.md).
# CUDA: 4e-4 and 8, the defaults before, as `liae-128` is not measured there.
DEFAULT_LR = {"cpu": 8e-4, "cuda": 4e-4}
DEFAULT_BATCH = {"cpu": 4, "cuda": 8}


def default_lr(device_type: str) -> float:
    """The peak LR of the default preset on this device type."""
    return DEFAULT_LR.get(device_type, DEFAULT_LR["cpu"])


def default_batch(device_type: str) -> int:
    """Faces per side per step of the default preset on this device type."""
    return DEFAULT_BATCH.get(device_type, DEFAULT_BATCH["cpu"])


# Where the generated copies live in a source checkout (absent in an installed package).
PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "models"
PRESETS: dict[str, Path] = {name: PRESET_DIR / f"{name}.yaml" for name in PRESET_VALUES}


def _unknown(name: str) -> BadInput:
    return BadInput(
        f"unknown model preset {name!r} (valid presets: {', '.join(PRESET_VALUES)}; "
        "or give a path to a .yaml file)"
    )


def load_preset(name: str) -> ModelConfig:
    """The ModelConfig of a named preset; an unknown name raises BadInput listing the valid ones."""
    if name not in PRESET_VALUES:
        raise _unknown(name)
    return from_dict(ModelConfig, dict(PRESET_VALUES[name]), f"model preset {name}")


def _looks_like_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or os.sep in text or "/" in text


def model_config_from(name_or_yaml: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """Preset name or YAML path, then `overrides` (None values skipped) -> ModelConfig."""
    if name_or_yaml in PRESET_VALUES:
        data = dict(PRESET_VALUES[name_or_yaml])
        where = f"model preset {name_or_yaml}"
    elif _looks_like_path(name_or_yaml) or Path(name_or_yaml).is_file():
        data = load_yaml(name_or_yaml)
        where = str(name_or_yaml)
    else:
        raise _unknown(name_or_yaml)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(ModelConfig, data, where)


def render_preset_yaml(name: str) -> str:
    """The text of configs/models/<name>.yaml: every ModelConfig field, with its help."""
    cfg = load_preset(name)
    helps = field_help(ModelConfig)
    lines = [
        f"# Model preset {name!r}: generated by faceswap.models.presets.write_preset_yaml",
        "# from PRESET_VALUES in faceswap/models/presets.py; edit that dict and regenerate.",
    ]
    for key, value in to_dict(cfg).items():
        item = yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=False).strip()
        lines.append(f"{item:<24}# {helps[key]}")
    return "\n".join(lines) + "\n"


def write_preset_yaml(directory: str | os.PathLike = PRESET_DIR) -> list[Path]:
    """Write <directory>/<name>.yaml for every preset; returns the paths written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PRESET_VALUES:
        path = out / f"{name}.yaml"
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(render_preset_yaml(name), encoding="utf-8")
        tmp.replace(path)
        paths.append(path)
    return paths
