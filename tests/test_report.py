"""faceswap report: the numbers behind the page, the run curves, the CLI, and the page itself
rendered in headless Chromium (Debian's chromium package) with a check that its plots show."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceswap import faceset as fsmod
from faceswap.cli import main
from faceswap.evaluate.report import (
    COLORS,
    ReportConfig,
    png_size,
    read_metrics,
    run_numbers,
    write_report,
)
from faceswap.train.schedules import lr_at
from faceswap.train.trainer import read_run_config, write_run_config

from helpers import tiny_train_config

SHIFTED = 3  # every third face of the target is turned 40 degrees further than A and B go


@pytest.fixture(scope="module")
def report(tmp_path_factory, faceset_pair, tiny_run) -> tuple[Path, dict, set[int]]:
    """A report on the pair, a target whose every third face is turned beyond A's and B's
    poses, and the tiny run; with the frames of the turned faces."""
    a, b = faceset_pair
    root = tmp_path_factory.mktemp("report")
    target = Path(shutil.copytree(a, root / "target"))
    fs = fsmod.load(target)
    turned = set()
    for i, f in enumerate(fs.faces):
        if i % SHIFTED == 0:
            f.yaw += 40.0
            turned.add(f.frame)
        elif i % SHIFTED == 1:  # the mouth opened wider than A's or B's ever is
            lm = f.landmarks_array().copy()
            lm[65:68, 1] += 0.3 * np.linalg.norm(lm[8] - lm[27])
            f.landmarks = lm
    fs.save()
    cfg = ReportConfig(identity_sample=6, lighting_sample=60)
    numbers = write_report(root / "out", fsmod.load(a), fsmod.load(b), fsmod.load(target),
                           tiny_run, cfg)  # fmt: skip
    return root / "out", numbers, turned


def test_report_numbers(report) -> None:
    out, numbers, turned = report
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(numbers))
    cov = numbers["coverage"]
    outside = {o["frame"] for o in cov["outside"]}
    assert turned <= outside  # every turned face is found, few others
    assert len(outside - turned) <= 0.1 * cov["faces"]
    assert cov["sets"]["B"]["share"] >= 1 / SHIFTED - 0.01
    gaps = [g for g in cov["sets"]["B"]["gaps"] if g["axis"] == "yaw" and g["side"] == 1]
    assert gaps and gaps[0]["share"] >= 1 / SHIFTED - 0.01
    texts = [r["text"] for r in numbers["recommendations"]]
    assert any("of the target clip" in t and "where B has fewer than 3 faces to cover it" in t
               for t in texts), texts  # fmt: skip
    # one definition: a gap is never larger than its set's uncovered share, nor that than the
    # share outside; A covers its own unturned faces (the target is A's clip)
    for s in cov["sets"].values():
        assert all(g["share"] <= s["share"] <= cov["outside_share"] for g in s["gaps"])
    assert cov["sets"]["A"]["share"] <= len(turned) / cov["faces"] + 1e-6
    # the opened mouths: beyond B's widest (A's own faces, so A shows them)
    mouth = numbers["mouth_coverage"]
    assert mouth["A"] == [] and [g["side"] for g in mouth["B"]] == [1]
    assert mouth["B"][0]["share"] == pytest.approx(1 / SHIFTED, abs=0.02)
    assert any("has the mouth wider open than B's face set ever shows" in t for t in texts)
    assert numbers["sets"]["target"]["mouth_extent"][1] > numbers["sets"]["B"]["mouth_extent"][1]
    # the sets store no embeddings: a sample was embedded, all one person
    for name in ("A", "B"):
        ident = numbers["sets"][name]["identity"]
        assert ident["computed"] and ident["embedded"] == 6 and ident["beyond"] == 0
    assert numbers["identity_gap"]["A-B"] < 0.6  # the recoloured portrait is the same person
    assert numbers["run"]["last_step"] == 12 and numbers["run"]["evaluations"] == 4


def test_run_without_validation_says_its_step(tiny_run, tmp_path) -> None:
    """Not "0 validations up to step 0" for a run at step 12 whose metrics are gone."""
    from faceswap.evaluate.report import _training_html, run_numbers

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    (run / "metrics.jsonl").unlink()
    numbers, arrays = run_numbers(run)
    assert numbers["evaluations"] == 0 and numbers["last_step"] == 12
    page = _training_html(numbers, arrays, None)
    assert "at step 12; no validation yet" in page and "up to step 0" not in page


def test_page_is_self_contained(report) -> None:
    page = (report[0] / "report.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) >= 4 + 2 * 6  # coverage, quality, identity, training, preview + thumbnails
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(href|src)=\"?https?:", page)
    for section in ("recommendations", "coverage", "quality", "identity", "training"):
        assert f"id='{section}'" in page
    assert "Mouth wider open than B shows" in page and "mouth from" in page


def test_run_curves_overfitting_marker_and_lr(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_train_config(overfit_evals=2)
    write_run_config(run, cfg)
    rows = [(3, 0.50, 0.52), (6, 0.40, 0.45), (9, 0.35, 0.47), (12, 0.30, 0.50), (15, 0.28, 0.55)]
    lines = [json.dumps({"step": s, "train": t, "val_a": v, "val_b": v, "gap": v - t})
             for s, t, v in rows]  # fmt: skip
    lines[0] = "{step: 3, train: 0.5, val_a: 0.52, val_b: 0.52, gap: 0.02}"  # an older YAML row
    # a killed run's row for step 6, written again after the resume: the later one counts
    lines.insert(1, json.dumps({"step": 6, "train": 9.0, "val_a": 9.0, "val_b": 9.0}))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert [r["step"] for r in read_metrics(run)] == [3, 6, 9, 12, 15]
    assert read_metrics(run)[1]["train"] == 0.40
    numbers, arrays = run_numbers(run)
    # validation rose twice in a row (at 9 and 12) while training fell: flagged once, at 12
    assert [e["step"] for e in numbers["overfitting"]] == [12]
    assert numbers["best_step"] == 6
    sched = read_run_config(run).schedule
    assert arrays["lrs"] == [lr_at(sched, s) for s in arrays["lr_steps"]]
    assert arrays["lr_steps"][0] == 0 and arrays["lr_steps"][-1] == 15


# ---- headless Chromium ------------------------------------------------------------------------


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _screenshot(page: Path, png: Path, profile: Path) -> np.ndarray:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={png}",
           "--window-size=1280,4000", page.resolve().as_uri()]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert png.is_file(), (
        f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-800:]}"
    )
    img = cv2.imread(str(png))
    assert img is not None and img.shape[:2] == (4000, 1280)
    return img


MAGENTA = (255, 0, 255)  # BGR; appears nowhere in the report


def _placeholders(page: str) -> str:
    """The page with every image replaced by a magenta PNG of the same pixel size, so a
    screenshot of it shows where the images are."""

    def magenta(m: re.Match) -> str:
        w, h = png_size(base64.b64decode(m.group(1)))
        ok, buf = cv2.imencode(".png", np.full((h, w, 3), MAGENTA, np.uint8))
        return 'src="data:image/png;base64,' + base64.b64encode(buf.tobytes()).decode() + '"'

    return re.sub(r'src="data:image/png;base64,([^"]*)"', magenta, page)


def _boxes(shot: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of the magenta regions, top to bottom, left to right."""
    magenta = np.all(np.abs(shot.astype(int) - MAGENTA) <= 12, axis=2).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(magenta)
    boxes = [tuple(int(v) for v in stats[i, :4]) for i in range(1, n) if stats[i, 4] > 400]
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def _hue_pixels(region: np.ndarray, hue: int, tol: int, sat: int = 90) -> int:
    """Saturated pixels of one hue (OpenCV hue units, 0-180)."""
    hsv = cv2.cvtColor(region, cv2.COLOR_BGR2HSV).astype(int)
    return int(
        ((np.abs(hsv[..., 0] - hue) <= tol) & (hsv[..., 1] > sat) & (hsv[..., 2] > 60)).sum()
    )


def _colour_pixels(region: np.ndarray, hex_rgb: str, tol: int = 40) -> int:
    rgb = [int(hex_rgb[i : i + 2], 16) for i in (1, 3, 5)]
    return int(np.all(np.abs(region.astype(int) - rgb[::-1]) <= tol, axis=2).sum())


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install "
                    "chromium; scripts/test.sh does it where it can)")  # fmt: skip
def test_report_renders_its_plots_in_chromium(report, tmp_path: Path) -> None:
    out = report[0]
    shot = _screenshot(out / "report.html", tmp_path / "page.png", tmp_path / "profile")
    # where the images are: the same page with magenta stand-ins of the same sizes
    control = out.parent / "placeholders.html"
    control.write_text(_placeholders((out / "report.html").read_text()))
    boxes = _boxes(_screenshot(control, tmp_path / "control.png", tmp_path / "profile2"))
    plots = [b for b in boxes if b[2] > 400]  # coverage, quality, identity, training, preview
    thumbs = [b for b in boxes if 60 < b[2] < 120]
    assert len(plots) >= 5 and len(thumbs) == 12, boxes
    for x, y, w, h in boxes:
        region = shot[y : y + h, x : x + w]
        assert not np.all(np.abs(region.astype(int) - MAGENTA) <= 12, axis=2).any()
        assert (region < 240).any(axis=2).mean() > 0.03, (x, y, w, h)  # not blank
        assert region.std() > 10, (x, y, w, h)
    cover, quality, ident, training = (shot[y : y + h, x : x + w] for x, y, w, h in plots[:4])
    # the heat maps: A in blues, B in oranges, the target in greens
    assert _hue_pixels(cover, 103, 8) > 500 and _hue_pixels(cover, 14, 6) > 500
    assert _hue_pixels(cover, 60, 12) > 300
    for region in (quality, ident):  # histogram bars (pale: drawn half transparent)
        orange = _hue_pixels(region, 14, 8, sat=50)  # B
        blue_green = _hue_pixels(region, 80, 35, sat=50)  # A, the target, and the two mixed
        assert orange > 300 and blue_green > 300, (orange, blue_green)
    # loss curves: validation A and B in the sets' colours
    assert _colour_pixels(training, COLORS["A"]) > 50 and _colour_pixels(training, COLORS["B"]) > 50


# ---- the command line -------------------------------------------------------------------------


def test_report_command(tmp_path: Path, faceset_pair, capsys) -> None:
    a, b = faceset_pair
    out = tmp_path / "rep"
    assert main(["report", str(a), str(b), "-o", str(out), "--identity-sample", "0",
                 "--json"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert printed["coverage"] is None and printed["run"] is None
    assert printed["sets"]["A"]["identity"] is None  # nothing embedded
    assert (out / "report.html").is_file() and (out / "report.json").is_file()
    assert main(["report", str(a), str(b), "-o", str(out), "--identity-sample", "0"]) == 0
    assert f"report {out / 'report.html'}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-o", "FILE"], "exists and is not a folder"),
        (["-o", "OUT", "--target", "MISSING"], "--target: "),
        (["-o", "OUT", "--run", "MISSING"], "not a faceswap run folder"),
        (["-o", "OUT", "--min-faces", "0"], "min_faces must be >= 1"),
        (["-o", "OUT", "--radius", "x"], "invalid float value"),
    ],
)
def test_report_bad_input(tmp_path: Path, faceset_pair, capsys, extra, message) -> None:
    a, b = faceset_pair
    (tmp_path / "file").write_text("not a folder")
    subst = {"FILE": str(tmp_path / "file"), "OUT": str(tmp_path / "out"),
             "MISSING": str(tmp_path / "missing")}  # fmt: skip
    args = ["report", str(a), str(b), *[subst.get(x, x) for x in extra]]
    if "invalid" in message:  # argparse's own usage error
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
    else:
        assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "file").read_text() == "not a folder"
