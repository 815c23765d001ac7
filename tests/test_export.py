"""Exporters on a synthetic scene with known cameras: each file reads back with the same geometry."""
import numpy as np
import PIL.Image
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from dust3r_jax.export import SceneArrays, read_cameras_json, write_reconstruction
from dust3r_jax.export.colmap import rotation_to_quaternion_wxyz
from dust3r_jax.export.glb import build_glb_scene
from dust3r_jax.images import processed_to_original

# (processed (H, W), loader source) per image: a plain downscale, and a square crop with offset
SOURCES = [
    ((24, 32), {"path": "/photos/a.jpg", "original_shape": (60, 80), "resized_shape": (24, 32), "crop_offset": (0, 0)}),
    ((32, 32), {"path": "/photos/b.png", "original_shape": (50, 40), "resized_shape": (40, 32), "crop_offset": (4, 0)}),
    ((24, 32), {"path": "/other/a.jpg", "original_shape": (48, 64), "resized_shape": (24, 32), "crop_offset": (0, 0)}),
]


def synthetic_scene(seed=0) -> SceneArrays:
    """Cameras on an arc looking at a wavy surface; points are exact back-projections of depth."""
    rng = np.random.default_rng(seed)
    imgs, depths, confs, pts3d, masks, poses, ks = [], [], [], [], [], [], []
    for i, ((height, width), _) in enumerate(SOURCES):
        focal = 30.0 + 5 * i
        k = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])
        rotation = Rotation.from_euler("yx", [0.3 * i - 0.3, 0.1 * i]).as_matrix()
        cam2world = np.eye(4)
        cam2world[:3, :3], cam2world[:3, 3] = rotation, [0.5 * i, -0.2 * i, 0.1]
        v, u = np.mgrid[:height, :width].astype(np.float64)
        depth = 3.0 + 0.3 * np.sin(u / 5) + 0.2 * np.cos(v / 4)
        in_camera = np.stack([(u - k[0, 2]) * depth / focal, (v - k[1, 2]) * depth / focal, depth], axis=-1)
        world = in_camera @ rotation.T + cam2world[:3, 3]
        conf = 1 + rng.exponential(3.0, (height, width))
        imgs.append(rng.uniform(0, 1, (height, width, 3)).astype(np.float32))
        depths.append(depth.astype(np.float32))
        confs.append(conf.astype(np.float32))
        pts3d.append(world.astype(np.float32))
        masks.append(conf > 3)
        poses.append(cam2world)
        ks.append(k)
    files = [s["path"] for _, s in SOURCES]
    return SceneArrays(
        names=["a", "b", "a_1"], files=[f.rsplit("/", 1)[1] for f in files], imgs=imgs, depths=depths,
        confs=confs, pts3d=pts3d, masks=masks, cam2world=np.stack(poses), intrinsics=np.stack(ks),
        to_original=[processed_to_original(s) for _, s in SOURCES],
        original_shapes=[s["original_shape"] for _, s in SOURCES])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    scene = synthetic_scene()
    out = tmp_path_factory.mktemp("export")
    write_reconstruction(out, scene, max_colmap_points=200)
    return scene, out


def test_cameras_json_round_trips(written):
    scene, out = written
    cameras = read_cameras_json(out / "cameras.json")
    np.testing.assert_allclose(cameras["cam2world"], scene.cam2world, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cameras["K"], scene.intrinsics, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cameras["focals"], scene.intrinsics[:, 0, 0])
    assert cameras["files"] == scene.files and cameras["names"] == scene.names
    assert cameras["original_shapes"] == [tuple(s) for s in scene.original_shapes]
    # the original K sends a world point to the original pixel matching its processed pixel
    for i, (shape, source) in enumerate(SOURCES):
        point = scene.pts3d[i][5, 7].astype(np.float64)
        in_camera = np.linalg.inv(scene.cam2world[i]) @ np.append(point, 1)
        projected = cameras["K_original"][i] @ in_camera[:3]
        original_pixel = processed_to_original(source) @ np.array([7.0, 5.0, 1.0])
        np.testing.assert_allclose(projected[:2] / projected[2], original_pixel[:2], atol=1e-4)


def test_colmap_model_reads_back_with_same_poses_and_intrinsics(written):
    pycolmap = pytest.importorskip("pycolmap", reason="pycolmap is not installed")
    scene, out = written
    model = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert model.num_images() == scene.num_images and model.num_cameras() == scene.num_images
    assert 0 < model.num_points3D() <= 200
    original_k = scene.original_intrinsics()
    by_name = {}
    for image in model.images.values():
        by_name.setdefault(image.name, []).append(image)
    for i in range(scene.num_images):
        image = model.image(i + 1)
        assert image.name == scene.colmap_names()[i]
        pose = image.cam_from_world()
        world_to_cam = np.linalg.inv(scene.cam2world[i])
        np.testing.assert_allclose(pose.rotation.matrix(), world_to_cam[:3, :3], atol=1e-9)
        np.testing.assert_allclose(pose.translation, world_to_cam[:3, 3], atol=1e-9)
        camera = model.camera(image.camera_id)
        assert (camera.height, camera.width) == tuple(scene.original_shapes[i])
        k = original_k[i]
        np.testing.assert_allclose(camera.params, [k[0, 0], k[1, 1], k[0, 2] + 0.5, k[1, 2] + 0.5])
    # every point projects onto its recorded observation (same K, pose and pixel convention)
    for point in model.points3D.values():
        (element,) = point.track.elements
        image = model.image(element.image_id)
        observed = image.points2D[element.point2D_idx].xy
        projected = image.project_point(point.xyz)
        np.testing.assert_allclose(projected, observed, atol=2e-3)


def test_glb_has_the_points_and_one_frustum_per_camera(written):
    scene, out = written
    loaded = trimesh.load(out / "scene.glb")
    cameras = [name for name in loaded.geometry if name.startswith("camera_")]
    assert len(cameras) == scene.num_images
    assert len(loaded.geometry["pointcloud"].vertices) == sum(int(m.sum()) for m in scene.masks)


def test_glb_mesh_mode_builds_triangles_over_masked_pixels():
    scene = synthetic_scene()
    glb = build_glb_scene(scene, as_mesh=True)
    mesh = glb.geometry["mesh"]
    quads = sum(int((m[:-1, :-1] & m[:-1, 1:] & m[1:, :-1] & m[1:, 1:]).sum()) for m in scene.masks)
    assert len(mesh.faces) == 2 * quads


def test_ply_holds_the_confident_points_and_colours(written):
    scene, out = written
    cloud = trimesh.load(out / "points.ply")
    points, colours = scene.confident_points()
    np.testing.assert_array_equal(np.asarray(cloud.vertices, dtype=np.float32), points)
    np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], colours)


def test_depth_and_conf_maps_are_written_per_image(written):
    scene, out = written
    for name, depth, conf in zip(scene.names, scene.depths, scene.confs):
        np.testing.assert_array_equal(np.load(out / "depth" / f"{name}.npy"), depth)
        np.testing.assert_array_equal(np.load(out / "conf" / f"{name}.npy"), conf)
        for folder in ("depth", "conf"):
            with PIL.Image.open(out / folder / f"{name}.png") as png:
                assert png.size == (depth.shape[1], depth.shape[0]) and png.mode == "RGB"


def test_quaternion_matches_scipy():
    rotations = Rotation.random(50, random_state=3).as_matrix()
    for rotation in rotations:
        x, y, z, w = Rotation.from_matrix(rotation).as_quat()
        expected = np.array([w, x, y, z]) * (1 if w >= 0 else -1)
        np.testing.assert_allclose(rotation_to_quaternion_wxyz(rotation), expected, atol=1e-12)


def test_degenerate_alignment_still_exports(tmp_path):
    """Zero focal and NaN points (what garbage predictions give): files are written, NaNs left out."""
    scene = synthetic_scene()
    scene.intrinsics[1, 0, 0] = scene.intrinsics[1, 1, 1] = 0.0
    scene.pts3d[0][:4] = np.nan
    scene.masks = [m & np.all(np.isfinite(p), axis=-1) for m, p in zip(scene.masks, scene.pts3d)]
    write_reconstruction(tmp_path, scene, max_colmap_points=50)
    loaded = trimesh.load(tmp_path / "scene.glb")
    assert len([g for g in loaded.geometry if g.startswith("camera_")]) == scene.num_images
    assert np.all(np.isfinite(loaded.geometry["pointcloud"].vertices))
