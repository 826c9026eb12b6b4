"""faceswap.masks: label format, occluders, the segmentation net, train -> apply -> training
data and convert with `--mask seg`, and the `mask` command's bad input."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from faceswap import faceset as fsmod
from faceswap.cli import main
from faceswap.convert.masks import blend_mask, raw_mask, shape_mask
from faceswap.data.dataset import FaceDataset
from faceswap.data.stored_masks import load_mask, mask_path, write_mask
from faceswap.errors import BadInput
from faceswap.masks import labels as lb
from faceswap.masks.apply import apply_masks
from faceswap.masks.model import SegNet, SegSpec, fuse_batchnorm, load_model, save_model
from faceswap.masks.occluders import HELD_OUT_SHAPES, SHAPES, TRAIN_SHAPES, occlude
from faceswap.masks.train import MaskTrainConfig, train

TINY = {"steps": 3, "batch_size": 2, "val_faces": 4, "spec": {"size": 64, "width": 4}}


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _doc(faces, size=64):
    return {"format": "faceswap-labels", "version": 1, "size": size, "faces": faces}


SQUARE = [[8, 8], [56, 8], [56, 56], [8, 56]]


# ---- labels -------------------------------------------------------------------------------


def test_label_parse_render_and_scale():
    size, labels = lb.parse(_doc({"f1": {"include": [SQUARE], "exclude": [[[8, 8], [32, 8],
                                                                          [8, 32]]]}}), "x")  # fmt: skip
    assert size == 64 and set(labels) == {"f1"}
    m = labels["f1"].render(64, 64)
    assert m[40, 40] == 255 and m[10, 10] == 0 and m[2, 2] == 0
    big = labels["f1"].render(128, 64)  # a 64 px label on a 128 px crop
    assert big[80, 80] == 255 and big[4, 4] == 0
    assert abs((big > 0).mean() - (m > 0).mean()) < 0.02


@pytest.mark.parametrize(
    "faces, message",
    [
        ({"f1": {"include": [[[1, 1], [5, 5]]]}}, "3 to"),
        ({"f1": {"include": [[[1, 1], [5, 5], [9, 9]]]}}, "no area"),
        ({"f1": {"include": [[[1, 1], [5, "a"], [9, 2]]]}}, "must be numbers"),
        ({"f1": {"include": [[[1, 1], [5, True], [9, 2]]]}}, "must be numbers"),
        ({"f1": {"include": [[[1, 1], [5, 1e999], [9, 2]]]}}, "finite"),
        ({"f1": {"include": [[[1, 1], [70, 5], [9, 20]]]}}, "point 1 (70, 5) is outside"),
        ({"f1": {"include": [[[-1, 1], [7, 5], [9, 20]]]}}, "outside the 64x64 crop"),
        ({"f1": {"include": [[1, 2, 3]]}}, "[x, y]"),
        ({"f1": {"exclude": [SQUARE]}}, "at least one include"),
        ({"f1": {"include": [SQUARE], "hole": []}}, "must be {"),
        ({"../../etc/passwd": {"include": [SQUARE]}}, "not a face name"),
        ({"faces/f1": {"include": [SQUARE]}}, "not a face name"),
        ({".hidden": {"include": [SQUARE]}}, "not a face name"),
        ({"a..b": {"include": [SQUARE]}}, "not a face name"),
    ],
)
def test_bad_labels_are_refused_with_a_clear_message(faces, message):
    with pytest.raises(lb.LabelError) as exc:
        lb.parse(_doc(faces), "labels.json")
    assert message in str(exc.value) and str(exc.value).startswith("labels.json")


def test_bad_label_documents():
    for doc, message in [
        ({"format": "x", "version": 1}, "not a faceswap label file"),
        ({**_doc({}), "version": 2}, "version 2 is not supported"),
        ({**_doc({}), "size": 8}, "size must be"),
        ({**_doc({}), "extra": 1}, "unknown field"),
        ({**_doc([]), "faces": []}, "faces must be an object"),
    ]:
        with pytest.raises(lb.LabelError, match=message):
            lb.parse(doc, "l.json")


def test_mask_to_polygons_round_trip():
    mask = np.zeros((64, 64), np.uint8)
    cv2.ellipse(mask, (32, 34), (20, 26), 0, 0, 360, 255, -1)
    cv2.circle(mask, (30, 30), 6, 0, -1)  # a hole: an occluder inside the face
    lab = lb.from_mask(mask, 64)
    assert len(lab.include) == 1 and len(lab.exclude) == 1
    assert lb.iou(lab.render(64, 64), mask) > 0.93


# ---- occluders and the net ----------------------------------------------------------------


def test_occluders_cover_the_face_and_held_out_shapes_are_not_trained():
    assert not set(HELD_OUT_SHAPES) & set(TRAIN_SHAPES)
    assert set(SHAPES) == set(HELD_OUT_SHAPES) | set(TRAIN_SHAPES)
    img = np.full((64, 64, 3), 128, np.uint8)
    face = np.zeros((64, 64), bool)
    face[16:48, 16:48] = True
    for fam in SHAPES:
        out, cov = occlude(img, face, np.random.default_rng(1), (fam,))
        out2, cov2 = occlude(img, face, np.random.default_rng(1), (fam,))
        assert np.array_equal(out, out2) and np.array_equal(cov, cov2)  # seeded
        assert (cov[face] > 0).any(), fam  # lands on the face
        changed = np.abs(out.astype(int) - img).sum(-1) > 0
        assert changed[cov == 255].mean() > 0.5, fam  # the texture is where the shape says


def test_segnet_shapes_fusion_and_save_load(tmp_path):
    net = SegNet(SegSpec(size=64, width=4)).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 1, 64, 64)
        save_model(net, tmp_path / "m", {"centering": "face"})
        assert torch.allclose(fuse_batchnorm(net)(x), y, atol=1e-5)
    model = load_model(tmp_path / "m")
    crops = (x.permute(0, 2, 3, 1).numpy()[..., ::-1] * 255).round().astype(np.uint8)
    p = model.predict(crops)
    assert p.shape == (2, 64, 64) and 0 <= p.min() and p.max() <= 1
    assert model.predict(crops, out_size=32).shape == (2, 32, 32)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(BadInput, match="corrupt"):
        load_model(tmp_path / "m")
    with pytest.raises(BadInput, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_raw_mask_seg_modes():
    lm = np.array([[32 + 20 * np.cos(a), 32 + 24 * np.sin(a)] for a in np.linspace(0, 6.2, 68)])
    seg = np.zeros((64, 64), np.float32)
    seg[:, :32] = 1.0
    s = raw_mask("seg", None, lm, 64, seg=seg)
    assert s.shape == (256, 256) and s[128, 60] == 1.0 and s[128, 200] == 0.0
    h = raw_mask("hull", None, lm, 64, "hull")
    assert np.allclose(raw_mask("seg+hull", None, lm, 64, "hull", seg=seg), s * h)
    with pytest.raises(ValueError, match="needs the segmentation mask"):
        raw_mask("seg", None, lm, 64)


def test_blend_mask_keeps_the_feather_off_a_cut_out_occluder():
    """convert's feather lies on the face's side of what seg cuts out (the occluder keeps its
    pixels up to its outline); the face's outline keeps its centred feather."""
    lm = np.array([[32 + 20 * np.cos(a), 32 + 24 * np.sin(a)] for a in np.linspace(0, 6.2, 68)])
    hull = raw_mask("hull", None, lm, 64, "hull") >= 0.5  # (256, 256)
    seg = np.ones((256, 256), np.float32)
    seg[150:256, 100:150] = 0.0  # a microphone from below, through the chin into the mouth
    inside = hull & (seg < 0.5)
    for mode in ("seg", "seg+hull"):
        alpha = blend_mask(mode, None, lm, 64, 0.0, 0.05, "hull", seg)
        centred = shape_mask(raw_mask(mode, None, lm, 64, "hull", seg), 0.0, 0.05)
        assert centred[inside].max() > 0.4  # the centred feather reaches into the occluder
        assert alpha[inside].max() == 0.0
        # the ramp is on the face's side: a feather's width (13 px) from the occluder the
        # face is fully swapped, nearer it less than with the centred feather
        assert alpha[170, 100 - 15] == 1.0 == centred[170, 100 - 15]
        assert 0.0 < alpha[170, 100 - 5] < centred[170, 100 - 5]
        assert alpha[128, 128] == 1.0 == centred[128, 128]
        # the face's outline away from the occluder is as before
        assert np.array_equal(alpha[:, :60], centred[:, :60])
    # a seg a few pixels inside the hull all round is a disagreement on the outline, not a
    # cut-out: its edge keeps the centred feather
    shrunk = cv2.erode(hull.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(np.float32)
    alpha = blend_mask("seg+hull", None, lm, 64, 0.0, 0.05, "hull", shrunk)
    assert np.array_equal(
        alpha, shape_mask(raw_mask("seg+hull", None, lm, 64, "hull", shrunk), 0.0, 0.05)
    )
    # the other modes are raw_mask shaped, unchanged
    assert np.array_equal(blend_mask("hull", None, lm, 64, 0.02, 0.05, "hull"),
                          shape_mask(raw_mask("hull", None, lm, 64, "hull"), 0.02, 0.05))  # fmt: skip


# ---- train -> apply -> training data, labels via the CLI ----------------------------------


@pytest.fixture(scope="module")
def masked_set(tmp_path_factory, extracted):
    """A copy of the 64 px astronaut face set and a tiny mask model trained on it."""
    root = tmp_path_factory.mktemp("masks")
    fs_dir = root / "set"
    shutil.copytree(extracted[0], fs_dir)
    cfg = MaskTrainConfig(**TINY)
    summary = train([fsmod.load(fs_dir)], root / "model", cfg)
    return fs_dir, root / "model", summary


def test_train_apply_resume_and_overwrite(masked_set, tmp_path):
    fs_dir, model_dir, summary = masked_set
    fs_dir = shutil.copytree(fs_dir, tmp_path / "set")
    assert summary.steps == 3 and summary.val_faces == 4 and 0 <= summary.val_iou_clean <= 1
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["centering"] == "face" and meta["spec"] == {"size": 64, "width": 4}
    model = load_model(model_dir)
    fs = fsmod.load(fs_dir)
    s = apply_masks(fs_dir, model)
    assert s.predicted == len(fs.faces) and s.skipped == 0
    m = load_mask(fs, fs.faces[0])
    assert m.shape == (64, 64) and m.dtype == np.uint8
    # a crash mid-way leaves complete masks and temp files: the re-run skips the done faces
    mask_path(fs_dir, fs.faces[1]).unlink()
    (fs_dir / "masks" / ".x.png.abc.tmp").write_bytes(b"half")
    s = apply_masks(fs_dir, model)
    assert (s.predicted, s.skipped) == (1, len(fs.faces) - 1)
    assert not list((fs_dir / "masks").glob(".*.tmp"))
    # another model's masks are not mixed in without --overwrite
    other = tmp_path / "other"
    train([fs], other, MaskTrainConfig(**{**TINY, "seed": 5, "steps": 1}))
    with pytest.raises(BadInput, match="another mask model"):
        apply_masks(fs_dir, load_model(other))
    s = apply_masks(fs_dir, load_model(other), overwrite=True)
    assert s.predicted == len(fs.faces)


def test_training_data_uses_stored_masks(extracted, tmp_path):
    fs_dir = shutil.copytree(extracted[0], tmp_path / "set")
    fs = fsmod.load(fs_dir)
    plain = FaceDataset(fs, [0, 1], 64, None, seed=0)
    half = np.zeros((64, 64), np.uint8)
    half[:, :32] = 255
    write_mask(fs_dir, fs.faces[0], half)
    ds = FaceDataset(fs, [0, 1], 64, None, seed=0)
    assert ds.stored_masks == 1
    assert np.array_equal(ds.masks[0], half) and not np.array_equal(plain.masks[0], half)
    assert np.array_equal(ds.masks[1], plain.masks[1])  # no stored mask: the hull as before
    off = FaceDataset(fs, [0, 1], 64, None, seed=0, stored_masks=False)
    assert np.array_equal(off.masks[0], plain.masks[0])
    mask_path(fs_dir, fs.faces[0]).write_bytes(b"not a png")
    with pytest.raises(fsmod.FaceSetError, match="corrupt"):
        FaceDataset(fs, [0, 1], 64, None, seed=0)


def test_label_import_export_and_apply_uses_labels(capsys, masked_set, tmp_path):
    fs_dir = shutil.copytree(masked_set[0], tmp_path / "set")
    fs = fsmod.load(fs_dir)
    name = fs.faces[2].name
    src = tmp_path / "in.json"
    src.write_text(json.dumps(_doc({name: {"include": [SQUARE]}}, size=128)))
    code, out, err = _cli(capsys, "mask", "label", "import", fs_dir, src, "--json")
    assert code == 0, err
    assert json.loads(out)["imported"] == 1
    labels = lb.load_labels(fs)
    # size 128 labels scale onto the 64 px set
    assert np.allclose(labels[name].include[0], np.asarray(SQUARE) * 0.5)
    code, out, err = _cli(capsys, "mask", "label", "export", fs_dir, "-o", tmp_path / "o.json",
                          "--png", tmp_path / "png")  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "o.json").read_text())["faces"][name]["include"]
    painted = cv2.imread(str(tmp_path / "png" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    assert painted[16, 16] == 255 and painted[40, 40] == 0
    # painted PNG masks import too
    code, _, err = _cli(capsys, "mask", "label", "import", fs_dir, tmp_path / "png", "--replace")
    assert code == 0, err
    # apply: the labelled face's stored mask is its label, not a prediction
    code, out, err = _cli(capsys, "mask", "apply", "-m", masked_set[1], fs_dir, "--json")
    assert code == 0, err
    s = json.loads(out)[0]
    assert s["from_labels"] == 1 and s["predicted"] == len(fs.faces) - 1
    assert lb.iou(load_mask(fs, fs.faces[2]), painted) > 0.97


def test_mask_command_bad_input_is_one_line_and_changes_nothing(capsys, masked_set, tmp_path):
    fs_dir = shutil.copytree(masked_set[0], tmp_path / "set")
    fs = fsmod.load(fs_dir)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_doc({fs.faces[0].name: {"include": [SQUARE]}})))
    assert _cli(capsys, "mask", "label", "import", fs_dir, good)[0] == 0
    before = (fs_dir / "labels.json").read_bytes()
    cases = [
        (_doc({"../faceset": {"include": [SQUARE]}}), "not a face name"),
        (_doc({"nobody_f000001_0": {"include": [SQUARE]}}), "is not in the face set"),
        (_doc({fs.faces[1].name: {"include": [[[0, 0], [99, 0], [0, 9]]]}}), "outside"),
    ]
    for doc, message in cases:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(doc))
        code, _, err = _cli(capsys, "mask", "label", "import", fs_dir, bad)
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert (fs_dir / "labels.json").read_bytes() == before
    (tmp_path / "bad.json").write_text("{not json")
    code, _, err = _cli(capsys, "mask", "label", "import", fs_dir, tmp_path / "bad.json")
    assert code == 2 and "not readable JSON" in err
    code, _, err = _cli(capsys, "mask", "apply", "-m", tmp_path / "nomodel", fs_dir)
    assert code == 2 and "does not exist" in err
    code, _, err = _cli(capsys, "mask", "train", "-i", tmp_path / "noset", "-o", tmp_path / "m")
    assert code == 2 and "does not exist" in err
    code, _, err = _cli(capsys, "mask", "train", "-i", fs_dir, "-o", masked_set[1])
    assert code == 2 and "--overwrite" in err
    code, _, err = _cli(capsys, "mask", "train", "-i", fs_dir, "-o", tmp_path / "m",
                        "--steps", "0")  # fmt: skip
    assert code == 2 and "steps" in err and not (tmp_path / "m").exists()


def test_cli_train_with_config(capsys, extracted, tmp_path):
    cfg = tmp_path / "mask.yaml"
    cfg.write_text("steps: 2\nbatch_size: 2\nval_faces: 2\nspec: {size: 64, width: 4}\n")
    code, out, err = _cli(capsys, "mask", "train", "-i", extracted[0], "-o", tmp_path / "m",
                          "--config", cfg, "--json")  # fmt: skip
    assert code == 0, err
    s = json.loads(out)
    assert s["steps"] == 2 and s["faces"] == len(fsmod.load(extracted[0]).faces)
    assert (tmp_path / "m" / "model.safetensors").is_file()


# ---- convert --mask seg -------------------------------------------------------------------


def test_convert_with_seg_mask(capsys, tiny_run, faceset_pair, tmp_path):
    clip = faceset_pair[0].parent / "a.mp4"
    seg = tmp_path / "seg"
    # a model whose mask is "left half of the crop": the right half must stay the original
    net = SegNet(SegSpec(size=64, width=4)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.head.bias.fill_(0.0)
    save_model(net, seg, {"centering": fsmod.load(faceset_pair[0]).centering})
    common = [clip, "-m", tiny_run, "--alignments", faceset_pair[0], "--frames", "10-14",
              "--color", "none"]  # fmt: skip
    code, _, err = _cli(capsys, "convert", *common, "-o", tmp_path / "x.mp4", "--mask", "seg")
    assert code == 2 and "mask_model" in err and err.count("\n") == 1
    code, _, err = _cli(capsys, "convert", *common, "-o", tmp_path / "x.mp4", "--mask", "seg",
                        "--mask-model", tmp_path / "none")  # fmt: skip
    assert code == 2 and "does not exist" in err and not (tmp_path / "x.mp4").exists()
    # all-zero weights: sigmoid(0) = 0.5 everywhere, thresholded in: the whole crop is face;
    # with seg+hull the result equals the hull mask's
    outs = {}
    for mode in ("hull", "seg+hull"):
        out = tmp_path / f"{mode}.mp4"
        extra = ["--mask-model", seg] if mode.startswith("seg") else []
        code, stdout, err = _cli(capsys, "convert", *common, "-o", out, "--mask", mode,
                                 "--hull", "extended", *extra, "--json", "--crf", "0")  # fmt: skip
        assert code == 0, err
        outs[mode] = json.loads(stdout)
    assert outs["seg+hull"]["stage_seconds"]["seg"] > 0
    label = json.loads((tmp_path / "seg+hull.mp4.provenance.json").read_text())
    assert label["settings"]["mask_model"] == str(seg)
    from helpers import read_frames

    a, b = read_frames(tmp_path / "hull.mp4"), read_frames(tmp_path / "seg+hull.mp4")
    assert np.abs(a[2].astype(int) - b[2].astype(int)).mean() < 1.0


def test_convert_keeps_what_the_segmenter_cuts_out(tiny_run, faceset_pair, tmp_path):
    """The segmenter hook: a mask that is only the crop's left half swaps the left half of the
    face and leaves the right half as it was."""
    from faceswap.convert.config import ConvertConfig
    from faceswap.convert.pipeline import convert

    from helpers import read_frames

    class LeftHalf:
        centering = fsmod.load(faceset_pair[0]).centering
        calls = 0

        def __call__(self, crops):
            self.calls += 1
            m = np.zeros(crops.shape[:3], np.float32)
            m[:, :, : crops.shape[2] // 2] = 1.0
            return m

    seg = LeftHalf()
    clip = faceset_pair[0].parent / "a.mp4"
    cfg = ConvertConfig(mask="seg", mask_model="in-memory", color="none", feather=0.02,
                        erode=0.0, crf=0)  # fmt: skip
    out = tmp_path / "o.mp4"
    convert(clip, tiny_run, out, cfg, alignments=faceset_pair[0], start=20, end=24,
            segmenter=seg)  # fmt: skip
    assert seg.calls >= 1
    before, after = read_frames(clip)[20:24], read_frames(out)
    fs = fsmod.load(faceset_pair[0])
    face = next(f for f in fs.faces if f.frame == 22)
    lm = face.landmarks_array()
    diff = np.abs(after[2].astype(int) - before[2].astype(int)).mean(-1)
    x0, x1 = int(lm[:, 0].min()), int(lm[:, 0].max())
    y0, y1 = int(lm[:, 1].min()), int(lm[:, 1].max())
    mid = int(lm[27:31, 0].mean())  # the nose bridge: the crop's vertical centre line
    left = diff[y0:y1, x0 : mid - 4].mean()
    right = diff[y0:y1, mid + 6 : x1].mean()
    assert left > 5 * max(right, 0.5), (left, right)
    with pytest.raises(BadInput, match="centred"):
        seg.centering = "head" if seg.centering != "head" else "face"
        convert(clip, tiny_run, tmp_path / "p.mp4", cfg, alignments=faceset_pair[0], start=20,
                end=22, segmenter=seg)  # fmt: skip
