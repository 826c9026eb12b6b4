"""Face crops that run past the frame's edge: a neutral border, marked and left out of the loss.
On a real face (../shared/data; skipped when absent) cut off below the mouth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from faceswap import faceset as fsmod
from faceswap.config import ExtractConfig
from faceswap.data.dataset import FaceDataset
from faceswap.train.trainer import outside_frame_as_target

from helpers import read_frames, shared_data


@pytest.fixture(scope="module")
def cut_face(tmp_path_factory):
    """d9's first frame cut just under the nose: the crop runs past the frame's bottom edge."""
    from faceswap.extract.pipeline import extract

    frame = read_frames(shared_data("clips", "liveportrait_d9.mp4"))[0]
    root = tmp_path_factory.mktemp("edge")
    full = root / "full"
    full.mkdir()
    cv2.imwrite(str(full / "full.png"), frame)
    extract([str(full)], root / "full_set", ExtractConfig(size=128, workers=1))
    lms = fsmod.load(root / "full_set").faces[0].landmarks_array()
    cut_at = int(lms[51, 1] + 0.3 * (lms[57, 1] - lms[51, 1]))  # through the upper lip
    folder = root / "cut"
    folder.mkdir()
    cv2.imwrite(str(folder / "cut.png"), frame[:cut_at])
    # PNG: the border is checked pixel by pixel, and JPEG rings a few levels next to an edge
    extract([str(folder)], root / "cut_set", ExtractConfig(size=128, workers=1, image_format="png"))
    return fsmod.load(root / "cut_set")


def test_padding_is_neutral_and_marked(cut_face):
    fs = cut_face
    face = fs.faces[0]
    img = fs.load_image(face)
    ds = FaceDataset(fs, [0], 128, None, seed=0)
    valid = ds[0]["valid"][0].numpy()
    inside, outside = valid > 0.99, valid < 0.01
    assert outside.mean() > 0.05 and inside.mean() > 0.5  # a real cut, and mostly face
    # the padded rows are flat grey, not a mirrored chin
    assert np.abs(img[outside].astype(int) - 128).max() <= 2
    assert img[inside].std() > 20
    # the padding is at the bottom of the crop (the frame was cut below the nose)
    rows = np.nonzero(outside.any(axis=1))[0]
    assert rows.min() > 64


def test_padded_pixels_are_out_of_the_loss(cut_face):
    from faceswap.train.losses import FaceLoss, LossConfig

    ds = FaceDataset(cut_face, [0], 128, None, seed=0)
    item = ds[0]
    batch = {k: v[None] for k, v in item.items() if torch.is_tensor(v)}
    pred = torch.rand_like(batch["target"])
    pmask = torch.rand_like(batch["mask"])
    loss_fn = FaceLoss(LossConfig())

    def loss(p_rgb):
        rgb, m = outside_frame_as_target(p_rgb, pmask, batch)
        return float(loss_fn(rgb, m, batch["target"], batch["mask"], batch["eyes"],
                             batch["mouth"])[0])  # fmt: skip

    outside = (batch["valid"] < 0.01).expand_as(pred)
    changed = torch.where(outside, torch.rand_like(pred), pred)
    assert loss(changed) == pytest.approx(loss(pred), rel=1e-6)  # padding: no effect
    perfect_inside = torch.where(outside, pred, batch["target"])
    assert loss(perfect_inside) < 0.6 * loss(pred)  # the face: counted (the mask term stays)
