"""`dust3r-jax ui` driven through `gradio_client` (no browser): the API a script would use.

The server runs as a subprocess (the console command, as a user starts it) with the DPT fixture
at 224; `ui_helpers.UiServer` counts network runs from its log.
"""
import json
import zipfile

import pytest
import trimesh

from ui_helpers import FIXTURE_ARGS, UiServer, make_bad_files, make_images

gradio_client = pytest.importorskip("gradio_client", reason="gradio_client is not installed (pip install -e '.[ui,test]')")
pytest.importorskip("gradio", reason="gradio is not installed (pip install -e '.[ui]')")

MAX_IMAGES = 4
NITER = 30
# controls after the files: schedule, iterations, scene graph, window, reference image,
# then the re-export controls: min confidence, camera size, as point cloud, mask sky, clean-up, transparent cameras
RUN = ("linear", NITER, "complete", 1, 0)
VIEW = (3.0, 1.0, False, False, True, False)


@pytest.fixture(scope="module")
def server(tmp_path_factory, reference_dir):
    ui = UiServer([*FIXTURE_ARGS, "--max-images", str(MAX_IMAGES)], tmp_path_factory.mktemp("ui-api"), reference_dir)
    yield ui
    ui.stop()


@pytest.fixture
def client(server, tmp_path):
    return gradio_client.Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))


def _files(paths):
    return [gradio_client.handle_file(str(p)) for p in paths]


def _geometry(glb_path):
    scene = trimesh.load(glb_path)
    return {name: len(geometry.vertices) for name, geometry in scene.geometry.items()}


def test_reconstruct_then_reexport_without_network(server, client, tmp_path):
    images = make_images(tmp_path / "photos")
    runs = server.network_runs()
    gallery, glb, download_glb, download_cameras, download_colmap, status = client.predict(
        _files(images), *RUN, *VIEW, api_name="/reconstruct")
    assert [item["caption"] for item in gallery] == [f"photo_{i}: {kind}" for i in range(3)
                                                      for kind in ("image", "depth", "confidence")]
    geometry = _geometry(glb)
    assert sorted(n for n in geometry if n.startswith("camera_")) == [
        f"camera_{i:03d}{suffix}" for i in range(3) for suffix in ("", "_image")]
    assert geometry["mesh"] > 0
    assert download_glb["value"].endswith("scene.glb")
    cameras = json.loads(open(download_cameras["value"]).read())
    assert [entry["file"] for entry in cameras["images"]] == [p.name for p in images]
    pycolmap = pytest.importorskip("pycolmap", reason="pycolmap is not installed: COLMAP model not checked")
    with zipfile.ZipFile(download_colmap["value"]) as archive:
        archive.extractall(tmp_path / "colmap")
    assert pycolmap.Reconstruction(str(tmp_path / "colmap" / "sparse" / "0")).num_images() == 3
    assert server.network_runs() == runs + 1 and f"Network runs in this process: {runs + 1};" in status

    # point cloud, higher threshold, transparent cameras: a new GLB, the same network run
    glb2, _, _, _, status2 = client.predict(6.0, 2.0, True, False, True, True, api_name="/reexport")
    geometry2 = _geometry(glb2)
    assert glb2 != glb and "mesh" not in geometry2 and "camera_000_image" not in geometry2
    assert 0 < geometry2["pointcloud"] < 3 * 224 * 224
    assert server.network_runs() == runs + 1 and f"Network runs in this process: {runs + 1};" in status2


BAD_UPLOADS = [
    ("text", "notes.txt: not an image Pillow can read"),
    ("corrupt", "corrupt.png: cannot be decoded"),
    ("empty", "empty.png: empty file (0 bytes)"),
    ("too_many", f"{MAX_IMAGES + 1} images uploaded; this server takes at most {MAX_IMAGES}"),
]


def _bad_uploads(folder, kind):
    return make_images(folder / "many", MAX_IMAGES + 1) if kind == "too_many" else [make_bad_files(folder)[kind]]


@pytest.mark.parametrize("kind, message", BAD_UPLOADS)
def test_bad_upload_is_one_readable_line(client, tmp_path, kind, message):
    with pytest.raises(gradio_client.exceptions.AppError) as error:
        client.predict(_files(_bad_uploads(tmp_path, kind)), *RUN, *VIEW, api_name="/reconstruct")
    assert message in str(error.value)
    assert "Traceback" not in str(error.value) and "dust3r-jax-ui-" not in str(error.value)  # no server path


def test_server_keeps_serving_after_bad_uploads(client, tmp_path):
    for kind, _ in BAD_UPLOADS:
        with pytest.raises(gradio_client.exceptions.AppError):
            client.predict(_files(_bad_uploads(tmp_path / kind, kind)), *RUN, *VIEW, api_name="/reconstruct")
    # two images: the pair viewer, no iterations
    *_, status = client.predict(_files(make_images(tmp_path / "pair", 2)), *RUN, *VIEW, api_name="/reconstruct")
    assert "Reconstructed" in status and "2 image(s)" in status


def test_reexport_before_any_run_is_explained(client):
    with pytest.raises(gradio_client.exceptions.AppError, match="nothing to re-export yet"):
        client.predict(*VIEW, api_name="/reexport")


def test_stopping_the_server_removes_its_folder(server):
    root = server.root
    assert root.is_dir()
    assert server.stop() == 0
    assert not root.exists(), f"{root} left behind:\n{server.log()}"


def test_default_is_the_shipped_model(tmp_path, reference_dir):
    from dust3r_jax import load_model, shipped

    try:
        shipped.shipped_folder(shipped.DEFAULT_MODEL)
    except Exception as err:  # the weights are not in this checkout
        pytest.skip(f"shipped model {shipped.DEFAULT_MODEL!r} not available: {err}")
    size = load_model(shipped.DEFAULT_MODEL)[0].config.img_size[0]  # the model's own training width
    ui = UiServer([], tmp_path / "ui", reference_dir)
    try:
        client = gradio_client.Client(ui.url, verbose=False, download_files=str(tmp_path / "downloads"))
        *_, status = client.predict(_files(make_images(tmp_path / "photos")), *RUN, *VIEW, api_name="/reconstruct")
        assert f"images at {size} pixels" in ui.log()
        assert f"3 image(s) at {size}x" in status  # (160x120 photos: the long side becomes `size`)
    finally:
        ui.stop()
