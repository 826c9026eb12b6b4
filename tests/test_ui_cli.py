"""`faceswap ui` on the command line: help, bad options (exit 2, one line), the loud warning
when bound beyond localhost."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest

from faceswap.cli import main

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from ui_support import ROOT, free_port  # noqa: E402


def test_help_has_examples(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["ui", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "faceswap ui --project" in out and "--host" in out and "token" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--project", "FILE"], "exists and is not a folder"),
        (["--root", "NOPE"], "--root"),
        (["--port", "70000"], "--port 70000"),
    ],
)
def test_bad_options_exit_2(tmp_path, capsys, argv, needle) -> None:
    (tmp_path / "FILE").write_text("x")
    argv = [a.replace("FILE", str(tmp_path / "FILE")).replace("NOPE", str(tmp_path / "nope"))
            for a in argv]  # fmt: skip
    if "--project" not in argv:
        argv += ["--project", str(tmp_path / "p")]
    assert main(["ui", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def test_port_in_use_exits_2(tmp_path, capsys) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["ui", "--project", str(tmp_path), "--port", str(port)]) == 2
    assert "cannot listen there" in capsys.readouterr().err


def test_other_host_warns_loudly(tmp_path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "faceswap", "ui", "--project", str(tmp_path), "--host", "0.0.0.0",
         "--port", str(port), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        info = json.loads(proc.stdout.readline())
        assert info["url"].startswith(f"http://0.0.0.0:{port}/?token=")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert "WARNING: faceswap ui is listening on 0.0.0.0" in err
    assert "not encrypted" in err
