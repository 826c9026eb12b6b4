"""`faceswap ui` on the command line: help, bad options (exit 2, one line), the loud warning
when bound beyond localhost."""

from __future__ import annotations

import json
import signal
import socket

import pytest

from faceswap.cli import main

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


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


def test_event_stream_ctrl_c_and_the_warning_off_localhost(tmp_path) -> None:
    """Bound beyond localhost it warns loudly; the state arrives as server-sent events; Ctrl-C
    stops the server even while a page holds its event stream open."""
    import time
    import urllib.request

    from ui_support import ui_server

    with ui_server(tmp_path, "--host", "0.0.0.0") as (url, port, proc):
        assert url.startswith(f"http://0.0.0.0:{port}/?token=")
        token = url.split("token=")[1]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/events",
                                     headers={"X-Faceswap-Token": token})  # fmt: skip
        stream = urllib.request.urlopen(req, timeout=30)
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.readline() == b"event: state\n"
        state = json.loads(stream.readline().removeprefix(b"data: "))
        assert state["project"] == str(tmp_path.resolve()) and state["jobs"] == []
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert time.perf_counter() - t0 < 15
        stream.close()
        err = proc.stderr.read()
    assert "WARNING: faceswap ui is listening on 0.0.0.0" in err and "not encrypted" in err


def test_progress_bars_report_to_the_progress_file(tmp_path, monkeypatch) -> None:
    """FACESWAP_PROGRESS: what the UI follows a job by; the last state is always written."""
    from faceswap.cli.common import PROGRESS_ENV, progress_bar

    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    bar = progress_bar(None, "extract")
    bar.total = 10
    for i in range(10):
        bar.update(1)
        bar.set_postfix(faces=i + 1, refresh=False)
        assert bar.n == i + 1  # callers that read bar.n (evaluate) see the count
    bar.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["desc"] == "extract" and rows[0]["unit"] == "frame"
    assert rows[-1]["n"] == 10 and rows[-1]["total"] == 10 and rows[-1]["postfix"] == {"faces": 10}
    assert len(rows) <= 3  # throttled: a few lines a second, not one per update
    monkeypatch.delenv(PROGRESS_ENV)
    bar = progress_bar(5, "train", unit="step")
    bar.update(1)
    bar.close()
    assert len(path.read_text().splitlines()) == len(rows)  # unset: nothing written
