"""Size and cost of a model: parameter counts and FLOPs per training sample."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from faceswap.config import to_dict
from faceswap.models.autoencoder import Autoencoder
from faceswap.models.build import build_model
from faceswap.models.config import ModelConfig
from faceswap.models.liae import LiaeAutoencoder

log = logging.getLogger(__name__)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(model: nn.Module, resolution: int | None = None) -> dict[str, int]:
    """FLOPs for ONE training sample through the encoder and its own decoder (side "a").

    Measured with FlopCounterMode (a multiply-add counts 2) on a batch of 2, divided by 2:
    "forward" is encode + decode, "forward_backward" adds loss.backward() (no gradient w.r.t.
    the input image, as in training). An Autoencoder is rebuilt on the meta device so nothing
    is computed or allocated; any other module runs for real where its parameters live.
    """
    batch = 2
    if isinstance(model, (Autoencoder, LiaeAutoencoder)):
        res = resolution or model.config.resolution
        with torch.device("meta"):
            net: nn.Module = build_model(model.config)
        device = torch.device("meta")
    else:
        if resolution is None:
            raise ValueError("resolution is needed for a model that is not an Autoencoder")
        res, net = resolution, model
        device = next(model.parameters()).device
    x = torch.rand(batch, 3, res, res, device=device)
    with FlopCounterMode(display=False) as counter:
        rgb, mask = net(x, "a")
        forward = counter.get_total_flops()
        loss = rgb.float().mean()
        if mask is not None:
            loss = loss + mask.float().mean()
        loss.backward()
        total = counter.get_total_flops()
    net.zero_grad(set_to_none=True)
    return {"forward": forward // batch, "forward_backward": total // batch}


# ---- cached FLOP counts -----------------------------------------------------------------------

CACHE_ENV = "FACESWAP_CACHE_DIR"


def cache_dir() -> Path:
    """Where faceswap keeps small derived facts (FLOP counts): $FACESWAP_CACHE_DIR, else
    $XDG_CACHE_HOME/faceswap, else ~/.cache/faceswap."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faceswap"


def _config_key(config: ModelConfig, resolution: int) -> str:
    """A model's FLOPs depend on its architecture config, the input side and the torch version
    (operator decompositions change what FlopCounterMode sees), nothing else."""
    text = json.dumps(
        {"model": to_dict(config), "resolution": resolution, "torch": torch.__version__},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_flops_per_sample(config: ModelConfig, resolution: int | None = None) -> dict[str, int]:
    """flops_per_sample of the model `config` builds, counted once per (config, resolution,
    torch version) and kept in cache_dir()/flops.json: counting traces a forward and a backward
    pass (~4 s for the large presets), which would otherwise delay every train start-up.

    The cache is advisory: an unreadable or unwritable file only costs a recount."""
    res = resolution or config.resolution
    key = _config_key(config, res)
    path = cache_dir() / "flops.json"
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        table = {}
    if not isinstance(table, dict):
        table = {}
    hit = table.get(key)
    if (
        isinstance(hit, dict)
        and all(isinstance(hit.get(k), int) and hit[k] > 0 for k in ("forward", "forward_backward"))
    ):  # fmt: skip
        return {"forward": hit["forward"], "forward_backward": hit["forward_backward"]}
    with torch.device("meta"):
        model = build_model(config)
    flops = flops_per_sample(model, res)
    table[key] = flops
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # temp + rename: two trainers starting at once never leave a torn file
        fd, tmp = tempfile.mkstemp(prefix=".flops.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(table, fh)
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("FLOP-count cache not written (%s): %s", path, exc)
    return flops
