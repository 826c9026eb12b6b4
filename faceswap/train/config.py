"""TrainConfig: everything `faceswap train` needs, composed of the stage configs."""

from __future__ import annotations

from dataclasses import dataclass, field

from faceswap.config import check, option
from faceswap.data.augment import AugmentConfig
from faceswap.models.config import ModelConfig
from faceswap.train.budget import CLOCKS
from faceswap.train.losses import LossConfig
from faceswap.train.schedules import ScheduleConfig
from faceswap.train.weight_import import check_freeze

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Settings of `faceswap train`. Sub-sections: model, augment, loss, schedule."""

    model: ModelConfig = field(
        default_factory=ModelConfig,
        metadata={"help": "architecture: its fields, or a preset's name or a model YAML's path "
                  "(`model: lightweight-128`, as --model takes)"},
    )  # fmt: skip
    augment: AugmentConfig = field(default_factory=AugmentConfig, metadata={"help": "augmentation"})
    loss: LossConfig = field(default_factory=LossConfig, metadata={"help": "loss terms"})
    schedule: ScheduleConfig = field(
        default_factory=ScheduleConfig, metadata={"help": "LR schedule"}
    )
    steps: int = option(10_000, "training steps (one step = one batch of A and one of B)")
    budget: float = option(
        0.0,
        "seconds to train (0 = off): the LR schedule is laid over the steps it is estimated "
        "to hold and the run ends at it with a final save; steps is then an upper bound",
    )
    budget_clock: str = option(
        "wall", "the budget's clock: wall, or cpu (process CPU time, for benchmarks)"
    )
    batch_size: int = option(4, "faces per side per step (the CPU default's; on CUDA, without "
                             "a model named, 8)")  # fmt: skip
    seed: int = option(0, "seed of the split, data order, augmentation and init")
    val_fraction: float = option(0.05, "share of each face set held out for validation")
    balance_yaw: bool = option(
        False,
        "draw training faces evenly over 10-degree yaw bins (rare head turns as often "
        "as frontal faces)",
    )
    val_every: int = option(250, "steps between validation runs (or val_minutes, first wins)")
    val_minutes: float = option(1.5, "minutes between validation runs (0 = by steps only)")
    val_batches: int = option(4, "batches per side per validation run (0 = all)")
    overfit_evals: int = option(3, "warn when validation rises this many evaluations in a row")
    early_stop: int = option(0, "stop after this many evaluations without a new best (0 = off)")
    save_every: int = option(500, "steps between checkpoints (or save_minutes, first wins)")
    save_minutes: float = option(5.0, "minutes between checkpoints (0 = by steps only)")
    keep_last: int = option(3, "step checkpoints kept (plus best)")
    preview_every: int = option(250, "steps between preview grids (or preview_minutes)")
    preview_minutes: float = option(1.5, "minutes between preview grids (0 = by steps only)")
    log_every: int = option(10, "steps between TensorBoard scalars")
    weight_decay: float = option(0.0, "AdamW weight decay")
    beta1: float = option(0.5, "AdamW beta1 (0.5 as in the classic faceswap trainers)")
    beta2: float = option(0.999, "AdamW beta2")
    grad_clip: float = option(1.0, "clip the gradient norm to this (0 = off)")
    precision: str = option(
        "auto",
        "auto (bf16 on CUDA if supported and on CPUs with native bf16, else fp32), fp32, bf16, fp16",
    )
    channels_last: bool = option(True, "channels_last memory format (faster convolutions)")
    compile: bool = option(False, "torch.compile the model")
    device: str = option("auto", "auto, cpu or cuda")
    num_workers: int = option(0, "data loader worker processes (CPU augmentation)")
    cpu_heap: bool = option(
        True, "on CPU (glibc): keep freed memory in the heap, no page faults every step"
    )
    nan_patience: int = option(5, "non-finite losses in a row before rolling back")
    nan_lr_factor: float = option(0.5, "LR multiplier applied after a rollback")
    collapse_rollback: bool = option(
        True, "when a decoder collapses to one flat colour, go back to the weights of the last "
        "validation that drew faces and multiply the LR by nan_lr_factor",
    )  # fmt: skip
    freeze: dict[str, int] = option(
        {},
        "parts (encoder, decoder_a, decoder_b; liae: encoder, inter_ab, inter_a, decoder) "
        "frozen for their first N steps, 0 = all run",
    )

    def __post_init__(self) -> None:
        check(self.steps >= 1, "steps must be >= 1")
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check(self.budget >= 0 and self.budget == self.budget, "budget must be >= 0 seconds")
        check(self.budget_clock in CLOCKS, f"budget_clock must be one of {', '.join(CLOCKS)}")
        check(0.0 < self.val_fraction < 0.5, "val_fraction must be in (0, 0.5)")
        for name in ("val_every", "save_every", "preview_every", "log_every"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1")
        for name in ("val_minutes", "save_minutes", "preview_minutes"):
            check(getattr(self, name) >= 0, f"{name} must be >= 0")
        check(self.val_batches >= 0, "val_batches must be >= 0")
        check(self.overfit_evals >= 2, "overfit_evals must be >= 2")
        check(self.early_stop >= 0, "early_stop must be >= 0")
        check(self.keep_last >= 1, "keep_last must be >= 1")
        check(self.grad_clip >= 0, "grad_clip must be >= 0")
        # AdamW's own checks would otherwise fail later, as an internal error
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must be in [0, 1)")
        check(self.weight_decay >= 0, "weight_decay must be >= 0")
        check(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
               f"device must be auto, cpu or cuda, not {self.device!r}")  # fmt: skip
        check(self.num_workers >= 0, "num_workers must be >= 0")
        check(self.nan_patience >= 1, "nan_patience must be >= 1")
        check(0 < self.nan_lr_factor <= 1, "nan_lr_factor must be in (0, 1]")
        check_freeze(self.freeze, self.model.arch)


def train_config_from(data: dict, where: str) -> TrainConfig:
    """A TrainConfig from config-file data. `model` may name a preset or a model YAML, as
    `--model` does (`model: lightweight-128`), or spell the model section out."""
    from faceswap.config import from_dict, to_dict
    from faceswap.errors import BadInput
    from faceswap.models import model_config_from

    if isinstance(data.get("model"), str):
        try:
            model = model_config_from(data["model"], {})
        except BadInput as exc:
            raise BadInput(f"{where}: model: {exc}") from None
        data = {**data, "model": to_dict(model)}
    return from_dict(TrainConfig, data, where)


def apply_device_defaults(cfg: TrainConfig, given: dict) -> str | None:
    """Without a model in `given` (the keys the user set: config file and options), give `cfg`
    the device's default preset (presets.DEFAULT_PRESET) with the peak LR and batch measured
    with it, unless those were given. Returns the preset chosen, or None when a model was
    named. `faceswap train` and scripts/bench_quality.py's defaults both come from here."""
    if "model" in given:
        return None
    from faceswap.models import model_config_from
    from faceswap.models.presets import default_batch, default_lr, default_preset
    from faceswap.train.trainer import pick_device

    device = pick_device(cfg.device).type
    name = default_preset(device)
    cfg.model = model_config_from(name, {})
    if "lr" not in (given.get("schedule") or {}):
        cfg.schedule.lr = default_lr(device)
    if "batch_size" not in given:
        cfg.batch_size = default_batch(device)
    return name
