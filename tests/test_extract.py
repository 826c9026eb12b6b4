"""Extraction on real faces: a clip rendered from a real portrait with known head motion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faceswap import faceset as fsmod
from faceswap.config import ExtractConfig
from faceswap.errors import BadInput
from faceswap.extract.aligners import DlibAligner
from faceswap.extract.alignment import transform_points
from faceswap.extract.pipeline import extract
from faceswap.synthetic import astronaut, head_motion

from helpers import shared_data


def _reference_landmarks() -> np.ndarray:
    """dlib's landmarks on the still portrait (its face box as HOG finds it)."""
    return DlibAligner().landmarks(astronaut(), [np.array([175.0, 76.0, 265.0, 166.0])])[0]


def test_finds_the_face_in_nearly_every_frame_with_landmarks_that_follow_the_motion(
    astronaut_clip, extracted
):
    path, mats = astronaut_clip
    out, summary = extracted
    fs = fsmod.load(out)
    assert summary.frames_read == len(mats)
    frames = {f.frame for f in fs.faces}
    assert len(frames) >= 0.95 * len(mats)
    assert len(fs.faces) == len(frames)  # one face, found once per frame
    ref = _reference_landmarks()
    errors = [
        np.linalg.norm(f.landmarks_array() - transform_points(mats[f.frame], ref), axis=1).mean()
        for f in fs.faces
    ]
    assert np.median(errors) < 2.0 and max(errors) < 4.0, errors


def test_roll_follows_the_known_rotation(astronaut_clip, extracted):
    out, _ = extracted
    fs = fsmod.load(out)
    motion = head_motion(len(astronaut_clip[1]), seed=3)
    roll = np.array([f.roll for f in fs.faces])
    angle = np.array([motion[f.frame].angle for f in fs.faces])
    # the portrait's own head tilt is a constant offset; changes must match the rendered ones
    np.testing.assert_allclose(roll - roll.mean(), angle - angle.mean(), atol=2.5)
    assert all(abs(f.yaw) < 20 for f in fs.faces)


def test_face_records_hold_everything_later_stages_need(extracted):
    out, _ = extracted
    fs = fsmod.load(out)
    face = fs.faces[0]
    img = fs.load_image(face)
    assert img.shape == (64, 64, 3)
    assert len(face.embedding) == 128 and face.embedding_frame is not None
    assert face.blur > 10 and face.residual < 0.05 and face.jitter < 0.2 and face.score > 0
    src = fs.sources[face.source]
    assert src.kind == "video" and src.width == 640 and src.height == 360 and len(src.sha256) == 64
    # aligned landmarks sit inside the crop: the matrix really maps frame -> crop
    assert ((face.aligned_landmarks() > 0) & (face.aligned_landmarks() < 64)).all()
    # the track is one person across the clip, so embeddings are close to each other
    embs = np.array([f.embedding for f in fs.faces])
    assert np.linalg.norm(embs - embs.mean(0), axis=1).max() < 0.3
    assert len({f.track for f in fs.faces}) == 1


def test_rerun_resumes_and_never_duplicates(astronaut_clip, tmp_path):
    path, mats = astronaut_clip
    out = tmp_path / "set"
    cfg = ExtractConfig(size=64, workers=1, embed=False, end_frame=10)
    first = extract([str(path)], out, cfg)
    assert first.frames_read == 10
    cfg = ExtractConfig(size=64, workers=1, embed=False)
    second = extract([str(path)], out, cfg)
    assert second.frames_resumed == 10 and second.frames_read == len(mats) - 10
    third = extract([str(path)], out, cfg)
    assert third.frames_read == 0
    fs = fsmod.load(out)
    names = [f.file for f in fs.faces]
    assert len(names) == len(set(names)) == len({f.frame for f in fs.faces})
    assert len(list((out / "faces").iterdir())) == len(names)
    # --force redoes the source instead of resuming
    forced = extract([str(path)], out, cfg, force=True)
    assert forced.frames_read == len(mats) and len(fsmod.load(out).faces) == len(names)


def test_interrupt_leaves_a_valid_face_set_that_resumes(astronaut_clip, tmp_path):
    path, mats = astronaut_clip
    out = tmp_path / "set"
    cfg = ExtractConfig(size=64, workers=1, embed=False, chunk=4)
    calls = []

    def interrupt_after_two_chunks(frames: int, kept: int, todo: int) -> None:
        if frames:
            calls.append(frames)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract([str(path)], out, cfg, progress=interrupt_after_two_chunks)
    fs = fsmod.load(out)
    assert len(fs.faces) == 8
    # a crash can leave an image that never reached the index: the re-run must absorb it
    orphan = out / "faces" / fs.faces[-1].file.split("/")[1].replace("f000007", "f000008")
    orphan.write_bytes((out / fs.faces[-1].file).read_bytes())
    summary = extract([str(path)], out, cfg)
    assert summary.frames_resumed == 8
    fs = fsmod.load(out)
    assert sorted(f.frame for f in fs.faces) == list(range(len(mats)))
    assert len(list((out / "faces").iterdir())) == len(mats)


def test_two_worker_processes_give_the_same_faces_as_one(astronaut_clip, tmp_path):
    path, _ = astronaut_clip
    one = extract([str(path)], tmp_path / "a", ExtractConfig(size=64, workers=1, embed=False))
    two = extract([str(path)], tmp_path / "b", ExtractConfig(size=64, workers=2, embed=False))
    assert one.faces_kept == two.faces_kept
    a, b = fsmod.load(tmp_path / "a"), fsmod.load(tmp_path / "b")
    la = np.array([f.landmarks for f in a.faces])
    lb = np.array([f.landmarks for f in b.faces])
    # chunk borders restart tracking with a detection, so allow sub-pixel differences
    assert np.abs(la - lb).mean() < 0.5


def test_image_folder_with_grayscale_16bit_and_rotated_images(tmp_path):
    import cv2

    folder = tmp_path / "photos"
    folder.mkdir()
    bgr = astronaut()[:, :, ::-1]
    cv2.imwrite(str(folder / "color.jpg"), bgr)
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "deep.png"), bgr.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "odd.png"), cv2.resize(bgr, (333, 517)))
    summary = extract([str(folder)], tmp_path / "set", ExtractConfig(size=64, upsample=1))
    assert summary.sources == 4 and summary.faces_kept >= 4
    fs = fsmod.load(tmp_path / "set")
    assert {fs.sources[f.source].kind for f in fs.faces} == {"image"}


def test_frame_range_and_every_nth(astronaut_clip, tmp_path):
    path, _ = astronaut_clip
    cfg = ExtractConfig(size=64, workers=1, embed=False, start_frame=4, end_frame=16, every_nth=3)
    summary = extract([str(path)], tmp_path / "set", cfg)
    assert sorted(f.frame for f in fsmod.load(tmp_path / "set").faces) == [4, 7, 10, 13]
    assert summary.frames_total == 4


def test_identity_reference_of_the_same_person_keeps_every_face(astronaut_clip, tmp_path):
    import cv2

    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), astronaut()[40:220, 130:320, ::-1])
    path, mats = astronaut_clip
    summary = extract([str(path)], tmp_path / "set", ExtractConfig(size=64, workers=1),
                      identity=[str(ref)])  # fmt: skip
    assert summary.faces_kept == len(mats) and not summary.rejected


def test_identity_filter_keeps_one_person_among_others(tmp_path):
    obama = shared_data("photos", "barack_obama")
    biden = shared_data("photos", "joe_biden")
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in list(obama.glob("*.jpg"))[1:] + list(biden.glob("*.jpg")):
        (folder / p.name).write_bytes(p.read_bytes())
    summary = extract([str(folder)], tmp_path / "set", ExtractConfig(size=64, upsample=1),
                      identity=[str(obama / "obama.jpg")])  # fmt: skip
    fs = fsmod.load(tmp_path / "set")
    kept = {fs.sources[f.source].path.split("/")[-1] for f in fs.faces}
    rejected = {fs.sources[f.source].path.split("/")[-1] for f in fs.rejected}
    assert kept and all(k.startswith("obama") for k in kept)
    assert rejected and all(r.startswith("biden") for r in rejected)
    assert summary.rejected["identity"] == len(fs.rejected)
    assert all(f.reason == "identity" and f.file.startswith("rejected/") for f in fs.rejected)


def test_clip_with_several_real_people_gives_several_identities(tmp_path):
    clip = shared_data("clips", "multi_face_hamilton.mp4")
    cfg = ExtractConfig(size=64, every_nth=5, upsample=1)
    summary = extract([str(clip)], tmp_path / "set", cfg)
    fs = fsmod.load(tmp_path / "set")
    assert summary.faces_kept >= 0.6 * summary.frames_read
    # greedy clustering at dlib's same-person distance: more than one person in the clip
    centres: list[np.ndarray] = []
    for e in (np.array(f.embedding) for f in fs.faces):
        if not centres or min(np.linalg.norm(e - c) for c in centres) > 0.6:
            centres.append(e)
    assert len(centres) >= 2 and len({f.track for f in fs.faces}) >= 2


def test_no_face_anywhere_is_a_clear_error_but_the_set_stays_valid(tmp_path):
    import cv2

    folder = tmp_path / "empty"
    folder.mkdir()
    cv2.imwrite(str(folder / "wall.png"), np.full((200, 300, 3), 120, np.uint8))
    with pytest.raises(BadInput, match="no face found"):
        extract([str(folder)], tmp_path / "set", ExtractConfig(size=64))
    assert fsmod.load(tmp_path / "set").faces == []


def test_index_is_compact_json(extracted):
    out, _ = extracted
    data = json.loads((out / "faceset.json").read_text())
    assert data["format"] == "faceswap-faceset" and data["version"] == 2
    assert data["extract"]["size"] == 64


def test_new_sets_store_jpeg_and_a_png_set_keeps_png_when_added_to(astronaut_clip, tmp_path):
    path, _ = astronaut_clip
    cfg = {"size": 64, "workers": 1, "embed": False}
    extract([str(path)], tmp_path / "new", ExtractConfig(end_frame=2, **cfg))
    assert fsmod.load(tmp_path / "new").image_format == "jpg"
    extract([str(path)], tmp_path / "old", ExtractConfig(end_frame=2, image_format="png", **cfg))
    extract([str(path)], tmp_path / "old", ExtractConfig(end_frame=4, **cfg))  # auto: resumes
    fs = fsmod.load(tmp_path / "old")
    assert fs.image_format == "png" and sorted(f.frame for f in fs.faces) == [0, 1, 2, 3]
    assert all(f.file.endswith(".png") for f in fs.faces)
    with pytest.raises(BadInput, match="stores png images, not jpg"):
        extract([str(path)], tmp_path / "old", ExtractConfig(image_format="jpg", **cfg))
