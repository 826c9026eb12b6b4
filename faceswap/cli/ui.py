"""`faceswap ui`: the local web application (faceswap.ui; needs the `ui` extra)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from faceswap.cli.common import Command
from faceswap.errors import BadInput

UI_EXAMPLES = """examples:
  faceswap ui --project work/alice2bob
  faceswap ui --project work/alice2bob --root ~/Videos --root ~/Pictures
  faceswap ui --project work/ab --port 8080
  faceswap ui --project work/ab --host 0.0.0.0      (reachable from other machines: see warning)

Open the printed address (it carries a one-time token) in a browser on this machine.
Ctrl-C stops the server; running jobs are interrupted the same way and save their work.
"""


def _add_ui(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", default=".",
                   help="project folder: face sets, runs and outputs go here (default: .)")  # fmt: skip
    p.add_argument("--root", action="append", default=[], metavar="DIR",
                   help="another folder whose clips and photos may be picked (repeatable)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--json", action="store_true", help="print the address as JSON on stdout")


def _run_ui(args: argparse.Namespace) -> int:
    import json

    try:
        import uvicorn

        from faceswap.ui.app import Settings, create_app
    except ImportError as exc:
        raise BadInput(f"faceswap ui needs the ui extra ({exc.name} is missing): "
                       "pip install 'faceswap[ui]'") from None  # fmt: skip
    from faceswap.ui.security import LOOPBACK, Roots, allowed_hosts, new_token

    project = Path(args.project)
    if project.exists() and not project.is_dir():
        raise BadInput(f"--project {project}: exists and is not a folder")
    try:
        project.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--project {project}: cannot create it ({exc.strerror})") from None
    media = []
    for r in args.root:
        if not Path(r).is_dir():
            raise BadInput(f"--root {r}: not a folder")
        media.append(Path(r))
    if not 1 <= args.port <= 65535:
        raise BadInput(f"--port {args.port}: not a port number (1-65535)")
    import socket

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # say so now, not in uvicorn's log
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            raise BadInput(f"--host {args.host} --port {args.port}: cannot listen there "
                           f"({exc.strerror})") from None  # fmt: skip
    token = new_token()
    roots = Roots(project, media)
    host_in_url = f"[{args.host}]" if ":" in args.host else args.host
    app = create_app(Settings(roots, token, allowed_hosts(args.host, args.port)))
    url = f"http://{host_in_url}:{args.port}/?token={token}"
    if args.host not in LOOPBACK:
        bar = "!" * 78
        sys.stderr.write(f"{bar}\nWARNING: faceswap ui is listening on {args.host}, not on this "
                         "machine alone.\nAnyone who can reach this address and learns the token "
                         "can read and write\nthe project folder and the roots, and run jobs. The "
                         "traffic is not encrypted.\nUse --host 127.0.0.1 (the default) unless "
                         f"you trust the network.\n{bar}\n")  # fmt: skip
    if args.json:
        print(json.dumps({"url": url, "project": str(roots.project),
                          "roots": [str(r) for r in roots.all]}), flush=True)  # fmt: skip
    else:
        print(f"faceswap ui: project {roots.project}")
        print(f"  open {url}")
        print(
            "  (the token in the address is this session's key; Ctrl-C stops the server)",
            flush=True,
        )
    # after Ctrl-C, event streams end by themselves and other requests get 2 s
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                           log_level="warning", timeout_graceful_shutdown=2))  # fmt: skip
    app.state.stopping = lambda: server.should_exit
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled
        server.run()
    return 0


UI = Command(
    "the local web app: pick inputs, extract, curate, train, convert, with live progress",
    UI_EXAMPLES,
    _add_ui,
    _run_ui,
)
