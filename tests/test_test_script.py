"""scripts/test.sh says what it does before installing Chromium system-wide."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _chromium_block() -> str:
    text = (ROOT / "scripts" / "test.sh").read_text()
    start = text.index("# The report and UI tests drive")
    return text[start : text.index(".venv/bin/python -m pytest")]


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """The script's Chromium step with stub apt-get and id (root), and no chromium on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "apt.log"
    for name, body in (("apt-get", f'echo "apt-get $*" >> {log}\n'), ("id", "echo 0\n")):
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **env}
    # a PATH without chromium: only the stubs and the basic tools (bash, echo, timeout)
    block = _chromium_block().replace("command -v chromium", "command -v chromium-not-here")
    return subprocess.run(["bash", "-c", "set -euo pipefail\n" + block], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_says_it_installs_chromium_then_does(tmp_path):
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (
        "installing Chromium system-wide" in proc.stderr and "FACESWAP_NO_CHROMIUM" in proc.stderr
    )
    assert "apt-get install -y -qq chromium" in (tmp_path / "apt.log").read_text()


def test_opt_out_installs_nothing(tmp_path):
    proc = _run(tmp_path, FACESWAP_NO_CHROMIUM="1")
    assert proc.returncode == 0 and proc.stderr == ""
    assert not (tmp_path / "apt.log").exists()
