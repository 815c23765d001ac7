"""The web demo in a real browser: Debian's headless Chromium driven by playwright.

The server is `dust3r-jax ui` in a subprocess with the DPT fixture at 224 (see ui_helpers). Deselected
from the default run (marker `browser`); `.ci/run` runs `pytest -m browser` after the main suite.
Set DUST3R_UI_SCREENSHOT=path to keep the screenshot taken after the reconstruction (the README's
is made that way).
"""
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import trimesh

from ui_helpers import FIXTURE_ARGS, UiServer, make_bad_files, make_images

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright; "
                                                             "no browser download: Debian's chromium is used)")
pytest.importorskip("gradio", reason="gradio is not installed (pip install -e '.[ui]')")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MAX_IMAGES = 4
RUN_TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def server(tmp_path_factory, reference_dir):
    ui = UiServer([*FIXTURE_ARGS, "--max-images", str(MAX_IMAGES)], tmp_path_factory.mktemp("ui-browser"),
                  reference_dir)
    yield ui
    ui.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _open(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 1500}, accept_downloads=True)
    page.goto(server.url)
    page.wait_for_selector("#run")
    return page


def _upload(page, paths):
    """Replaces the file list of the Images box by `paths`."""
    clear = page.locator("#images button[aria-label='Clear']")
    if clear.count():
        clear.click()
    page.locator("#images input[type=file]").set_input_files([str(p) for p in paths])
    for path in paths:
        page.locator(f"#images td.filename[aria-label='{path.name}']").first.wait_for()


def _run_and_wait(page, text):
    page.click("#run")
    sync_api.expect(page.locator("#status")).to_contain_text(text, timeout=RUN_TIMEOUT_MS)


def _download(page, button, folder: Path) -> Path:
    with page.expect_download() as info:
        page.click(button)
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    return path


def _geometry(glb_path):
    return {name: len(g.vertices) for name, g in trimesh.load(glb_path).geometry.items()}


def test_bad_uploads_show_a_message_and_the_page_keeps_serving(browser, server, tmp_path):
    bad = make_bad_files(tmp_path / "bad")
    cases = [([bad["text"]], "notes.txt: not an image Pillow can read"),
             ([bad["corrupt"]], "corrupt.png: cannot be decoded"),
             ([bad["empty"]], "empty.png: empty file (0 bytes)"),
             (make_images(tmp_path / "many", MAX_IMAGES + 1), f"{MAX_IMAGES + 1} images uploaded")]
    page = _open(browser, server)
    sessions_before = server.sessions()
    for files, message in cases:
        _upload(page, files)
        page.click("#run")
        toast = page.get_by_test_id("toast-text").filter(has_text=message)
        sync_api.expect(toast).to_be_visible(timeout=60_000)
        assert "Traceback" not in page.content()
        page.get_by_test_id("toast-close").first.click()
    _upload(page, make_images(tmp_path / "pair", 2))  # the same page still reconstructs
    _run_and_wait(page, "Reconstructed. 2 image(s)")
    (session,) = server.sessions() - sessions_before
    assert any(session.glob("run-*/export-*/scene.glb"))
    # closing the tab ends the session: its folder goes
    page.close()
    deadline = time.monotonic() + 60
    while session.exists() and time.monotonic() < deadline:
        time.sleep(1)
    assert not session.exists(), f"{session} still there after the page closed"


def test_reconstruct_reexport_download(browser, server, tmp_path):
    page = _open(browser, server)
    runs = server.network_runs()
    _upload(page, make_images(tmp_path / "photos", 3))
    page.fill("#niter input", "30")
    page.click("#run")
    # progress from our callbacks: the network's pairs, then the alignment's iterations
    sync_api.expect(page.get_by_text(re.compile(r"network: \d/6 pairs|global alignment")).first).to_be_visible(
        timeout=RUN_TIMEOUT_MS)
    sync_api.expect(page.locator("#status")).to_contain_text("Reconstructed. 3 image(s)", timeout=RUN_TIMEOUT_MS)
    assert server.network_runs() == runs + 1

    # the 3D view shows scene.glb; the gallery holds image, depth and confidence per image
    link = page.get_by_test_id("model3d-download-link")
    sync_api.expect(link).to_have_attribute("href", re.compile(r"scene\.glb$"))
    page.locator("#scene3d canvas").wait_for()
    gallery = page.locator("#gallery img")
    sync_api.expect(gallery).to_have_count(9)
    for i in range(9):
        gallery.nth(i).evaluate("img => img.decode()")  # loaded and decodable
    assert all(page.get_by_text(f"photo_{i}: depth").count() for i in range(3))

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    glb = _download(page, "#download_glb", downloads)
    geometry = _geometry(glb)
    assert geometry["mesh"] > 0 and len([n for n in geometry if n.startswith("camera_")]) == 6  # frusta + images
    colmap = _download(page, "#download_colmap", downloads)
    pycolmap = pytest.importorskip("pycolmap", reason="pycolmap is not installed: COLMAP model not checked")
    with zipfile.ZipFile(colmap) as archive:
        archive.extractall(tmp_path / "colmap")
    assert pycolmap.Reconstruction(str(tmp_path / "colmap" / "sparse" / "0")).num_images() == 3

    # moving the confidence slider re-exports the GLB: fewer points, no new network run
    first_href = link.get_attribute("href")
    slider = page.locator("#min_conf input[type=range]")
    box = slider.bounding_box()
    slider.click(position={"x": box["width"] * 0.5, "y": box["height"] / 2})
    sync_api.expect(page.locator("#status")).to_contain_text("exports of this scene: 2", timeout=60_000)
    sync_api.expect(link).not_to_have_attribute("href", first_href)
    reexported = downloads / "reexported.glb"
    reexported.write_bytes(page.request.get(link.get_attribute("href")).body())
    assert 0 < _geometry(reexported)["mesh"] < geometry["mesh"]
    assert server.network_runs() == runs + 1
    sync_api.expect(page.locator("#status")).to_contain_text(f"Network runs in this process: {runs + 1};")

    page.wait_for_timeout(2000)  # let the 3D view render the new file
    screenshot = tmp_path / "ui_screenshot.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("DUST3R_UI_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["DUST3R_UI_SCREENSHOT"])
    page.close()


def test_graph_controls_appear_only_when_they_apply(browser, server, tmp_path):
    page = _open(browser, server)
    _upload(page, make_images(tmp_path / "photos", 4))
    window, reference = page.locator("#window"), page.locator("#ref_image")
    sync_api.expect(window).to_be_hidden()
    sync_api.expect(reference).to_be_hidden()
    for choice, shown, hidden in (("swin: sliding window", window, reference),
                                  ("oneref: match one image with all", reference, window),
                                  ("logwin", window, reference)):
        page.locator("#scene_graph input").click()
        page.get_by_role("option", name=re.compile(re.escape(choice))).click()
        sync_api.expect(shown).to_be_visible()
        sync_api.expect(hidden).to_be_hidden()
    page.close()
