"""Extraction's tracker: the detector confirms a tracked face only now and then, landmarks place
its box in between, and faces the detector cannot confirm are never kept."""

from __future__ import annotations

import numpy as np

from faceswap.config import ExtractConfig
from faceswap.extract.finder import Backends, FaceFinder, box_from_landmarks, box_shape

from helpers import read_frames


def _finder(**over) -> tuple[FaceFinder, list[int]]:
    """A finder on the dlib backends that counts its region searches."""
    cfg = ExtractConfig(size=64, embed=False, **over)
    finder = FaceFinder(cfg, Backends("dlib-hog", "dlib", "cpu"))
    calls: list[int] = []
    near = finder.detect_near

    def counted(image, box):
        calls.append(1)
        return near(image, box)

    finder.detect_near = counted  # type: ignore[method-assign]
    return finder, calls


def test_box_from_landmarks_follows_the_face():
    lms = np.random.default_rng(0).uniform(100, 200, (68, 2))
    box = np.array([90.0, 80.0, 210.0, 220.0])
    moved = lms * 1.5 + (30, -10)  # the face moved and came closer
    assert np.allclose(box_from_landmarks(lms, box_shape(box, lms)), box)
    assert np.allclose(box_from_landmarks(moved, box_shape(box, lms)), box * 1.5 + (30, -10) * 2)


def test_confirms_every_few_frames_with_the_same_landmarks(astronaut_clip):
    frames = read_frames(astronaut_clip[0])[:16]
    chunk = [(i, None, f) for i, f in enumerate(frames)]
    every, every_calls = _finder(confirm_every=1, redetect_every=16)
    sparse, sparse_calls = _finder(confirm_every=4, redetect_every=16)
    a, b = every.process(chunk), sparse.process(chunk)
    assert [f.frame for f in a.faces] == [f.frame for f in b.faces] == list(range(16))
    assert len(every_calls) == 15 and len(sparse_calls) <= 6
    gap = [np.linalg.norm(x.landmarks - y.landmarks, axis=1).mean()
           for x, y in zip(a.faces, b.faces, strict=True)]  # fmt: skip
    eye = np.linalg.norm(a.faces[0].landmarks[36] - a.faces[0].landmarks[45])
    assert np.mean(gap) / eye < 0.03


def test_faces_the_detector_cannot_confirm_are_dropped(astronaut_clip):
    import cv2

    frames = read_frames(astronaut_clip[0])[:16]
    # the face blurred beyond recognition: HOG finds nothing, landmarks stay where they were
    # (a cut to an empty shot is caught sooner: its landmarks jump and the detector is asked)
    chunk = [(i, None, f if i < 8 else cv2.GaussianBlur(f, (0, 0), 10))
             for i, f in enumerate(frames)]  # fmt: skip
    finder, _ = _finder(confirm_every=6, redetect_every=16)
    result = finder.process(chunk)
    # frames 8-11 went on from landmarks until the confirmation at 12 failed: each was then
    # checked on its own and dropped
    assert sorted(f.frame for f in result.faces) == list(range(8))
    assert result.dropped["not confirmed"] == 4


def test_a_cut_to_an_empty_shot_keeps_no_face(astronaut_clip):
    frames = read_frames(astronaut_clip[0])[:8]
    chunk = [(i, None, f) for i, f in enumerate(frames + [np.full_like(frames[0], 120)] * 8)]
    finder, _ = _finder(confirm_every=6, redetect_every=16)
    assert sorted(f.frame for f in finder.process(chunk).faces) == list(range(8))
