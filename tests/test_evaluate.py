"""faceswap evaluate: the low-resolution analysis pipeline on generated faces with known answers,
and the runner and CLI on a trained tiny run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceswap import faceset as fsmod
from faceswap.cli import main
from faceswap.evaluate import identity, pose
from faceswap.evaluate.analyze import CropAnalyzer
from faceswap.evaluate.recommend import recommend
from faceswap.evaluate.report import _training_html, run_numbers
from faceswap.extract import alignment
from faceswap.synthetic import ASTRONAUT_FACE_CENTER, astronaut

R = 64  # model resolution of the tiny run


def wider_face(img: np.ndarray, sx: float = 1.4, sy: float = 0.8) -> np.ndarray:
    """The portrait with a wider, shorter face (stretched about the face centre, fading out
    around it): another person to dlib (embedding distance ~0.75, beyond its 0.6 threshold)."""
    cx, cy = ASTRONAUT_FACE_CENTER
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    weight = np.clip(1.3 - np.sqrt(((xx - cx) / 70) ** 2 + ((yy - cy) / 80) ** 2), 0, 1)
    mx = cx + (xx - cx) / (1 + (sx - 1) * weight)
    my = cy + (yy - cy) / (1 + (sy - 1) * weight)
    return np.ascontiguousarray(cv2.remap(img, mx, my, cv2.INTER_LINEAR))


@pytest.fixture(scope="module")
def analyzer() -> CropAnalyzer:
    return CropAnalyzer("face", 256, embed=True)


@pytest.fixture(scope="module")
def people(analyzer) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (crops (4, 64, 64, 3) RGB, true aligned landmarks (4, 68, 2)) of two generated
    people, each crop at another small rotation and scale."""
    from faceswap.extract.detectors import make_detector

    det = make_detector("dlib-hog", upsample=1)  # the wide face needs the finer scale
    out = {}
    for name, img in (("a", np.ascontiguousarray(astronaut())), ("b", wider_face(astronaut()))):
        box = max(det.detect([img])[0], key=lambda d: d.score).box
        lm = analyzer.aligner.landmarks(img, [box])[0]
        crops, lms = [], []
        for k in range(4):
            m = cv2.getRotationMatrix2D(ASTRONAUT_FACE_CENTER, 4.0 * k - 6, 1.0 + 0.04 * k)
            frame = cv2.warpAffine(img, m, (512, 512), borderMode=cv2.BORDER_REFLECT)
            lm_k = alignment.transform_points(m, lm)
            c = alignment.crop_matrix(lm_k, R, "face")
            crops.append(cv2.warpAffine(frame, c, (R, R), flags=cv2.INTER_AREA))
            lms.append(alignment.transform_points(c, lm_k))
        out[name] = (np.stack(crops), np.stack(lms))
    return out


def test_landmarks_of_a_64px_crop_match_the_full_size_ones(analyzer, people) -> None:
    crops, true = people["a"]
    found = analyzer.analyze(crops)
    err = np.linalg.norm(found["landmarks"] - true, axis=-1).mean(1)  # (4,) px at 64
    assert err.max() < 1.0, err
    assert found["residual"].max() < 0.04
    # the same faces through the same pipeline: no pose or expression error at all
    again = analyzer.analyze(crops)
    assert pose.pose_error(found["pose"], again["pose"]).max() == 0.0


def test_rotated_swap_gives_its_roll_error(analyzer, people) -> None:
    crops, _ = people["a"]
    m = cv2.getRotationMatrix2D(((R - 1) / 2, (R - 1) / 2), 15.0, 1.0)
    turned = np.stack([cv2.warpAffine(c, m, (R, R), flags=cv2.INTER_CUBIC,
                                      borderMode=cv2.BORDER_REFLECT) for c in crops])  # fmt: skip
    a, b = analyzer.analyze(crops), analyzer.analyze(turned)
    err = pose.pose_error(a["pose"], b["pose"]).mean(0)  # yaw, pitch, roll
    assert err[2] == pytest.approx(15.0, abs=2.0), err
    assert err[0] < 4.0 and err[1] < 4.0, err
    # rotation leaves the expression alone
    expr = pose.expression_error(a["landmarks"], b["landmarks"])
    assert expr["mouth"].mean() < 0.05 and expr["eyes"].mean() < 0.05


def test_shifted_face_keeps_pose_and_expression(analyzer, people) -> None:
    crops, _ = people["a"]
    shifted = np.roll(crops, 2, axis=2)  # 2 px to the right
    a, b = analyzer.analyze(crops), analyzer.analyze(shifted)
    shift = (b["landmarks"] - a["landmarks"]).mean(1)  # (4, 2)
    np.testing.assert_allclose(shift.mean(0), [2.0, 0.0], atol=0.5)
    assert pose.pose_error(a["pose"], b["pose"]).max() < 4.0
    assert pose.expression_error(a["landmarks"], b["landmarks"])["mouth"].max() < 0.05


def test_identity_of_two_generated_people(analyzer, people) -> None:
    emb = {k: analyzer.analyze(c, embed=True)["embeddings"] for k, (c, _) in people.items()}
    # centroids from two faces of each person, the other two are the "swaps"
    cents = {k: identity.centroid(e[:2]) for k, e in emb.items()}
    assert identity.centroid_gap(cents)["a-b"] > 0.6  # two people to dlib, even at 64 px
    good = identity.identity_scores(emb["b"][2:], cents, "b")  # a swap that became B
    assert good["retrieval"] == 1.0
    assert good["distance_to"]["b"]["mean"] < 0.6 < good["distance_to"]["a"]["mean"]
    bad = identity.identity_scores(emb["a"][2:], cents, "b")  # a swap that stayed A
    assert bad["retrieval"] == 0.0 and bad["same_person"] == 0.0


# ---- the runner and the CLI ---------------------------------------------------------------------


@pytest.fixture
def run(tmp_path: Path, tiny_run: Path) -> Path:
    """A private copy of the session's trained tiny run (evaluate writes into it)."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def _clip(tmp_path: Path, source: Path, sigma: float, frame_shift: int = 0) -> Path:
    """A stand-in for a converted clip's face set: the source faces with landmarks moved by
    independent noise of `sigma` px (a swap that shakes) and frames moved by frame_shift."""
    out = Path(shutil.copytree(source, tmp_path / f"clip{frame_shift}"))
    fs = fsmod.load(out)
    rng = np.random.default_rng(5)
    for f in fs.faces:
        f.landmarks = (f.landmarks_array() + rng.normal(0, sigma, (68, 2))).tolist()
        f.frame += frame_shift
    fs.save()
    return out


def _scalars(logdir: Path) -> dict[str, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {t: acc.Scalars(t)[-1].value for t in acc.Tags()["scalars"] if t.startswith("eval/")}


def test_evaluate_command_writes_json_and_tensorboard(
    run: Path, faceset_pair, tmp_path: Path, capsys
) -> None:
    a, b = faceset_pair
    sigma = 1.0
    clip = _clip(tmp_path, a, sigma)
    args = ["evaluate", "-m", str(run), "-A", str(a), "-B", str(b), "--max-faces", "4",
            "--clip", str(clip), "--json"]  # fmt: skip
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((run / "evaluation.json").read_text())
    assert printed == saved
    assert saved["step"] == 12 and Path(saved["checkpoint"]).parent.name == "checkpoints"

    for side in ("a", "b"):
        rec = saved["reconstruction"][side]
        for group in ("train", "val"):
            assert rec[group]["psnr"]["n"] == 4
            assert 5.0 < rec[group]["psnr"]["mean"] < 60.0
            assert -1.0 <= rec[group]["ssim"]["mean"] <= 1.0
        assert rec["gap"]["psnr"] == pytest.approx(
            rec["train"]["psnr"]["mean"] - rec["val"]["psnr"]["mean"], abs=1e-4)  # fmt: skip
    ident = saved["identity"]
    assert ident["faces"] == 4 and 0.0 <= ident["retrieval"] <= 1.0
    assert set(ident["distance_to"]) == {"a", "b"}
    assert saved["pose"]["faces"] == 4 and saved["expression"]["mouth"]["n"] == 4
    # A's inputs through the pipeline are real faces: dlib finds their landmarks
    assert saved["landmark_residual"]["inputs"]["median"] < 0.05
    assert all(f["split_matches_training"] for f in saved["facesets"].values())

    # temporal: the clip is the source plus noise of sigma px -> added jitter sigma*sqrt(pi)/IOD
    tmp = saved["temporal"]
    n_faces = len(fsmod.load(a).faces)
    assert tmp["frames"] == n_faces
    src = fsmod.load(a)
    iod = np.median([np.linalg.norm(f.landmarks_array()[36:42].mean(0)
                                    - f.landmarks_array()[42:48].mean(0)) for f in src.faces])  # fmt: skip
    assert tmp["added_jitter"]["mean"] == pytest.approx(sigma * np.sqrt(np.pi) / iod, rel=0.15)
    assert tmp["jitter_ratio"] > 1.0

    scal = _scalars(run / "logs")
    assert scal["eval/psnr_val_a"] == pytest.approx(
        saved["reconstruction"]["a"]["val"]["psnr"]["mean"]
    )
    assert scal["eval/identity_retrieval"] == pytest.approx(ident["retrieval"])
    assert "eval/temporal_added_jitter" in scal

    # the report's training section shows the evaluation, and its advice reads the numbers
    numbers, arrays = run_numbers(run)
    assert numbers["evaluation"] == saved
    assert "identity retrieval (nearest is B)" in _training_html(numbers, arrays, None)
    no_face = saved["faces_detected"]["swaps"] < 0.5
    texts = [r["text"] for r in recommend({"sets": {}, "run": numbers})]
    assert any("finds a face in only" in t for t in texts) == no_face, texts

    # a second evaluation replaces evaluation.json and adds to the history
    assert main(["evaluate", "-m", str(run), "-A", str(a), "-B", str(b), "--max-faces", "2",
                 "--checkpoint", "latest", "--no-tensorboard"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "reconstruction (masked)" in out and "identity of 2 swaps" in out
    hist = (run / "evaluations.jsonl").read_text().splitlines()
    assert len(hist) == 2 and json.loads(hist[0]) == saved
    assert json.loads((run / "evaluation.json").read_text())["config"]["max_faces"] == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-faces", "1"], "max_faces must be between 2"),
        (["--clip-source", "A"], "--clip-source needs --clip"),
        (["--checkpoint", "nowhere"], "--checkpoint nowhere: not a checkpoint folder"),
        (["--clip", "SHIFTED"], "only 0 of its faces match"),
        (["--mask", "round"], "mask must be one of"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    run: Path, faceset_pair, tmp_path: Path, capsys, extra, message
) -> None:
    a, b = faceset_pair
    subst = {"A": str(a), "SHIFTED": None}
    if "SHIFTED" in extra:
        subst["SHIFTED"] = str(_clip(tmp_path, a, 0.0, frame_shift=100_000))
    extra = [subst.get(x) or x for x in extra]
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    code = main(["evaluate", "-m", str(run), "-A", str(a), "-B", str(b), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1, err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_not_a_run_folder(tmp_path: Path, faceset_pair, capsys) -> None:
    a, b = faceset_pair
    assert main(["evaluate", "-m", str(tmp_path), "-A", str(a), "-B", str(b)]) == 2
    assert "not a faceswap run folder" in capsys.readouterr().err
    assert main(["evaluate", "-m", str(tmp_path), "-A", str(tmp_path / "x"), "-B", str(b)]) == 2
