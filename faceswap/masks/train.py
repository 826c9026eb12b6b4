"""Training a SegNet from face sets: landmark-hull pseudo-labels, user labels, occluders.

Each face's target is its user label when labels.json has one, else the landmark hull
(`extended`: with the forehead). Most samples then get one or two synthetic occluders pasted
over the face (faceswap.masks.occluders) and the occluded pixels are cut out of the target,
which is what teaches the net that a hand, a microphone or a cup in front of the face is not
face. Augmentation also flips, turns, scales, recolours, blurs and down-samples (convert feeds
crops upsampled from the swap model's resolution), so the net sees what it will be given.

Batches are made in a background thread (OpenCV releases the GIL) while the net trains.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from faceswap.config import check, option
from faceswap.extract.masks import MASK_KINDS, landmark_mask
from faceswap.faceset import FaceSet
from faceswap.masks.labels import iou, load_labels
from faceswap.masks.model import SegNet, SegSpec, save_model
from faceswap.masks.occluders import TRAIN_SHAPES, TRAIN_TEXTURES, glasses, occlude, skin_patch

log = logging.getLogger(__name__)

# (step, steps, loss)
Progress = Callable[[int, int, float], None]


@dataclass
class MaskTrainConfig:
    """Settings of `faceswap mask train`."""

    steps: int = option(1500, "optimizer steps")
    batch_size: int = option(12, "faces per step")
    lr: float = option(2e-3, "peak learning rate (AdamW; warm-up, then cosine to 5%)")
    hull: str = option("extended", "pseudo-label of unlabelled faces: hull, extended, components")
    occlude: float = option(0.75, "share of samples that get synthetic occluders")
    max_occluders: int = option(2, "at most this many occluders per sample")
    glasses: float = option(0.2, "share of samples with drawn glasses (kept in the face mask)")
    label_weight: float = option(4.0, "sampling weight of a user-labelled face vs an unlabelled")
    val_faces: int = option(48, "faces held out (with fixed occluders) to report IoU on")
    save_every: int = option(250, "save the model every n steps (and on Ctrl-C); 0 = at the end")
    seed: int = option(0, "seed of the split, the augmentation and the initial weights")
    threads: int = option(0, "torch threads (0 = all cores)")
    spec: SegSpec = field(default_factory=SegSpec, metadata={"help": "the network"})

    def __post_init__(self) -> None:
        if isinstance(self.spec, dict):
            self.spec = SegSpec(**self.spec)
        check(1 <= self.steps <= 10_000_000, "steps must be between 1 and 10000000")
        check(1 <= self.batch_size <= 1024, "batch_size must be between 1 and 1024")
        check(0 < self.lr < 1, "lr must be in (0, 1)")
        check(self.hull in MASK_KINDS, f"hull must be one of {', '.join(MASK_KINDS)}")
        check(0 <= self.occlude <= 1, "occlude must be between 0 and 1")
        check(1 <= self.max_occluders <= 8, "max_occluders must be between 1 and 8")
        check(0 <= self.glasses <= 1, "glasses must be between 0 and 1")
        check(self.label_weight > 0, "label_weight must be > 0")
        check(self.val_faces >= 0, "val_faces must be >= 0")
        check(self.threads >= 0, "threads must be >= 0")
        check(self.save_every >= 0, "save_every must be >= 0")


@dataclass
class Samples:
    """Faces at the model's input size with their targets, in memory."""

    images: np.ndarray  # (N, S, S, 3) BGR uint8
    landmarks: np.ndarray  # (N, 68, 2) float32 at S
    targets: np.ndarray  # (N, S, S) uint8, 255 = visible face
    labelled: np.ndarray  # (N,) bool: target is a user label
    skins: list[np.ndarray]  # cheek patches, textures of skin-coloured occluders
    centering: str

    def __len__(self) -> int:
        return len(self.images)


def load_samples(facesets: list[FaceSet], size: int, hull: str) -> Samples:
    """Decode every face of the sets at `size` with its target (user label, else hull)."""
    if not facesets:
        raise ValueError("no face sets")
    centering = facesets[0].centering
    images, targets, labelled, skins, marks = [], [], [], [], []
    for fs in facesets:
        labels = load_labels(fs)
        for face in fs.faces:
            img = fs.load_image(face)
            if img.shape[0] != size:
                interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC
                img = cv2.resize(img, (size, size), interpolation=interp)
            lm = (face.aligned_landmarks() + 0.5) * (size / fs.size) - 0.5
            lab = labels.get(face.name)
            if lab is not None:
                tgt = lab.render(size, fs.size)
            else:
                tgt = (landmark_mask(lm, size, hull) >= 0.5).astype(np.uint8) * 255
            images.append(img)
            marks.append(lm.astype(np.float32))
            targets.append(tgt)
            labelled.append(lab is not None)
            if len(skins) < 512 and len(images) % 3 == 0:
                patch = skin_patch(img, lm)
                if patch.size:
                    skins.append(patch)
    return Samples(np.stack(images), np.stack(marks), np.stack(targets), np.asarray(labelled),
                   skins, centering)  # fmt: skip


def augment(img: np.ndarray, tgt: np.ndarray, rng: np.random.Generator, cfg: MaskTrainConfig,
            skins: list[np.ndarray], occlude_p: float | None = None,
            landmarks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One training sample: (S, S, 3) BGR uint8 and its (S, S) uint8 target."""
    s = img.shape[0]
    if landmarks is not None and rng.random() < cfg.glasses:
        img = glasses(img, landmarks, rng)  # before the warp: drawn in the face's own frame
    ang = rng.uniform(-12, 12)
    scale = rng.uniform(0.9, 1.12)
    m = cv2.getRotationMatrix2D((s / 2 - 0.5, s / 2 - 0.5), ang, scale)
    m[:, 2] += rng.uniform(-0.05, 0.05, 2) * s
    if rng.random() < 0.5:
        m = np.array([[-1, 0, s - 1], [0, 1, 0]], np.float64) @ np.vstack([m, [0, 0, 1]])
    img = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    tgt = cv2.warpAffine(tgt, m, (s, s), flags=cv2.INTER_LINEAR, borderValue=0)
    p = cfg.occlude if occlude_p is None else occlude_p
    if rng.random() < p:
        count = int(rng.integers(1, cfg.max_occluders + 1))
        img, covered = occlude(img, tgt >= 128, rng, TRAIN_SHAPES, TRAIN_TEXTURES, skins, count)
        tgt = np.where(covered >= 128, 0, tgt).astype(np.uint8)
    # colour: per-channel gain, contrast about the mean, gamma; one lookup table per channel
    # (float maths on the whole image costs more than the rest of the augmentation)
    gain = rng.uniform(0.8, 1.2, 3) * rng.uniform(0.7, 1.3)
    mean = float(np.mean(cv2.mean(img)[:3])) / 255.0
    contrast, gamma = rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.4)
    v = np.arange(256, dtype=np.float64)[:, None] / 255.0 * gain[None, :]  # (256, 3)
    v = np.clip((v - mean) * contrast + mean, 0, 1) ** gamma
    lut = np.clip(v * 255.0 + 0.5, 0, 255).astype(np.uint8)
    img = cv2.merge([cv2.LUT(c, lut[:, k]) for k, c in enumerate(cv2.split(img))])
    r = rng.random()
    if r < 0.3:  # a crop upsampled from a small swap model / a small face in the frame
        lo = int(rng.integers(48, 160))
        img = cv2.resize(cv2.resize(img, (lo, lo), interpolation=cv2.INTER_AREA), (s, s),
                         interpolation=cv2.INTER_LINEAR)  # fmt: skip
    elif r < 0.45:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2.0))
    if rng.random() < 0.2:
        noise = rng.normal(0, rng.uniform(2, 8), img.shape)
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return img, tgt


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, S, S, 3) BGR uint8 -> (B, 3, S, S) RGB float in [0, 1], channels_last."""
    x = torch.from_numpy(np.ascontiguousarray(images[..., ::-1])).permute(0, 3, 1, 2)
    return x.float().div_(255.0).contiguous(memory_format=torch.channels_last)


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice (Dice keeps thin occluders from being averaged
    away by the many easy pixels). logits, target: (B, 1, S, S), target in [0, 1]."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return bce + dice.mean()


def lr_at(step: int, steps: int, peak: float) -> float:
    warm = max(1, min(100, steps // 10))
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


@dataclass
class MaskTrainSummary:
    output: str
    faces: int
    labelled: int
    val_faces: int
    steps: int
    seconds: float
    samples_per_second: float
    loss: float
    val_iou_clean: float | None
    val_iou_occluded: float | None
    config: dict = field(default_factory=dict)


def _batches(samples: Samples, idx: np.ndarray, cfg: MaskTrainConfig, start: int,
             stop: threading.Event, out: queue.Queue) -> None:  # fmt: skip
    weights = np.where(samples.labelled[idx], cfg.label_weight, 1.0)
    weights = weights / weights.sum()
    step = start
    try:
        while not stop.is_set():
            rng = np.random.default_rng([cfg.seed, 1, step])
            pick = rng.choice(idx, size=cfg.batch_size, p=weights)
            pairs = [augment(samples.images[i], samples.targets[i], rng, cfg, samples.skins,
                             landmarks=samples.landmarks[i]) for i in pick]  # fmt: skip
            x = to_tensor(np.stack([p[0] for p in pairs]))
            y = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None]).float().div_(255.0)
            while not stop.is_set():
                try:
                    out.put((x, y), timeout=0.2)
                    break
                except queue.Full:
                    continue
            step += 1
    except BaseException as exc:  # handed to the trainer, which raises it
        out.put(exc)


def validation_set(samples: Samples, idx: np.ndarray, cfg: MaskTrainConfig
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Held-out faces, clean and with fixed occluders: (clean, clean targets, occluded,
    occluded targets)."""
    rng = np.random.default_rng([cfg.seed, 2])
    occ, occ_t = [], []
    for i in idx:
        img, cov = occlude(samples.images[i], samples.targets[i] >= 128, rng, TRAIN_SHAPES,
                           TRAIN_TEXTURES, samples.skins, 1)  # fmt: skip
        occ.append(img)
        occ_t.append(np.where(cov >= 128, 0, samples.targets[i]).astype(np.uint8))
    return samples.images[idx], samples.targets[idx], np.stack(occ), np.stack(occ_t)


@torch.no_grad()
def mean_iou(net: SegNet, images: np.ndarray, targets: np.ndarray, batch: int = 16) -> float:
    net.eval()
    scores = []
    for i in range(0, len(images), batch):
        p = torch.sigmoid(net(to_tensor(images[i : i + batch])))[:, 0].numpy()
        scores += [iou(p[k], targets[i + k]) for k in range(len(p))]
    net.train()
    return float(np.mean(scores)) if scores else float("nan")


def train(facesets: list[FaceSet], output: Path, cfg: MaskTrainConfig,
          progress: Progress | None = None) -> MaskTrainSummary:  # fmt: skip
    """Train a SegNet on the faces of `facesets` and save it to `output` (a folder)."""
    t0 = time.perf_counter()
    centerings = {fs.centering for fs in facesets}
    if len(centerings) > 1:
        raise ValueError(f"the face sets mix centerings ({', '.join(sorted(centerings))}); "
                         "a mask model is trained on one")  # fmt: skip
    samples = load_samples(facesets, cfg.spec.size, cfg.hull)
    n = len(samples)
    rng = np.random.default_rng([cfg.seed, 0])
    order = rng.permutation(n)
    n_val = min(cfg.val_faces, n // 5)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    if len(train_idx) == 0:
        raise ValueError("no faces to train on")
    log.info("mask train: %d faces (%d labelled), %d held out, %d steps of %d", n,
             int(samples.labelled.sum()), n_val, cfg.steps, cfg.batch_size)  # fmt: skip
    val = validation_set(samples, val_idx, cfg) if n_val else None

    torch.manual_seed(cfg.seed)
    net = SegNet(cfg.spec).to(memory_format=torch.channels_last)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    prev_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    meta_base = {"centering": samples.centering, "hull": cfg.hull, "trained_on":
                 [str(fs.root.resolve()) for fs in facesets], "config": asdict(cfg)}  # fmt: skip
    stop = threading.Event()
    q: queue.Queue = queue.Queue(maxsize=3)
    feeder = threading.Thread(target=_batches, args=(samples, train_idx, cfg, 0, stop, q),
                              daemon=True, name="mask-batches")  # fmt: skip
    feeder.start()
    loss_ema = float("nan")
    step = 0
    try:
        for step in range(cfg.steps):
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            x, y = item
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg.steps, cfg.lr)
            loss = seg_loss(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            v = float(loss.detach())
            loss_ema = v if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * v
            if progress:
                progress(step + 1, cfg.steps, loss_ema)
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
                save_model(net, output, {**meta_base, "steps": step + 1, "loss": loss_ema})
        step = cfg.steps
    except KeyboardInterrupt:
        # what was learned so far is kept (a usable model), then the interrupt goes on up
        save_model(net, output, {**meta_base, "steps": step, "loss": loss_ema})
        raise
    finally:
        stop.set()
        feeder.join()
        torch.set_num_threads(prev_threads)
    iou_clean = mean_iou(net, val[0], val[1]) if val else None
    iou_occ = mean_iou(net, val[2], val[3]) if val else None
    net.eval()
    seconds = time.perf_counter() - t0
    summary = MaskTrainSummary(
        output=str(output), faces=n, labelled=int(samples.labelled.sum()), val_faces=n_val,
        steps=step, seconds=round(seconds, 1),
        samples_per_second=round(step * cfg.batch_size / seconds, 2), loss=round(loss_ema, 4),
        val_iou_clean=None if iou_clean is None else round(iou_clean, 4),
        val_iou_occluded=None if iou_occ is None else round(iou_occ, 4), config=asdict(cfg),
    )  # fmt: skip
    save_model(net, output, {**meta_base, "steps": step, "loss": summary.loss,
                             "val_iou_clean": summary.val_iou_clean,
                             "val_iou_occluded": summary.val_iou_occluded})  # fmt: skip
    return summary
