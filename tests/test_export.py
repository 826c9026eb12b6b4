"""ONNX export: metadata, dynamic batch, onnxruntime vs PyTorch on real faces, convert running
an exported model, and bad input."""

import json

import cv2
import numpy as np
import pytest

from faceswap.cli import main
from faceswap.convert.model import load_swap_model
from faceswap.convert.onnx_model import OnnxSwapModel
from faceswap.errors import BadInput
from faceswap.export import check as checkmod

from helpers import read_frames, shared_data

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert main(["-q", "export", "-m", str(tiny_run), "-o", str(out)]) == 0
    return out


def test_export_metadata_batch_and_check(capsys, tiny_run, faceset_pair, tmp_path):
    out = tmp_path / "m.onnx"
    code, stdout, err = _cli(capsys, "export", "-m", tiny_run, "-o", out, "--json")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["step"] == 12 and s["direction"] == "a2b" and s["precision"] == "fp32"
    c = s["check"]
    assert c["passed"] and c["faces"] == 16 and c["source"] == str(faceset_pair[0])
    assert c["max_abs_rgb"] < 1e-4 and c["max_abs_mask"] < 1e-4
    assert not list(tmp_path.glob(".*partial"))
    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["faceswap.purpose"] == "synthetic"
    assert meta["faceswap.run"] == str(tiny_run) and meta["faceswap.step"] == "12"
    assert meta["faceswap.checkpoint"].endswith("checkpoints/best")
    assert meta["faceswap.face_size"] == "64" and meta["faceswap.centering"] == "face"
    assert meta["faceswap.resolution"] == "64" and meta["faceswap.learns_mask"] == "true"
    assert meta["faceswap.preset"] == "sae (custom)"
    assert json.loads(meta["faceswap.model"])["arch"] == "sae"
    # dynamic batch: 1 and 5 faces through the same file, same answers as PyTorch
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["rgb", "mask"]
    torch_model = load_swap_model(tiny_run, "a2b", "cpu", "fp32")
    rng = np.random.default_rng(0)
    for n in (1, 5):
        crops = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
        x = crops[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) / 255
        rgb, mask = sess.run(None, {"face": x})
        assert rgb.shape == (n, 3, 64, 64) and mask.shape == (n, 1, 64, 64)
        ref, ref_mask = torch_model.swap(crops)
        got = rgb.transpose(0, 2, 3, 1)[..., ::-1] * 255
        assert np.abs(got - ref).max() < 0.05 and np.abs(mask[:, 0] - ref_mask).max() < 1e-4


def test_onnx_model_matches_torch_on_the_astronaut(tiny_run, exported):
    torch_model = load_swap_model(tiny_run, "a2b", "cpu", "fp32")
    onnx_model = load_swap_model(exported, "a2b", "cpu")
    assert isinstance(onnx_model, OnnxSwapModel)
    assert (onnx_model.resolution, onnx_model.crop_size, onnx_model.centering) == (64, 64, "face")
    crops = checkmod.astronaut_crops(64, 64, "face")
    assert crops.shape == (6, 64, 64, 3) and crops.std() > 20  # a face, not a blank
    res = checkmod.compare(torch_model, onnx_model, crops, "astronaut", "fp32")
    assert res.passed and res.max_abs_rgb < 1e-4
    # the swap changes the face (the check would pass trivially on a constant model)
    rgb, _ = onnx_model.swap(crops)
    assert np.abs(rgb - crops).mean() > 5


def test_onnx_matches_torch_on_real_clip_faces(tiny_run, exported):
    clip = shared_data("clips", "liveportrait_d9.mp4")
    from faceswap.config import ExtractConfig
    from faceswap.convert.warp import crop_face, face_matrices
    from faceswap.extract.finder import FaceFinder
    from faceswap.extract.pipeline import resolve_backends

    cfg = ExtractConfig(detector="dlib-hog", aligner="dlib", embed=False)
    finder = FaceFinder(cfg, resolve_backends(cfg))
    crops = []
    for frame in read_frames(clip)[::60][:8]:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        dets = finder.detect(rgb)
        if dets:
            lms = finder.aligner.landmarks(rgb, [dets[0].box])[0]
            m, _ = face_matrices(lms, 64, 64, "face")
            crops.append(crop_face(frame, m, 64, 64))
    assert len(crops) >= 4
    res = checkmod.compare(load_swap_model(tiny_run, "a2b", "cpu", "fp32"),
                           load_swap_model(exported, "a2b", "cpu"), np.stack(crops),
                           str(clip), "fp32")  # fmt: skip
    assert res.passed and res.max_abs_rgb < 1e-4, res


def test_fp16_export_within_its_tolerance(tiny_run, tmp_path):
    from faceswap.export.onnx import export_onnx

    s = export_onnx(tiny_run, tmp_path / "h.onnx", precision="fp16")
    assert s.check["passed"] and s.check["max_abs_rgb"] < checkmod.TOLERANCE["fp16"]
    assert s.check["max_abs_rgb"] > 1e-6  # really half precision, not fp32 under another name
    full = (tmp_path / "h.onnx").stat().st_size
    assert full < 0.6 * s.megabytes * 2e6  # about half of fp32's size


def test_a_failed_check_writes_nothing(tiny_run, tmp_path, monkeypatch):
    from faceswap.export.onnx import export_onnx

    monkeypatch.setitem(checkmod.TOLERANCE, "fp32", 0.0)
    # the error of a trained model is tiny but not zero: a zero tolerance must fail
    with pytest.raises(RuntimeError, match="beyond the tolerance"):
        export_onnx(tiny_run, tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []


def test_convert_runs_an_exported_model(capsys, tiny_run, exported, faceset_pair, tmp_path):
    clip = faceset_pair[0].parent / "a.mp4"
    outs = {}
    for name, model in (("torch", tiny_run), ("onnx", exported)):
        out = tmp_path / f"{name}.mp4"
        extra = ["--provider", "cpu"] if name == "onnx" else []
        code, stdout, err = _cli(capsys, "convert", clip, "-m", model, "-o", out, "--alignments",
                                 faceset_pair[0], "--frames", "0-12", "--json", *extra)  # fmt: skip
        assert code == 0, err
        outs[name] = (json.loads(stdout), read_frames(out))
    s, frames = outs["onnx"]
    assert s["frames_swapped"] == 12 and s["run"] == str(exported)
    # the same swap, frame for frame (H.264 noise aside)
    diff = np.abs(np.stack(frames).astype(int) - np.stack(outs["torch"][1]).astype(int))
    assert diff.mean() < 0.5 and len(frames) == 12
    label = json.loads((tmp_path / "onnx.mp4.provenance.json").read_text())
    assert label["synthetic"] is True and label["run"]["folder"] == str(tiny_run)
    assert label["run"]["step"] == 12 and label["run"]["onnx"]["path"] == str(exported)
    assert label["run"]["onnx"]["provider"] == "CPUExecutionProvider"


def test_bad_input(capsys, tiny_run, exported, faceset_pair, tmp_path):
    cases = [
        (["export", "-m", tiny_run, "-o", tmp_path / "m.pt"], "must end in .onnx"),
        (["export", "-m", tiny_run, "-o", exported], "exists; pass --overwrite"),
        (["export", "-m", exported, "-o", tmp_path / "y.onnx"], "already an ONNX model"),
        (["export", "-m", tmp_path, "-o", tmp_path / "y.onnx"], str(tmp_path)),
        (["export", "-m", tiny_run, "-o", tmp_path / "y.onnx", "--precision", "int8"],
         "--precision"),
        (["convert", faceset_pair[0].parent / "a.mp4", "-m", exported, "-o", tmp_path / "o.mp4",
          "--direction", "b2a"], "exported for a2b"),
        (["convert", faceset_pair[0].parent / "a.mp4", "-m", exported, "-o", tmp_path / "o.mp4",
          "--provider", "tpu"], "provider"),
    ]  # fmt: skip
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        cases.append((["convert", faceset_pair[0].parent / "a.mp4", "-m", exported, "-o",
                       tmp_path / "o.mp4", "--provider", "cuda"], "has no CUDAExecutionProvider"))  # fmt: skip
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    cases.append((["convert", faceset_pair[0].parent / "a.mp4", "-m", bogus, "-o",
                   tmp_path / "o.mp4"], "not a readable ONNX model"))  # fmt: skip
    for argv, needle in cases:
        code, _, err = _cli(capsys, *argv)
        assert code == 2, (argv, err)
        assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "y.onnx").exists() and not (tmp_path / "o.mp4").exists()
    with pytest.raises(BadInput, match="exported for a2b"):
        load_swap_model(exported, "b2a")


def test_export_a_liae_model(faceset_pair, tmp_path):
    """LIAE (one decoder, two intermediates) exports through the same path: onnxruntime
    matches PyTorch."""
    from faceswap import faceset as fsmod
    from faceswap.train.trainer import Trainer, open_run

    from helpers import tiny_train_config

    run = tmp_path / "liae"
    model = {"arch": "liae", "resolution": 64, "encoder_dims": 8, "decoder_dims": 8,
             "bottleneck": 32}  # fmt: skip
    cfg = open_run(run, tiny_train_config(steps=2, model=model), resume=False)
    Trainer(cfg, fsmod.load(faceset_pair[0]), fsmod.load(faceset_pair[1]), run).train(
        tensorboard=False
    )
    out = tmp_path / "liae.onnx"
    assert main(["export", "-m", str(run), "-o", str(out)]) == 0
    assert out.is_file()
