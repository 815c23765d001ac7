"""The web demo's pipeline pieces without a server: upload checks, pairing, graph strings, the sky
mask and the GLB's camera options (`dust3r_jax.ui.session`, `dust3r_jax.sky`, `export.glb`)."""
import numpy as np
import pytest
import trimesh

from dust3r_jax.errors import InputError
from dust3r_jax.export.glb import build_glb_scene
from dust3r_jax.export.scene import SceneArrays
from dust3r_jax.sky import segment_sky
from dust3r_jax.ui.session import Limits, RunOptions, check_uploads, load_uploads, window_bounds
from ui_helpers import make_bad_files, make_images


def test_check_uploads_names_the_problem(tmp_path):
    bad = make_bad_files(tmp_path)
    images = make_images(tmp_path / "photos", 3)
    assert check_uploads([str(p) for p in images], Limits()) == images
    with pytest.raises(InputError, match="no image uploaded"):
        check_uploads([], Limits())
    with pytest.raises(InputError, match="3 images uploaded; this server takes at most 2"):
        check_uploads(images, Limits(max_images=2))
    with pytest.raises(InputError, match=r"^empty.png: empty file \(0 bytes\)"):
        check_uploads([bad["empty"]], Limits())
    with pytest.raises(InputError, match=r"^photo_0.png: 0.0 MB is more than this server takes per file \(1e-05 MB\)"):
        check_uploads(images[:1], Limits(max_file_mb=1e-5))


def test_load_uploads_pairs_a_single_image_and_names_files_not_paths(tmp_path):
    (image,) = make_images(tmp_path, 1)
    images = load_uploads([image], size=224)
    assert [v["idx"] for v in images] == [0, 1] and [v["instance"] for v in images] == ["0", "1"]
    assert images[0]["img"] is not images[1]["img"]  # two views, as the official deepcopy
    np.testing.assert_array_equal(images[0]["img"], images[1]["img"])
    assert images[0]["source"]["path"] == "photo_0.png"
    bad = make_bad_files(tmp_path / "bad")
    with pytest.raises(InputError) as error:
        load_uploads([bad["text"]], size=224)
    assert str(error.value).startswith("notes.txt: not an image") and str(tmp_path) not in str(error.value)


def test_scene_graph_strings():
    assert RunOptions(scene_graph="swin", window=2).graph(5) == "swin-2"
    assert RunOptions(scene_graph="logwin", window=3).graph(5) == "logwin-3"
    assert RunOptions(scene_graph="oneref", ref_image=4).graph(5) == "oneref-4"
    assert RunOptions(scene_graph="oneref", ref_image=4).graph(2) == "complete"  # the pair viewer's pairs
    assert window_bounds("swin", 7) == (3, 3) and window_bounds("logwin", 9) == (4, 4)
    for bad in (RunOptions(niter=5001), RunOptions(schedule="step"), RunOptions(scene_graph="star")):
        with pytest.raises(InputError):
            bad.check()


def test_segment_sky_finds_a_blue_band():
    image = np.zeros((64, 64, 3), np.float32)
    image[:20] = [0.5, 0.7, 1.0]  # light blue
    image[20:] = [0.3, 0.25, 0.1]  # dark brown
    sky = segment_sky(image)
    assert sky[:20].all() and not sky[20:].any()


def _scene(n=2, height=6, width=8):
    rng = np.random.default_rng(0)
    cam2world = np.repeat(np.eye(4)[None], n, axis=0)
    cam2world[:, 0, 3] = np.arange(n)
    k = np.array([[10.0, 0, width / 2], [0, 10.0, height / 2], [0, 0, 1]])
    pts = [rng.normal(size=(height, width, 3)).astype(np.float32) + [0, 0, 5] for _ in range(n)]
    return SceneArrays(names=[f"im{i}" for i in range(n)], files=[f"im{i}.png" for i in range(n)],
                       imgs=[rng.random((height, width, 3)).astype(np.float32) for _ in range(n)],
                       depths=[p[..., 2] for p in pts], confs=[np.full((height, width), 5.0, np.float32)] * n,
                       pts3d=pts, masks=[np.ones((height, width), bool)] * n, cam2world=cam2world,
                       intrinsics=np.stack([k] * n), to_original=[np.eye(3)] * n,
                       original_shapes=[(height, width)] * n)


def test_glb_camera_size_and_images():
    scene = _scene()
    plain = build_glb_scene(scene, view_transform=False)
    assert not any(name.endswith("_image") for name in plain.geometry)
    bigger = build_glb_scene(scene, view_transform=False, camera_scale=2.0, camera_images=True)
    apex = plain.geometry["camera_001"].vertices[0]
    np.testing.assert_allclose(bigger.geometry["camera_001"].vertices[1:] - apex,
                               2.0 * (plain.geometry["camera_001"].vertices[1:] - apex), rtol=1e-9)
    quad = bigger.geometry["camera_001_image"]
    np.testing.assert_allclose(quad.vertices, bigger.geometry["camera_001"].vertices[1:])
    assert isinstance(quad.visual, trimesh.visual.TextureVisuals)
    assert quad.visual.material.image.size == (8, 6)
