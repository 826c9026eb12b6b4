"""What the UI tests share: made-up face sets, a rendered project, the server as a subprocess
and headless Chromium (importable as `ui_support`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TINY_YAML = """batch_size: 4
val_fraction: 0.2
val_every: 2
save_every: 6
preview_every: 2
val_batches: 1
steps: 6
model: {arch: sae, resolution: 64, encoder_dims: 8, decoder_dims: 8, bottleneck: 32}
schedule: {name: cosine, lr: 0.001, warmup_steps: 2, total_steps: 6}
"""


def synthetic_faceset(root: Path, n: int, size: int = 32, seed: int = 0) -> Path:
    """A valid face set of `n` small faces cut from the astronaut portrait (shifted, recoloured
    and some blurred, so sorting by blur means something), written without extraction: the
    grid and curation tests need many faces, not real detections."""
    from faceswap import faceset as fsmod
    from faceswap.extract.quality import blur_score
    from faceswap.synthetic import astronaut

    rng = np.random.default_rng(seed)
    img = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)
    fs = fsmod.create(root, size, "face", "png")
    fs.sources["clip"] = fsmod.Source("clip.mp4", "a" * 64, "video", 640, 480, 25.0, n)
    lm = (np.stack(np.meshgrid(np.linspace(4, size - 4, 17), np.linspace(6, size - 6, 4)), -1)
          .reshape(-1, 2)[:68]).tolist()  # fmt: skip
    for i in range(n):
        dx, dy = (int(v) for v in rng.integers(-20, 21, 2))
        crop = img[100 + dy : 228 + dy, 190 + dx : 318 + dx]
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        crop = np.clip(crop * rng.uniform(0.7, 1.2, 3), 0, 255).astype(np.uint8)
        if i % 7 == 3:
            crop = cv2.GaussianBlur(crop, (0, 0), 1.5)
        rel = f"{fsmod.FACES_DIR}/clip_f{i:06d}_0.png"
        cv2.imwrite(str(root / rel), crop)
        fs.faces.append(fsmod.Face(
            file=rel, source="clip", frame=i, time=i / 25.0, box=[0.0, 0.0, 64.0, 64.0],
            score=0.99, landmarks=lm, matrix=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            yaw=float(rng.uniform(-40, 40)), pitch=float(rng.uniform(-15, 15)),
            roll=float(rng.uniform(-5, 5)), blur=blur_score(crop), residual=0.03, jitter=0.02,
        ))  # fmt: skip
    fs.save()
    return root


def render_media(project: Path) -> None:
    """media/a.mp4 (200 frames at 4 fps: its extraction runs long enough, ~3 s, for the
    page to show a live rate), media/b.mp4 (24 frames: three 2-second blocks for the
    train/validation split), two looks, and media/target.mp4 (12 frames), 480x270, plus
    tiny.yaml."""
    from faceswap.synthetic import astronaut, recolor_identity, render_clip

    media = project / "media"
    kw = {"frame_size": (480, 270), "base_scale": 0.75}
    render_clip(media / "a.mp4", 200, fps=4, seed=1, **kw)
    render_clip(media / "b.mp4", 24, fps=4, seed=2, face_rgb=recolor_identity(astronaut()), **kw)
    render_clip(media / "target.mp4", 12, fps=4, seed=3, **kw)
    (project / "tiny.yaml").write_text(TINY_YAML)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ui_server(project: Path, *extra: str):
    """`faceswap ui --project PROJECT --json` as a subprocess; yields (url with token, port).
    Ctrl-C at the end, as a user would stop it."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "faceswap", "ui", "--project", str(project), "--port", str(port),
         "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"faceswap ui did not start: {proc.stderr.read()}")
        deadline = time.time() + 60  # the address is printed just before uvicorn listens
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"faceswap ui is not listening: {proc.stderr.read()}")
            time.sleep(0.05)
        yield json.loads(line)["url"], port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def chromium_driver():
    """Headless Chromium through Debian's chromium-driver; None with the reason when absent."""
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        return (
            None,
            "Debian's chromium and chromium-driver are not installed (scripts/test.sh installs them)",
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install -e '.[dev]')"
    opts = Options()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-gpu", "--no-first-run", "--disable-extensions"):  # fmt: skip
        opts.add_argument(arg)
    try:
        return webdriver.Chrome(service=Service(driver), options=opts), ""
    except Exception as exc:  # a broken install: say why instead of failing every test
        return None, f"chromium did not start: {str(exc).splitlines()[0]}"
