"""Shared by the web demo's tests: test images, bad uploads, and `dust3r-jax ui` in a subprocess."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import PIL.Image
from scipy import ndimage

START_TIMEOUT_S = 240  # model load + gradio start on a busy 2-core machine
# The DPT fixture (random weights with mostly positive depths, reference README 2.2) at 224. With
# random weights the alignment of arbitrary images can diverge (a zero focal estimate); the images
# of `make_images` (seed 0) align. Confidences of this model are mostly > 3.
FIXTURE_ARGS = ("--weights", "models/dpt512.pth", "--image-size", "224")


def make_images(folder: Path, count: int = 3) -> list[Path]:
    """`count` small smooth random PNGs (160x120, seed 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        pixels = ndimage.gaussian_filter(rng.random((120, 160, 3)), (4, 4, 0))
        pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min())
        paths.append(folder / f"photo_{i}.png")
        PIL.Image.fromarray((pixels * 255).astype(np.uint8)).save(paths[-1])
    return paths


def make_bad_files(folder: Path) -> dict[str, Path]:
    """A text file, a PNG cut after its header, and a 0-byte PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    text, corrupt, empty = folder / "notes.txt", folder / "corrupt.png", folder / "empty.png"
    text.write_text("these are my holiday notes, not a photo\n")
    good = make_images(folder / "good", 1)[0].read_bytes()
    corrupt.write_bytes(good[:60])
    empty.write_bytes(b"")
    return {"text": text, "corrupt": corrupt, "empty": empty}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class UiServer:
    """`dust3r-jax ui ARGS --port P --tmp-dir D` in a subprocess, stopped with SIGINT (Ctrl-C).

    `log()` is its combined output; `root` the temporary folder it made under `tmp_dir`."""

    def __init__(self, args, tmp_dir: Path, reference_dir: Path):
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = self.tmp_dir.parent / f"ui-server-{self.port}.log"
        args = [str(reference_dir / a) if a.startswith("models/") else str(a) for a in args]
        command = [sys.executable, "-m", "dust3r_jax.cli", "ui", *args, "--port", str(self.port),
                   "--tmp-dir", str(self.tmp_dir)]
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dust3r-jax ui exited with {self.process.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(self.url, timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"dust3r-jax ui did not answer within {START_TIMEOUT_S} s:\n{self.log()}")
                time.sleep(1)

    @property
    def root(self) -> Path:
        (root,) = self.tmp_dir.glob("dust3r-jax-ui-*")
        return root

    def sessions(self) -> set[Path]:
        return set(self.root.glob("session-*"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def network_runs(self) -> int:
        return len(re.findall(r"\[dust3r-jax ui\] network run", self.log()))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
