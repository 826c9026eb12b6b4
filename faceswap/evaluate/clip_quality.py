"""Judge a converted video against its source, frame by frame, with dlib: the figures of
docs/quality.md (verified as B, pose, mouth, detail, seam, flicker, found).

    refs = references(fs_a, fs_b)            # centroids, B's spread and B's real-face detail
    figures = judge_video("swap.mp4", "clip.mp4", fs_clip, refs)

`fs_clip` is the source clip's face set (its landmarks say where each frame's face is); the two
videos are read in step, so memory does not grow with their length. dlib's detector, landmarks
and embedding do the judging: never the model's own losses, and never anything training sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from faceswap.evaluate import swap_quality as sq
from faceswap.evaluate.identity import centroid
from faceswap.faceset import FaceSet

JUDGE_FRAMES = 120  # frames judged per clip (evenly spaced); flicker uses every frame
REF_FACES = 40  # B's real faces for the detail reference


class FrameJudge:
    """dlib on whole frames: the face near an expected place, its landmarks, pose, embedding."""

    def __init__(self) -> None:
        from faceswap.extract.aligners import DlibAligner
        from faceswap.extract.detectors import DlibHogDetector
        from faceswap.extract.identity import DlibEmbedder

        self.detector, self.aligner = DlibHogDetector(upsample=0), DlibAligner()
        self.embedder = DlibEmbedder()

    def face(self, frame: np.ndarray, near: np.ndarray, embed: bool) -> dict[str, Any] | None:
        """The face dlib finds over the box of `near` (68 landmarks), or None."""
        from faceswap.extract.finder import iou
        from faceswap.extract.quality import head_pose

        box = np.concatenate([near.min(0), near.max(0)])
        dets = [d for d in self.detector.detect([frame])[0] if iou(d.box, box) > 0.3]
        if not dets:
            return None
        lm = self.aligner.landmarks(frame, [dets[0].box])[0]
        out: dict[str, Any] = {"landmarks": lm, "pose": np.array(head_pose(lm, frame.shape[:2]))}
        if embed:
            out["embedding"] = self.embedder.embed(frame, lm)
        return out


def _embeddings(fs: FaceSet) -> np.ndarray:
    emb = [f.embedding for f in fs.faces if f.embedding is not None]
    if not emb:
        raise ValueError(f"{fs.root}: no identity embeddings (extract without --no-embed)")
    return np.asarray(emb, np.float64)


def source_scale(fs_source: FaceSet) -> float:
    """The size the judged clip shows its faces at (median px between the eyes)."""
    if not fs_source.faces:
        raise ValueError(f"{fs_source.root}: no faces (is it the face set of the source clip?)")
    return sq.clip_scale([f.landmarks_array() for f in fs_source.faces])


def references(fs_a: FaceSet, fs_b: FaceSet, video_b: str | None = None,
               clip_iod: float | None = None) -> dict[str, Any]:  # fmt: skip
    """A's and B's centroids, B's spread (95th percentile) and B's real-face detail: the median
    over up to REF_FACES of B's faces, in the frames of `video_b` (B's face set's source clip)
    when given, else in B's aligned crops (resampled once, so ~10% softer). With `clip_iod`
    (the judged clip's scale, source_scale) B's detail at that scale too: judge_video's
    `detail_clip`."""
    ea, eb = _embeddings(fs_a), _embeddings(fs_b)
    ca, cb = centroid(ea), centroid(eb)
    picks = fs_b.faces[:: max(1, len(fs_b.faces) // REF_FACES)]
    scales = [sq.DETAIL_IOD] + ([float(clip_iod)] if clip_iod else [])
    detail: list[list[float]] = []
    if video_b is not None:
        wanted = {f.frame: f for f in picks}
        for i, frame in enumerate(_frames(video_b)):
            if i in wanted:
                lm = wanted[i].landmarks_array()
                detail.append([sq.detail_energy(frame, lm, iod) for iod in scales])
    else:
        for f in picks:
            crop = cv2.cvtColor(fs_b.load_image(f), cv2.COLOR_BGR2RGB)
            detail.append([sq.detail_energy(crop, f.aligned_landmarks(), iod) for iod in scales])
    if not detail:
        raise ValueError(f"{video_b}: none of B's faces are in this video")
    median = np.median(np.asarray(detail), axis=0)
    refs = {"centroid_a": ca, "centroid_b": cb, "spread_b": sq.spread(eb, cb),
            "detail_b": float(median[0]), "gap_ab": float(np.linalg.norm(ca - cb))}  # fmt: skip
    if clip_iod:
        refs.update(clip_iod=float(clip_iod), detail_b_clip=float(median[1]))
    return refs


def blurred_reference(
    source_path: str,
    fs_source: FaceSet,
    judge: FrameJudge | None = None,
    frames: int = JUDGE_FRAMES,
    sigma_iod: float = 1 / 20,
) -> dict[str, float | None]:
    """The mouth and expression figures of the *original* clip against itself blurred by
    sigma = IOD/20 (the blur that scores detail 0.08): what a swap that copied every
    expression exactly but held a blurred face's detail would score, since dlib's landmarks
    on a soft face are noisier. The ceiling the expression figures are read against."""
    judge = judge or FrameJudge()
    by_frame = {f.frame: f for f in fs_source.faces}
    judged = set(sorted(by_frame)[:: max(1, len(by_frame) // frames)])
    mouth_o, mouth_b, expr_o, expr_b = [], [], [], []
    for i, orig in enumerate(_frames(source_path)):
        if i not in judged:
            continue
        o = judge.face(orig, by_frame[i].landmarks_array(), embed=False)
        if o is None:
            continue
        lm = o["landmarks"]
        soft = cv2.GaussianBlur(orig, (0, 0), sq.interocular(lm) * sigma_iod)
        b = judge.face(soft, lm, embed=False)
        if b is None:
            continue
        mouth_o.append(sq.mouth_opening(lm)[0])
        mouth_b.append(sq.mouth_opening(b["landmarks"])[0])
        expr_o.append(sq.expression_features(lm)[0])
        expr_b.append(sq.expression_features(b["landmarks"])[0])
    return {"mouth_corr": sq.correlation(mouth_o, mouth_b),
            "mouth_gap": sq.mouth_gap_error(mouth_o, mouth_b),
            "expression_corr": sq.expression_correlation(np.array(expr_o), np.array(expr_b))}  # fmt: skip


def resolution_ceiling(
    video: str, fs: FaceSet, resolution: int, frames: int = REF_FACES, iod: float = sq.DETAIL_IOD
) -> float | None:
    """The detail figure a *perfect* model of this resolution could reach in `video`'s frames:
    each real face cut to the model's input as convert cuts it (crop_face) and put back as
    convert puts a swapped face back (cubic unwarp), over the real face's own detail; the
    median over up to `frames` faces. It depends on the face's size in the frame (a small
    face loses less) and on the unwarp's interpolation (linear keeps ~2/3 of what cubic
    keeps), so it is measured on the clip the swaps are judged on, by convert's own path.
    `iod`: the scale the detail is measured at (source_scale: the clip's own)."""
    from faceswap.convert.warp import crop_face, face_matrices

    picks = {f.frame: f for f in fs.faces[:: max(1, len(fs.faces) // frames)]}
    ratios = []
    for i, frame in enumerate(_frames(video)):
        face = picks.get(i)
        if face is None:
            continue
        lm = face.landmarks_array()
        m_crop, m_model = face_matrices(lm, fs.size, resolution, fs.centering)
        crop = crop_face(frame, m_crop, fs.size, resolution)
        back = cv2.warpAffine(crop, m_model, (frame.shape[1], frame.shape[0]),
                              flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)  # fmt: skip
        real = sq.detail_energy(frame, lm, iod)
        if real > 0:
            ratios.append(sq.detail_energy(back, lm, iod) / real)
    return float(np.median(ratios)) if ratios else None


def _frames(path: str) -> Any:
    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def judge_video(
    swap_path: str,
    source_path: str,
    fs_source: FaceSet,
    refs: dict[str, Any],
    judge: FrameJudge | None = None,
    frames: int = JUDGE_FRAMES,
    tick: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The figures of a converted video (see docs/quality.md). Detail counts only the frames
    dlib verifies as B: a convert that pasted nothing, or a face still A's, would otherwise
    score the original's full detail."""
    judge = judge or FrameJudge()
    by_frame = {f.frame: f for f in fs_source.faces}
    judged = set(sorted(by_frame)[:: max(1, len(by_frame) // frames)])
    emb, pose_o, pose_s, mouth_o, mouth_s, seams = [], [], [], [], [], []
    expr_o: list[np.ndarray] = []
    expr_s: list[np.ndarray] = []
    detail_verified_idx: list[int] = []
    detail_all: list[float] = []
    detail_clip: list[float] = []  # at the clip's own scale (refs["clip_iod"]), when given
    clip_iod = refs.get("clip_iod")
    found = looked = 0
    change_out = change_orig = 0.0
    prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # out, orig, face region
    for i, (out, orig) in enumerate(zip(_frames(swap_path), _frames(source_path))):
        face = by_frame.get(i)
        if prev is not None and face is not None:
            change_out += sq.frame_change(prev[0], out, prev[2])
            change_orig += sq.frame_change(prev[1], orig, prev[2])
        prev = None
        if face is None:
            continue
        prev = (out, orig, sq.face_region(face.landmarks_array(), orig.shape[:2]))
        if i not in judged:
            continue
        o = judge.face(orig, face.landmarks_array(), embed=False)
        if o is None:  # dlib misses the original too: nothing to compare against
            continue
        looked += 1
        lm = o["landmarks"]
        region = sq.changed_region(out, orig)
        s = sq.seam_step(out, orig, region, sq.interocular(lm))
        if s is not None:
            seams.append(s)
        detail_all.append(sq.detail_energy(out, lm))
        if clip_iod:
            detail_clip.append(sq.detail_energy(out, lm, clip_iod))
        got = judge.face(out, lm, embed=True)
        if tick:
            tick()
        if got is None:
            continue
        found += 1
        detail_verified_idx.append(len(detail_all) - 1)
        emb.append(got["embedding"])
        pose_o.append(o["pose"])
        pose_s.append(got["pose"])
        mouth_o.append(sq.mouth_opening(lm)[0])
        mouth_s.append(sq.mouth_opening(got["landmarks"])[0])
        expr_o.append(sq.expression_features(lm)[0])
        expr_s.append(sq.expression_features(got["landmarks"])[0])
    emb_arr = np.asarray(emb, np.float64).reshape(-1, 128)
    ca, cb = refs["centroid_a"], refs["centroid_b"]
    ident = sq.verify_identity(emb_arr, ca, cb, refs["spread_b"])
    verified = sq.verified_mask(emb_arr, ca, cb)
    kept = [k for j, k in enumerate(detail_verified_idx) if verified[j]]
    detail_b = [detail_all[k] for k in kept]
    at_scale = None
    if clip_iod:  # the same frames at the size the clip shows them
        at_scale = (
            float(np.median([detail_clip[k] for k in kept])) / refs["detail_b_clip"]
            if kept
            else 0.0
        )
    return {
        "frames_judged": looked,
        "found": found / looked if looked else None,
        "verified_b": ident["verified_b"],
        "within_spread_b": ident["within_spread_b"],
        "dist_a": ident["dist_a"],
        "dist_b": ident["dist_b"],
        "pose": sq.pose_difference(np.array(pose_o), np.array(pose_s)),
        "pose_tracking": sq.pose_tracking(np.array(pose_o), np.array(pose_s)),
        "mouth_corr": sq.correlation(mouth_o, mouth_s),
        "mouth_gap": sq.mouth_gap_error(mouth_o, mouth_s),
        "expression_corr": sq.expression_correlation(np.array(expr_o), np.array(expr_s)),
        "detail": float(np.median(detail_b)) / refs["detail_b"] if detail_b else 0.0,
        "detail_all": float(np.median(detail_all)) / refs["detail_b"] if detail_all else None,
        "detail_clip": at_scale,
        "clip_iod": clip_iod,
        "seam": float(np.median(seams)) if seams else None,
        "flicker": change_out / change_orig if change_orig > 0 else None,
        "gap_ab": refs["gap_ab"],
    }
