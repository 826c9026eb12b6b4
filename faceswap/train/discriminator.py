"""The optional patch-GAN term (loss.gan_power, after DeepFaceLab SAEHD's gan_power).

Pixel losses (MAE, SSIM) reward the mean of the plausible faces, which is blurred; a
discriminator that tells real face patches from decoded ones rewards the high-frequency detail
(pores, hair, teeth edges) they average away. DFL users switch it on once the model has
converged; here it starts at `gan_start` of the run.

    D: (B, 3, R, R) face, masked -> (B, 1, R/8, R/8) logits, one per ~38 px patch
    after gan_start, each step:
        G term = gan_power * softplus(-D(fake)).mean()     added to the reconstruction loss
        D step = 0.5 * (softplus(-D(real)) + softplus(D(fake.detach()))).mean()

The non-saturating BCE of Goodfellow et al., with logits. D has spectral norm on every conv
(no batch norm: the batches are 4-16 faces) and its own AdamW; it runs in fp32 even when the
model runs under autocast (its loss is a small difference of logits). Real and fake are the
target and the prediction multiplied by the target's face mask when the loss is masked, so D
judges the face, not the background the loss ignores.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from faceswap.train.checkpoint import load_optimizer_state
from faceswap.train.losses import LossConfig

__all__ = ["GanTerm", "PatchDiscriminator", "d_loss", "g_loss"]

# D's init draws from its own seeded generator state, so switching the GAN on neither changes
# the model's init nor the global RNG the rest of the run draws from.
SEED_OFFSET = 0x6A4


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): three stride-2 4x4 convs (dims, 2 dims, 4 dims) and a 3x3
    conv to one logit per patch; LeakyReLU 0.2; spectral norm on every conv."""

    def __init__(self, dims: int = 16) -> None:
        super().__init__()
        chans = [3, dims, 2 * dims, 4 * dims]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans, chans[1:]):
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
        layers.append(spectral_norm(nn.Conv2d(chans[-1], 1, 3, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 1, H/8, W/8) logits (real > 0)."""
        return self.net(x * 2 - 1)


def d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator BCE: real patches -> 1, fake -> 0 (mean of the two halves)."""
    return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())


def g_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss: -log D(fake)."""
    return F.softplus(-fake_logits).mean()


def _fp32(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off: D and its loss run in fp32 whatever the model's precision."""
    return torch.autocast(device.type, enabled=False)


class GanTerm:
    """The discriminator, its optimizer and the two losses of one training run."""

    def __init__(self, cfg: LossConfig, device: torch.device, seed: int,
                 betas: tuple[float, float] = (0.5, 0.999)) -> None:  # fmt: skip
        self.cfg = cfg
        self.device = device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + SEED_OFFSET)
            self.net = PatchDiscriminator(cfg.gan_dims)
        self.net.to(device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=cfg.gan_lr or 1e-4,
                                           betas=betas, weight_decay=0.0)  # fmt: skip

    def active(self, step: int, total_steps: int) -> bool:
        """The term is on from gan_start of the run (a share of the schedule's steps, like
        augment.warp_until: a pure function of the step, so a resume switches it on alike)."""
        return step >= self.cfg.gan_start * total_steps

    def sides(self) -> tuple[str, ...]:
        return tuple(self.cfg.gan_sides)

    def judged(self, rgb: Tensor, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(fake, real) as D sees them, fp32 (B, 3, R, R): the prediction and the target,
        times the target face mask when the loss is masked."""
        fake, real = rgb.float(), batch["target"].float()
        if self.cfg.masked:
            m = batch["mask"].float()
            fake, real = fake * m, real * m
        return fake, real

    def generator_loss(self, fake: Tensor) -> Tensor:
        """gan_power * -log D(fake): gradients reach the model through `fake`, none D's
        parameters (they are frozen for this pass)."""
        self.net.requires_grad_(False)
        try:
            with _fp32(self.device):
                return self.cfg.gan_power * g_loss(self.net(fake.float()))
        finally:
            self.net.requires_grad_(True)

    def discriminator_step(self, real: Tensor, fake: Tensor, lr: float,
                           grads_hook: Any = None) -> float:  # fmt: skip
        """One AdamW step of D on real vs detached fake; returns its loss (skips the step,
        returning the loss, when it is not finite). grads_hook(params) runs before the step
        (an all-reduce across ranks under data parallelism)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.gan_lr or lr
        self.optimizer.zero_grad(set_to_none=True)
        with _fp32(self.device):
            both = self.net(torch.cat([real.float(), fake.detach().float()]))
            n = real.shape[0]
            loss = d_loss(both[:n], both[n:])
        value = float(loss.detach())
        if not torch.isfinite(loss.detach()):
            return value
        loss.backward()
        if grads_hook is not None:
            grads_hook([p for p in self.net.parameters() if p.grad is not None])
        self.optimizer.step()
        return value

    # ---- checkpoints ---------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(weights with spectral norm's power-iteration vectors, optimizer state_dict)."""
        return self.net.state_dict(), self.optimizer.state_dict()

    def load(self, weights: dict[str, Tensor], optimizer: dict[str, Any]) -> None:
        """Load what state() gave; raises ValueError/RuntimeError/KeyError when it does not fit
        (the caller names the checkpoint)."""
        ours = self.net.state_dict()
        for k, v in weights.items():
            if k in ours and v.dtype != ours[k].dtype:
                raise ValueError(f"discriminator tensor {k} is {v.dtype}, not {ours[k].dtype}")
        self.net.load_state_dict(weights)
        load_optimizer_state(self.optimizer, optimizer, "discriminator optimizer")
