"""Untrusted files: checkpoints, face-set indexes, configs and images made to attack the loader.

Guarantee (docs/reliability.md): loading a checkpoint, a face-set index or a config never runs
code from it (safetensors, JSON and YAML's safe loader only), and a crafted file (a pickle
payload, `../../x` names, huge dimensions, wrong dtypes or shapes, fields of the wrong kind)
is refused with one clear line naming the file, exit 2 at the CLI. Payloads here would create
a marker file if anything executed them; every test checks that it does not exist.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from faceswap import faceset as fsmod
from faceswap.cli import main
from faceswap.errors import BadInput
from faceswap.media import read_image


def _bomb_png(path: Path, w: int, h: int) -> Path:
    """A 1-bit grey PNG of w x h zeros: tens of KB on disk, w*h*3 bytes once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + (w + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_image_that_declares_huge_dimensions_is_refused_before_decoding(tmp_path):
    bomb = _bomb_png(tmp_path / "bomb.png", 20000, 20000)  # ~50 KB; 1.2 GB decoded
    assert bomb.stat().st_size < 100_000
    before = _peak_rss_mb()
    with pytest.raises(BadInput, match="20000x20000, too large"):
        read_image(bomb)
    assert _peak_rss_mb() - before < 200  # never decoded


def test_face_image_of_the_wrong_size_is_refused_before_decoding(tmp_path, extracted, capsys):
    import shutil

    out = tmp_path / "set"
    shutil.copytree(extracted[0], out)
    fs = fsmod.load(out)
    _bomb_png(out / fs.faces[0].file, 16000, 16000)
    before = _peak_rss_mb()
    with pytest.raises(fsmod.FaceSetError, match="16000x16000, the face set says 64x64"):
        fs.load_image(fs.faces[0])
    assert _peak_rss_mb() - before < 200
    assert main(["faceset", "info", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "16000x16000" in err and fs.faces[0].name in err
