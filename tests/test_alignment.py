import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceswap.extract import alignment as al
from faceswap.extract.masks import MASK_KINDS, landmark_mask, region_mask

from helpers import face_landmarks


def test_umeyama_recovers_a_known_similarity():
    src = np.random.default_rng(0).normal(size=(30, 2))
    a = np.radians(23)
    true = np.array(
        [[1.7 * np.cos(a), -1.7 * np.sin(a), 4.0], [1.7 * np.sin(a), 1.7 * np.cos(a), -2.0]]
    )
    dst = al.transform_points(true, src)
    np.testing.assert_allclose(al.umeyama(src, dst), true, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    scale=st.floats(30, 900),
    angle=st.floats(-60, 60),
    x=st.floats(-500, 3000),
    y=st.floats(-500, 2000),
    size=st.sampled_from([64, 128, 256, 512]),
    centering=st.sampled_from(list(al.CENTERING)),
)
def test_align_then_unalign_returns_the_landmarks(scale, angle, x, y, size, centering):
    lms = face_landmarks(scale, angle, (x, y))
    m = al.crop_matrix(lms, size, centering)
    back = al.transform_points(al.invert(m), al.transform_points(m, lms))
    np.testing.assert_allclose(back, lms, atol=1e-6 * max(1.0, abs(x), abs(y)))
    # the template points land where the template says, whatever the pose in the frame
    aligned = al.transform_points(m, lms[17:])
    np.testing.assert_allclose(aligned, al.template_landmarks(size, centering), atol=1e-6 * size)
    assert al.alignment_residual(lms, m, size, centering) < 1e-6


def test_crop_is_independent_of_in_plane_rotation_and_scale():
    frame = np.zeros((800, 800, 3), np.uint8)
    lms = face_landmarks(200, 0, (400, 400))
    for p in lms:
        cv2.circle(frame, (int(p[0]), int(p[1])), 3, (255, 255, 255), -1)
    m0 = al.crop_matrix(lms, 128, "face")
    crop0 = cv2.warpAffine(frame, m0, (128, 128))
    rot = cv2.getRotationMatrix2D((400, 400), 30, 1.3)
    frame2 = cv2.warpAffine(frame, rot, (800, 800))
    lms2 = al.transform_points(rot, lms)
    crop2 = cv2.warpAffine(frame2, al.crop_matrix(lms2, 128, "face"), (128, 128))
    assert np.abs(crop0.astype(int) - crop2.astype(int)).mean() < 6


def test_rescale_matrix_matches_a_direct_crop_of_another_size():
    lms = face_landmarks()
    m256 = al.crop_matrix(lms, 256, "legacy")
    np.testing.assert_allclose(al.rescale_matrix(m256, 256, 64), al.crop_matrix(lms, 64, "legacy"))


def test_centerings_nest_head_contains_face_contains_legacy():
    lms = face_landmarks()
    widths = {c: 1.0 / al.matrix_scale(al.crop_matrix(lms, 256, c)) for c in al.CENTERING}
    assert widths["head"] > widths["face"] > widths["legacy"]


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_masks_cover_the_face_and_not_the_corners(kind):
    m = al.crop_matrix(face_landmarks(), 128, "face")
    aligned = al.transform_points(m, face_landmarks())
    mask = landmark_mask(aligned, 128, kind)
    assert mask.dtype == np.float32 and mask.shape == (128, 128)
    cx, cy = aligned[30].round().astype(int)
    assert mask[cy, cx] == 1.0
    assert mask[0, 0] == 0 and mask[-1, -1] == 0
    assert 0.15 < mask.mean() < 0.8


def test_extended_mask_reaches_higher_than_hull():
    aligned = al.transform_points(al.crop_matrix(face_landmarks(), 128, "head"), face_landmarks())
    hull = landmark_mask(aligned, 128, "hull")
    ext = landmark_mask(aligned, 128, "extended")
    assert ext.sum() > hull.sum()
    assert np.nonzero(ext.any(1))[0].min() < np.nonzero(hull.any(1))[0].min()
    # a lower forehead reach lies between the two, and 0 is the plain hull
    low = landmark_mask(aligned, 128, "extended", forehead=0.25)
    top = [np.nonzero(m.any(1))[0].min() for m in (ext, low, hull)]
    assert top[0] < top[1] < top[2]
    np.testing.assert_array_equal(landmark_mask(aligned, 128, "extended", forehead=0.0), hull)


def test_region_masks_are_small_and_inside_the_face():
    aligned = al.transform_points(al.crop_matrix(face_landmarks(), 128, "face"), face_landmarks())
    face = landmark_mask(aligned, 128, "hull")
    for region in ("eyes", "mouth"):
        r = region_mask(aligned, 128, region)
        assert 0 < r.sum() < 0.2 * face.sum()
    with pytest.raises(ValueError):
        region_mask(aligned, 128, "nose")
