"""Detector and aligner backends. dlib runs for real; face-alignment's S3FD and FAN run their
real code path with randomly initialised networks (their weights cannot be downloaded here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceswap.config import ExtractConfig
from faceswap.errors import MissingBackend
from faceswap.extract.aligners import FanAligner, fan_crop_matrix, heatmap_peaks, make_aligner
from faceswap.extract.detectors import DETECTORS, S3fdDetector, make_detector
from faceswap.extract.finder import Backends, FaceFinder
from faceswap.extract.pipeline import resolve_backends
from faceswap.synthetic import astronaut


def test_dlib_hog_finds_the_portrait_face():
    dets = make_detector("dlib-hog").detect([astronaut()])[0]
    best = max(dets, key=lambda d: d.score)
    np.testing.assert_allclose(best.box, [175, 76, 265, 166], atol=12)


def test_unknown_backend_names_list_the_valid_ones():
    with pytest.raises(MissingBackend, match="dlib-hog, dlib-cnn, s3fd"):
        make_detector("mtcnn")
    with pytest.raises(MissingBackend, match="dlib, fan"):
        make_aligner("sbr")


def test_s3fd_code_path_with_random_weights_batches_frames():
    torch.manual_seed(0)
    det = S3fdDetector(random_init=True, min_score=0.01)
    frames = [astronaut()[:256, :256].copy(), astronaut()[256:, 256:].copy()]
    out = det.detect(frames)
    assert len(out) == 2
    for dets in out:
        for d in dets:
            assert d.box.shape == (4,) and 0.01 <= d.score <= 1.0


def _gaussian_heatmaps(points64: np.ndarray) -> torch.Tensor:
    yy, xx = np.mgrid[0:64, 0:64]
    hm = np.exp(-((xx[None] - points64[:, 0, None, None]) ** 2
                  + (yy[None] - points64[:, 1, None, None]) ** 2) / 2.0)  # fmt: skip
    return torch.from_numpy(hm[None].astype(np.float32))  # (1, 68, 64, 64)


def test_heatmap_peaks_are_found_with_subpixel_refinement():
    pts = np.stack([np.arange(68) % 60 + 2.0, np.arange(68) // 2 + 10.0], 1)
    peaks = heatmap_peaks(_gaussian_heatmaps(pts).numpy())[0]
    np.testing.assert_allclose(peaks, pts, atol=0.01)
    shifted = heatmap_peaks(_gaussian_heatmaps(pts + 0.3).numpy())[0]
    np.testing.assert_allclose(shifted, pts + 0.25, atol=0.01)


def test_fan_maps_heatmap_peaks_back_to_frame_pixels():
    """Feed FAN's post-processing a heatmap whose peaks sit where known frame points land in
    its crop; the aligner must return those frame points."""
    aligner = FanAligner(random_init=True)
    box = np.array([150.0, 60.0, 290.0, 200.0])
    m = fan_crop_matrix(box)
    rng = np.random.default_rng(0)
    frame_pts = np.stack([rng.uniform(170, 270, 68), rng.uniform(80, 190, 68)], 1)
    crop_pts = frame_pts @ m[:, :2].T + m[:, 2]
    hm_pts = np.round((crop_pts + 0.5) / 4 - 0.5)  # integer heatmap cells: exact peaks
    expected_crop = (hm_pts + 0.5) * 4 - 0.5
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    expected = expected_crop @ inv[:, :2].T + inv[:, 2]
    aligner.net = lambda x: [_gaussian_heatmaps(hm_pts).repeat(x.shape[0], 1, 1, 1)]
    out = aligner.landmarks(astronaut(), [box])[0]
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_fan_random_weights_give_68_points_per_box():
    aligner = FanAligner(random_init=True)
    boxes = [np.array([175.0, 76.0, 265.0, 166.0]), np.array([10.0, 10.0, 100.0, 100.0])]
    out = aligner.landmarks(astronaut(), boxes)
    assert len(out) == 2 and all(p.shape == (68, 2) and np.isfinite(p).all() for p in out)


def test_finder_runs_end_to_end_on_s3fd_and_fan_code_paths():
    torch.manual_seed(0)
    cfg = ExtractConfig(size=64, embed=False, min_score=0.01, max_faces=1)
    finder = FaceFinder(cfg, Backends("s3fd", "fan", "cpu"), random_init=True)
    face = np.ascontiguousarray(astronaut()[40:296, 96:352, ::-1])  # 256 px keeps S3FD quick
    frames = [(i, i / 25, face.copy()) for i in range(2)]
    result = finder.process(frames)
    assert result.frames == [0, 1]
    for f in result.faces:
        assert f.landmarks.shape == (68, 2) and f.image[:4] == b"\x89PNG"


def test_auto_picks_dlib_without_cuda(caplog):
    # the choice is logged at debug (the summary names it); the logger itself, since a CLI test
    # may have set the package logger to INFO
    caplog.set_level("DEBUG", logger="faceswap.extract.pipeline")
    b = resolve_backends(ExtractConfig())
    if not torch.cuda.is_available():
        assert (b.detector, b.aligner, b.device) == ("dlib-hog", "dlib", "cpu")
        assert "dlib-hog" in caplog.text and "no s3fd weights" in caplog.text


def test_every_registered_detector_is_constructible_or_says_what_is_missing():
    for name in DETECTORS:
        try:
            make_detector(name, random_init=True)
        except MissingBackend as exc:
            assert "pip install" in str(exc) or "weights" in str(exc)


def test_untracked_chunks_detect_all_frames_in_one_batch(monkeypatch):
    cfg = ExtractConfig(size=64, embed=False, track=False)
    finder = FaceFinder(cfg, Backends("dlib-hog", "dlib", "cpu"))
    calls = []
    real = finder.detector.detect
    monkeypatch.setattr(finder.detector, "detect", lambda fr: calls.append(len(fr)) or real(fr))
    bgr = np.ascontiguousarray(astronaut()[:, :, ::-1])
    result = finder.process([(i, None, bgr.copy()) for i in range(3)])
    assert calls == [3]
    assert [f.frame for f in result.faces] == [0, 1, 2]


def test_dlib_detector_reads_a_crop_of_a_frame_like_a_copy():
    """A region of a frame is a strided numpy view; dlib must see the same pixels as a copy."""
    frame = np.zeros((400, 700, 3), np.uint8)
    frame[0:400, 100:500] = astronaut()[:400, :400]
    roi = frame[20:300, 200:480]  # not contiguous; holds the face
    assert not roi.flags["C_CONTIGUOUS"]
    det = make_detector("dlib-hog")
    for _ in range(3):  # misreads were intermittent
        a = det.detect([roi])[0]
        b = det.detect([roi.copy()])[0]
        assert [tuple(d.box) for d in a] == [tuple(d.box) for d in b]
