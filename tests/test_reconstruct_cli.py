"""`dust3r-jax reconstruct` end to end with the fixture checkpoints, and its answers to bad input.

The command runs in-process through `dust3r_jax.cli.main` (the console script's entry point), so
compiled programs are shared between tests: all 224 runs use one batch shape (--batch-size 2).
"""
import shutil

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest
import trimesh

from dust3r_jax.cli import main
from dust3r_jax.commands.reconstruct import _write_atomically
from dust3r_jax.errors import InputError
from dust3r_jax.export import read_cameras_json

MIN_CONF_THR = 1.5  # the random fixture weights give low confidences; keep some points


@pytest.fixture(scope="module")
def fixture_images(reference_dir):
    return sorted((reference_dir / "loader" / "images").glob("*.png"))


def _copy(images, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copy(image, folder / image.name)
    return folder


def _reconstruct(images_arg, weights, out, *extra):
    return main(["reconstruct", str(images_arg), "--weights", str(weights), "--out", str(out), "--quiet",
                 "--min-conf-thr", str(MIN_CONF_THR), *map(str, extra)])


def _no_leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")] == []


def check_outputs(out, image_paths, all_points_finite=True):
    """Every file of the issue, consistent with each other.

    all_points_finite=False: a degenerate alignment (zero focal from random weights) leaves NaN
    points, which exports drop: then the clouds hold at most the confident pixels."""
    names = [p.stem for p in image_paths]
    cameras = read_cameras_json(out / "cameras.json")
    assert cameras["files"] == [p.name for p in image_paths]
    n = len(image_paths)
    rotations = cameras["cam2world"][:, :3, :3]
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (n, 3, 3)),
                               atol=1e-5)
    kept = 0
    for i, name in enumerate(names):
        depth, conf = np.load(out / "depth" / f"{name}.npy"), np.load(out / "conf" / f"{name}.npy")
        assert depth.shape == conf.shape == cameras["processed_shapes"][i]
        with PIL.Image.open(image_paths[i]) as original:
            upright = PIL.ImageOps.exif_transpose(original)
            assert cameras["original_shapes"][i] == (upright.height, upright.width)
        for folder in ("depth", "conf"):
            assert (out / folder / f"{name}.png").is_file()
        kept += int((conf > MIN_CONF_THR).sum())
    glb = trimesh.load(out / "scene.glb")
    assert len([g for g in glb.geometry if g.startswith("camera_")]) == n
    # (random fixture weights can leave no confident point: then there is no point-cloud node)
    in_glb = len(glb.geometry["pointcloud"].vertices) if "pointcloud" in glb.geometry else 0
    ply = trimesh.load(out / "points.ply")
    assert (len(ply.vertices) if hasattr(ply, "vertices") else 0) == in_glb
    assert in_glb == kept if all_points_finite else in_glb <= kept
    summary = (out / "summary.txt").read_text()
    for stage in ("load images", "load weights", "inference", "alignment", "export", "total"):
        assert stage in summary
    pycolmap = pytest.importorskip("pycolmap", reason="pycolmap is not installed: COLMAP model not checked")
    model = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert model.num_images() == n
    for i in range(n):
        image = model.image(i + 1)
        assert image.name == image_paths[i].name
        world_to_cam = np.linalg.inv(cameras["cam2world"][i])
        np.testing.assert_allclose(image.cam_from_world().rotation.matrix(), world_to_cam[:3, :3], atol=1e-6)
        np.testing.assert_allclose(image.cam_from_world().translation, world_to_cam[:3, 3],
                                   atol=1e-6 * max(1.0, np.abs(world_to_cam[:3, 3]).max()))
        k = cameras["K_original"][i]
        np.testing.assert_allclose(model.camera(image.camera_id).params,
                                   [k[0, 0], k[1, 1], k[0, 2] + 0.5, k[1, 2] + 0.5], rtol=1e-12)


def test_two_images_224_then_overwrite(tmp_path, reference_dir, fixture_images, capsys):
    images = [p for p in fixture_images if p.stem.startswith(("land", "port"))]
    folder = _copy(images, tmp_path / "photos")
    out = tmp_path / "result"
    weights = reference_dir / "models" / "lin224.pth"
    assert _reconstruct(folder, weights, out, "--image-size", 224, "--batch-size", 2) == 0
    assert "images/s" in capsys.readouterr().out
    check_outputs(out, images)
    # an existing --out is refused, then replaced with --overwrite (here as a mesh)
    assert _reconstruct(folder, weights, out, "--image-size", 224) == 2
    assert "already exists" in capsys.readouterr().err
    assert _reconstruct(folder, weights, out, "--image-size", 224, "--batch-size", 2, "--overwrite", "--mesh") == 0
    assert "mesh" in trimesh.load(out / "scene.glb").geometry
    assert _no_leftovers(tmp_path)


def test_four_images_224_global_alignment(tmp_path, reference_dir, fixture_images):
    """Global alignment of 4 images. With the DPT fixture: the random linear-head fixtures predict
    depths of random sign, whose focal estimate is 0 and make the alignment diverge (a clean error);
    the DPT fixture's output layer was rescaled to mostly positive depths (reference README 2.2)."""
    images = fixture_images[:4]
    folder = _copy(images, tmp_path / "photos")
    out = tmp_path / "result"
    weights = reference_dir / "models" / "dpt512.pth"
    assert _reconstruct(folder, weights, out, "--image-size", 224, "--batch-size", 2, "--niter", 10,
                        "--scene-graph", "oneref") == 0
    check_outputs(out, images)
    assert "point cloud, 10 iterations" in (out / "summary.txt").read_text()
    assert _no_leftovers(tmp_path)


def test_devices_limits_the_mesh_and_is_reported(tmp_path, reference_dir, fixture_images, capsys):
    """--devices 3 of the 8 virtual CPU devices: printed, and in summary.txt; more than JAX sees is
    a one-line error before any work."""
    images = fixture_images[:3]
    folder = _copy(images, tmp_path / "photos")
    weights = reference_dir / "models" / "dpt512.pth"
    out = tmp_path / "result"
    assert _reconstruct(folder, weights, out, "--image-size", 224, "--niter", 5, "--devices", 3) == 0
    assert "using 3 CPU device(s)" in capsys.readouterr().out
    assert "devices     3" in (out / "summary.txt").read_text()
    assert _reconstruct(folder, weights, tmp_path / "other", "--devices", 999) == 2
    err = capsys.readouterr().err.strip()
    assert "--devices 999: JAX sees" in err and "\n" not in err
    assert not (tmp_path / "other").exists()


def test_sparse_alignment_with_mast3r_weights_writes_colmap_matches(tmp_path, reference_dir, fixture_images):
    """--alignment sparse with the fixture MASt3R checkpoint on 3 images: every output, plus
    database.db with one camera and image per input under the text model's names, read back with
    pycolmap; DUSt3R weights are a one-line error before any alignment."""
    pycolmap = pytest.importorskip("pycolmap")
    weights = reference_dir / "mast3r" / "models" / "mast3r_small.pth"
    if not weights.is_file():
        pytest.skip(f"MASt3R checkpoint not found at {weights}")
    # three views of the MASt3R sparse-alignment fixture, on which the random weights predict
    # positive depths (on the loader's photographs they do not: a clean error then)
    scene = np.load(reference_dir / "mast3r" / "sparse_ga" / "scene.npz")
    folder = tmp_path / "photos"
    folder.mkdir()
    images = []
    for k in range(3):
        images.append(folder / f"view{k}.png")
        PIL.Image.fromarray(scene[f"gt__img_u8__v{k}"]).save(images[-1])
    out = tmp_path / "result"
    assert _reconstruct(folder, weights, out, "--image-size", 128, "--niter", 5, "--alignment", "sparse") == 0
    check_outputs(out, images)
    summary = (out / "summary.txt").read_text()
    assert "sparse (MASt3R), 5 + 5 iterations" in summary and "matches" in summary
    database = pycolmap.Database.open(str(out / "database.db"))
    try:
        assert database.num_images() == 3 and database.num_cameras() == 3
        names = {image.name for image in database.read_all_images()}
    finally:
        database.close()
    assert names == {image.name for image in pycolmap.Reconstruction(str(out / "sparse" / "0")).images.values()}
    assert _reconstruct(folder, reference_dir / "models" / "lin224.pth", tmp_path / "other", "--image-size", 224,
                        "--alignment", "sparse") == 2
    assert not (tmp_path / "other").exists()


def test_wildly_different_aspect_ratios_work_at_512(tmp_path, reference_dir, fixture_images):
    """A 1024x300 panorama and a 480x640 portrait: two shape buckets, pair viewer on unequal sizes.
    The random fixture weights give a zero focal here: a degenerate result, written only because of
    --keep-degenerate, with exit code 1 and a warning."""
    images = [p for p in fixture_images if p.stem.startswith(("wide", "port"))]
    out = tmp_path / "result"
    args = [images[0], "--weights", reference_dir / "models" / "lin512.pth", "--out", out, "--quiet",
            "--min-conf-thr", MIN_CONF_THR, "--keep-degenerate"]
    assert main(["reconstruct", str(images[1]), *map(str, args)]) == 1
    order = [images[1], images[0]]
    check_outputs(out, order, all_points_finite=False)
    assert "WARNING     degenerate reconstruction" in (out / "summary.txt").read_text()
    shapes = read_cameras_json(out / "cameras.json")["processed_shapes"]
    assert shapes[0] != shapes[1]


def _make_bad_input(case, tmp_path, fixture_images):
    """(images argument, weights override or None) for one kind of bad input."""
    good = fixture_images[0]
    if case == "empty_folder":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty", None
    if case == "one_image":
        return _copy([good], tmp_path / "one"), None
    folder = _copy([good], tmp_path / "photos")
    if case == "not_an_image":
        (folder / "notes.jpg").write_text("this is text")
    elif case == "truncated_jpeg":
        rng = np.random.default_rng(0)
        PIL.Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(folder / "cut.jpg", quality=90)
        data = (folder / "cut.jpg").read_bytes()
        (folder / "cut.jpg").write_bytes(data[: len(data) // 3])
    elif case == "one_pixel":
        PIL.Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "dot.png")
    elif case == "missing_weights":
        return folder, tmp_path / "nope.pth"
    elif case == "wrong_weights":
        (tmp_path / "fake.pth").write_text("not a checkpoint")
        return folder, tmp_path / "fake.pth"
    return folder, None


@pytest.mark.parametrize("case", ["empty_folder", "one_image", "not_an_image", "truncated_jpeg", "one_pixel",
                                  "missing_weights", "wrong_weights"])
def test_bad_input_gives_one_line_and_writes_nothing(case, tmp_path, reference_dir, fixture_images, capsys):
    images_arg, weights = _make_bad_input(case, tmp_path, fixture_images)
    weights = weights or reference_dir / "models" / "lin224.pth"
    out = tmp_path / "result"
    assert _reconstruct(images_arg, weights, out, "--image-size", 224) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dust3r-jax reconstruct: error:") and "\n" not in err, err
    assert not out.exists() and _no_leftovers(tmp_path)


def test_failed_write_leaves_nothing_and_keeps_the_previous_result(tmp_path):
    out = tmp_path / "result"

    def broken(folder):
        (folder / "half.txt").write_text("half")
        raise InputError("disk full")

    with pytest.raises(InputError):
        _write_atomically(out, overwrite=False, write=broken)
    assert not out.exists() and _no_leftovers(tmp_path)
    out.mkdir()
    (out / "old.txt").write_text("previous")
    with pytest.raises(InputError):
        _write_atomically(out, overwrite=True, write=broken)
    assert [p.name for p in out.iterdir()] == ["old.txt"] and _no_leftovers(tmp_path)


def test_missing_gpu_is_a_clear_error(tmp_path, reference_dir, fixture_images, capsys):
    import jax

    if jax.default_backend() == "gpu":
        pytest.skip("a GPU is present")
    folder = _copy(fixture_images[:2], tmp_path / "photos")
    out = tmp_path / "result"
    assert _reconstruct(folder, reference_dir / "models" / "lin224.pth", out, "--device", "gpu") == 2
    err = capsys.readouterr().err.strip()
    assert "--device gpu" in err and "\n" not in err
    assert not out.exists() and _no_leftovers(tmp_path)
