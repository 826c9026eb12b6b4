"""`faceswap faceset ...` on a face set extracted from a real face."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from faceswap import faceset as fsmod
from faceswap.cli import main
from faceswap.config import ExtractConfig, load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fs_copy(extracted, tmp_path):
    out, _ = extracted
    dst = tmp_path / "set"
    shutil.copytree(out, dst)
    return dst


def _json(capsys, *argv):
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_info_sort_and_export(capsys, fs_copy, tmp_path):
    info = _json(capsys, "faceset", "info", str(fs_copy))
    assert info["faces"] == 24 and info["rejected"] == 0
    assert info["identity"]["beyond_threshold"] == 0
    ranked = _json(capsys, "faceset", "sort", str(fs_copy), "--by", "blur", "--top", "5")
    values = [f["value"] for f in ranked["faces"]]
    assert len(values) == 5 and values == sorted(values)
    out = _json(capsys, "faceset", "sort", str(fs_copy), "--by", "yaw", "--export",
                str(tmp_path / "view"))  # fmt: skip
    assert out["exported"] == 24 and len(list((tmp_path / "view").iterdir())) == 24


def test_remove_restore_round_trip(capsys, fs_copy):
    fs = fsmod.load(fs_copy)
    name = fs.faces[3].name
    assert _json(capsys, "faceset", "remove", str(fs_copy), name, "--reason", "hand")["moved"] == 1
    fs = fsmod.load(fs_copy)
    assert len(fs.faces) == 23 and fs.rejected[0].reason == "hand"
    assert (fs_copy / "rejected" / Path(fs.rejected[0].file).name).exists()
    assert not (fs_copy / "faces" / Path(fs.rejected[0].file).name).exists()
    assert _json(capsys, "faceset", "restore", str(fs_copy), "--all")["restored"] == 1
    assert len(fsmod.load(fs_copy).faces) == 24


def test_filter_thresholds_and_auto(capsys, fs_copy):
    dry = _json(capsys, "faceset", "filter", str(fs_copy), "--auto", "--dry-run")
    assert dry["moved"] == 0 and len(dry["flagged"]) <= 3  # a clean clip has few outliers
    moved = _json(capsys, "faceset", "filter", str(fs_copy), "--blur-below", "1e9")
    assert moved["moved"] == 24 and all(f["reason"].startswith("blurry") for f in moved["flagged"])
    assert len(fsmod.load(fs_copy).rejected) == 24


def test_dedupe_finds_consecutive_frames(capsys, fs_copy):
    out = _json(capsys, "faceset", "dedupe", str(fs_copy), "--shape", "9", "--pixels", "99",
                "--dry-run")  # fmt: skip
    assert len(out["flagged"]) == 23  # at the loosest thresholds every face repeats the first
    assert out["faces"] == 24 and out["dry_run"] and out["moved"] == 0


@pytest.mark.parametrize(
    "argv, words",
    [
        (["sort", "{fs}", "--by", "beauty"], "beauty"),
        (["filter", "{fs}"], "--auto"),
        (["remove", "{fs}", "no_such_face"], "no_such_face"),
        (["restore", "{fs}"], "--all"),
        (["info", "{fs}/faces"], "not a face set"),
    ],
)
def test_bad_faceset_input(capsys, fs_copy, argv, words):
    before = (fs_copy / "faceset.json").read_bytes()
    code = main(["faceset", *[a.replace("{fs}", str(fs_copy)) for a in argv]])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert (fs_copy / "faceset.json").read_bytes() == before


def test_shipped_extract_presets_load():
    presets = sorted((REPO / "configs" / "extract").glob("*.yaml"))
    assert presets
    for p in presets:
        assert isinstance(load_config(ExtractConfig, p, {}), ExtractConfig)
