"""The README's picture of the web demo: `dust3r-jax ui` with the shipped model on a held-out scene.

    python experiments/ui_screenshot.py [--out experiments/results/ui_screenshot.png] [--views 4]

Starts the demo on a free local port (no --weights: the shipped `procedural` model), renders the
views of a held-out procedural scene, uploads them in headless Debian Chromium (playwright with
executable_path=/usr/bin/chromium, no browser download), runs the reconstruction and saves a
screenshot of the page once the 3D model and the depth maps are shown.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "experiments" / "results" / "ui_screenshot.png"))
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2_000_000)
    args = parser.parse_args()

    import PIL.Image
    from playwright.sync_api import expect, sync_playwright

    from dust3r_jax.data.procedural.scene import make_scene, render_view

    work = Path(tempfile.mkdtemp(prefix="ui-shot-"))
    scene = make_scene(args.seed, args.views)
    paths = []
    for v in range(args.views):
        paths.append(work / f"view_{v}.png")
        PIL.Image.fromarray(render_view(scene, v, 160, 120)["image"]).save(paths[-1])
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dust3r_jax.cli", "ui", "--port", str(port),
                               "--tmp-dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                time.sleep(1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1500})
            page.goto(url)
            page.wait_for_selector("#run")
            page.locator("#images input[type=file]").set_input_files([str(p) for p in paths])
            for path in paths:
                page.locator(f"#images td.filename[aria-label='{path.name}']").first.wait_for()
            page.click("#run")
            expect(page.locator("#status")).to_contain_text("Reconstructed", timeout=600_000)
            page.locator("#scene3d canvas").wait_for()
            gallery = page.locator("#gallery img")
            expect(gallery).to_have_count(3 * args.views)
            time.sleep(3)  # let the 3D view draw
            page.screenshot(path=args.out, full_page=True)
            browser.close()
        print(f"written {args.out}")
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
