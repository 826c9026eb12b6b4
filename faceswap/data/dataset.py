"""Training faces in memory, with seeded CPU augmentation.

Every face is decoded once, resized to the model resolution and kept as uint8 together with its
landmark masks; an epoch then costs no disk reads and no image decoding. The augmentation of
sample i in epoch e depends only on (seed, e, i), so a resumed run sees exactly the data an
uninterrupted run would, whatever the number of loader workers.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch

from faceswap.data.augment import (
    FLOW_GRID,
    LUMA,
    N_UNIFORM,
    WARP_POINTS,
    AugmentConfig,
    color_matrix,
    geometry_matrix,
    landmark_flow,
    lighting_grid,
    nearest_faces,
    partner,
)
from faceswap.data.seeding import keyed_uniforms, normals_from
from faceswap.data.stored_masks import load_mask
from faceswap.extract.masks import MASK_KINDS, landmark_mask, region_mask
from faceswap.faceset import FaceSet

__all__ = ["AugmentConfig", "FaceDataset"]

logger = logging.getLogger(__name__)


def scale_points(pts: np.ndarray, src_size: int, dst_size: int) -> np.ndarray:
    """Pixel coordinates in a (src_size)^2 image -> the same points after cv2.resize to
    (dst_size)^2 (pixel centres stay pixel centres)."""
    return (np.asarray(pts, np.float64) + 0.5) * (dst_size / src_size) - 0.5


class FaceDataset(torch.utils.data.Dataset):
    """Faces `indices` of a face set at `resolution`, decoded into memory once.

    Items are dicts of float32 tensors: "input" (3, R, R) RGB in [0, 1], augmented and warped;
    "target" (3, R, R), the same augmentation without the warp; "mask", "eyes", "mouth"
    (1, R, R), transformed like the target; "index", the face's index in fs.faces.
    Without `augment`, input and target are both the clean face (validation).
    The face mask is the face's stored mask (`masks/<name>.png`, from `faceswap mask apply`)
    when it has one and `stored_masks`, else the landmark mask of `mask_kind`.

    An item key is an int (uses the epoch from `set_epoch`) or a tuple (i, epoch), which is
    what BatchStream passes so that persistent worker processes need no epoch updates.
    """

    def __init__(
        self,
        fs: FaceSet,
        indices: list[int],
        resolution: int,
        augment: AugmentConfig | None,
        seed: int,
        mask_kind: str = "extended",
        threads: int | None = None,
        stored_masks: bool = True,
    ) -> None:
        if not 16 <= resolution <= 2048:
            raise ValueError(f"resolution must be between 16 and 2048, not {resolution}")
        if mask_kind not in MASK_KINDS:
            raise ValueError(f"mask_kind must be one of {', '.join(MASK_KINDS)}, not {mask_kind!r}")
        indices = [int(i) for i in indices]  # may be empty (no validation faces)
        if indices and (min(indices) < 0 or max(indices) >= len(fs.faces)):
            raise ValueError("face indices out of range of the face set")
        self.face_indices = np.asarray(indices, dtype=np.int64)
        self.resolution = r = resolution
        self.augment = augment
        self.seed = int(seed)
        self.mask_kind = mask_kind
        self.epoch = 0
        n = len(indices)
        images = np.empty((n, r, r, 3), dtype=np.uint8)  # RGB
        masks = np.empty((n, r, r, 4), dtype=np.uint8)  # face, eyes, mouth, inside the frame
        self.landmarks = np.empty((n, 68, 2), dtype=np.float32)  # at resolution r
        self.mean_luma = np.empty(n, dtype=np.float32)  # in [0, 1], for the contrast jitter
        interp = cv2.INTER_AREA if r < fs.size else cv2.INTER_CUBIC
        stored = np.zeros(n, dtype=bool)

        def decode(k: int) -> None:
            face = fs.faces[indices[k]]
            img = fs.load_image(face)
            if img.shape[0] != r:
                img = cv2.resize(img, (r, r), interpolation=interp)
            images[k] = img[..., ::-1]
            b, g, r_, _ = cv2.mean(img)
            self.mean_luma[k] = (LUMA[0] * r_ + LUMA[1] * g + LUMA[2] * b) / 255.0
            lm = scale_points(face.aligned_landmarks(), fs.size, r)
            self.landmarks[k] = lm
            # a stored mask (faceswap mask apply: occluders cut out) beats the landmark hull
            face_mask = load_mask(fs, face) if stored_masks else None
            if face_mask is not None:
                stored[k] = True
                masks[k, ..., 0] = cv2.resize(face_mask, (r, r), interpolation=cv2.INTER_AREA)
            else:
                masks[k, ..., 0] = _to_u8(landmark_mask(lm, r, mask_kind))
            masks[k, ..., 1] = _to_u8(region_mask(lm, r, "eyes"))
            masks[k, ..., 2] = _to_u8(region_mask(lm, r, "mouth"))
            masks[k, ..., 3] = inside_frame(face, fs, r)

        t0 = time.perf_counter()
        workers = threads or min(8, os.cpu_count() or 1)
        if workers > 1 and n > 16:
            with ThreadPoolExecutor(workers) as pool:  # cv2 decodes with the GIL released
                list(pool.map(decode, range(n), chunksize=64))
        else:
            for k in range(n):
                decode(k)
        self.stored_masks = int(stored.sum())  # faces whose face mask came from masks/
        if self.stored_masks:
            logger.info("%s: %d of %d faces use their stored mask (masks/), the rest the "
                        "landmark hull", fs.root, self.stored_masks, n)  # fmt: skip
        # torch tensors: worker processes get them through shared memory, not as copies
        self._images = torch.from_numpy(images)
        self._masks = torch.from_numpy(masks)
        self._neighbours: np.ndarray | None = None
        self._base: np.ndarray | None = None
        if augment is not None and augment.warp_to_landmarks:
            self.neighbours()  # once here, not once per loader worker
        logger.info(
            "decoded %d faces at %d px in %.1f s: %.1f MiB in memory",
            n, r, time.perf_counter() - t0, self.nbytes / 2**20,
        )  # fmt: skip

    # ---- memory ------------------------------------------------------------------------
    @property
    def images(self) -> np.ndarray:
        """(N, R, R, 3) uint8 RGB faces."""
        return self._images.numpy()

    @property
    def masks(self) -> np.ndarray:
        """(N, R, R) uint8 face masks (a view)."""
        return self._masks.numpy()[..., 0]

    @property
    def regions(self) -> np.ndarray:
        """(N, R, R, 2) uint8 eye and mouth masks (a view)."""
        return self._masks.numpy()[..., 1:3]

    @property
    def nbytes(self) -> int:
        """Bytes held in memory by faces, masks and landmarks."""
        return self._images.nbytes + self._masks.nbytes + self.landmarks.nbytes

    def __len__(self) -> int:
        return len(self.face_indices)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for integer keys (the augmentation of item i is a function of
        (seed, epoch, i))."""
        self.epoch = int(epoch)

    def raw(self, idx: np.ndarray | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean uint8 faces (B, R, R, 3) RGB and masks (B, R, R, 3) face/eyes/mouth, for
        augmentation on the device."""
        t = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        return self._images.index_select(0, t), self._masks.index_select(0, t)

    # ---- landmark warp -----------------------------------------------------------------
    def neighbours(self) -> np.ndarray:
        """(N, k) the closest other faces of this dataset by landmarks (computed once)."""
        if self._neighbours is None:
            self._neighbours = nearest_faces(self.landmarks / self.resolution)
        return self._neighbours

    def landmark_flow(self, i: int, u9: float) -> np.ndarray:
        """(G, G, 2) coarse backward flow in pixels that warps face i toward one of its closest
        faces' landmarks (chosen by u9 in [0, 1)); zero when the dataset holds a single face."""
        nb = self.neighbours()
        if nb.shape[1] == 0:
            return np.zeros((FLOW_GRID, FLOW_GRID, 2), np.float32)
        j = nb[i, partner(u9, nb.shape[1])]
        return landmark_flow(self.landmarks[i], self.landmarks[j], self.resolution)

    # ---- items -------------------------------------------------------------------------
    def _grid(self) -> np.ndarray:
        """(R, R, 2) float32 pixel coordinates (x, y) of every output pixel."""
        if self._base is None:
            r = np.arange(self.resolution, dtype=np.float32)
            self._base = np.stack(np.meshgrid(r, r), axis=-1)
        return self._base

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | int]:
        if isinstance(key, (tuple, list)):
            i, epoch = int(key[0]), int(key[1])
        else:
            i, epoch = int(key), self.epoch
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range for {n} faces")
        i %= n
        img = self._images[i].numpy()
        msk = self._masks[i].numpy()
        if self.augment is None:
            target = inp = _float(img)
        else:
            target, inp, msk = self._augment(i, epoch, img, msk)
        # (R, R, C) -> (C, R, R) views: the batch stack does the transpose in its one copy
        mask = torch.from_numpy(_float(msk)).permute(2, 0, 1)
        return {
            "input": torch.from_numpy(inp).permute(2, 0, 1),
            "target": torch.from_numpy(target).permute(2, 0, 1),
            "mask": mask[0:1],
            "eyes": mask[1:2],
            "mouth": mask[2:3],
            "valid": mask[3:4],
            "index": int(self.face_indices[i]),
        }

    def _augment(
        self, i: int, epoch: int, img: np.ndarray, msk: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float32 target, input (R, R, 3) in [0, 1] and the transformed uint8 masks."""
        cfg = self.augment
        assert cfg is not None
        r = self.resolution
        # always the same numbers, so turning one switch off leaves the others' draws alone
        rnd = keyed_uniforms(N_UNIFORM + 2 * WARP_POINTS**2, self.seed, epoch, i)
        u = rnd[:N_UNIFORM]
        if cfg.color > 0:
            cm = color_matrix(u, cfg, self.mean_luma[i])
            cm[:, 3] *= 255.0  # offsets in uint8 units
            img = cv2.transform(img, cm)  # saturates to uint8
        geo = geometry_matrix(u, cfg, r) if cfg.has_geometry else None
        if geo is not None:
            target = cv2.warpAffine(img, geo, (r, r), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
            msk = cv2.warpAffine(msk, geo, (r, r), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
        else:
            target = img
        coarse = None  # (g, g, 2) backward displacement in pixels
        if cfg.warp_to_landmarks:
            coarse = self.landmark_flow(i, float(u[9]))
        elif cfg.random_warp and cfg.warp_scale > 0:
            noise = normals_from(rnd[N_UNIFORM:]).reshape(WARP_POINTS, WARP_POINTS, 2)
            coarse = (noise * (cfg.warp_scale * r)).astype(np.float32)
        if coarse is None:
            inp = target
        else:
            # input(p) = target(p + flow(p)) = img(geo^-1 (p + flow(p))): one resampling of
            # the clean face, so the input is no blurrier than the warp makes it
            pts = self._grid() + cv2.resize(coarse, (r, r), interpolation=cv2.INTER_CUBIC)
            if geo is not None:
                pts = cv2.transform(pts, cv2.invertAffineTransform(geo))
            inp = cv2.remap(img, pts, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if cfg.lighting > 0:
            gain = cv2.resize(lighting_grid(u, cfg).astype(np.float32), (r, r),
                              interpolation=cv2.INTER_CUBIC)  # fmt: skip
            if cfg.lighting > 0.5:  # cubic overshoot could dip below zero
                np.maximum(gain, 0.0, out=gain)
            gain3 = cv2.merge([gain, gain, gain])
            target_f = _float(target, gain3)
            inp_f = target_f if inp is target else _float(inp, gain3)
        else:
            target_f = _float(target)
            inp_f = target_f if inp is target else _float(inp)
        return target_f, inp_f, msk


def inside_frame(face, fs: FaceSet, r: int) -> np.ndarray:
    """(r, r) uint8: 255 where the aligned crop shows the source frame, 0 where the crop ran
    past the frame's edge and was padded (a neutral constant since extraction pads so; older
    sets hold a mirror image there). Training leaves those pixels out of the loss: nothing
    real was there to learn. From data the index already has: the alignment matrix and the
    source's frame size."""
    src = fs.sources.get(face.source)
    if src is None or src.width <= 0 or src.height <= 0:
        return np.full((r, r), 255, np.uint8)
    corners = np.array([[0, 0], [src.width, 0], [src.width, src.height], [0, src.height]], float)
    m = np.asarray(face.matrix, np.float64) * (r / fs.size)  # source -> crop at r
    quad = corners @ m[:, :2].T + m[:, 2]
    if (quad.min(0) <= 0).all() and (quad.max(0) >= r).all() and _covers(quad, r):
        return np.full((r, r), 255, np.uint8)
    out = np.zeros((r, r), np.uint8)
    # 4 fractional bits: the frame edge lands between pixels as often as on them
    cv2.fillConvexPoly(out, np.rint(quad * 16).astype(np.int32), 255, cv2.LINE_AA, shift=4)
    return out


def _covers(quad: np.ndarray, r: int) -> bool:
    """Does the convex quad (4, 2) hold all four crop corners?"""
    poly = quad.astype(np.float32).reshape(-1, 1, 2)
    return all(cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0
               for x, y in ((0, 0), (r, 0), (r, r), (0, r)))  # fmt: skip


def _to_u8(mask: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8)


def _float(img: np.ndarray, gain3: np.ndarray | None = None) -> np.ndarray:
    """uint8 (R, R, C) -> float32 in [0, 1], times a float32 (R, R, C) gain when given."""
    if gain3 is None:
        out = img.astype(np.float32)
        out *= np.float32(1.0 / 255.0)
        return out
    out = cv2.multiply(img, gain3, scale=1.0 / 255.0, dtype=cv2.CV_32F)
    return np.minimum(out, 1.0, out=out)
