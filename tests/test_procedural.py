"""Procedural scenes: determinism, exact depth against analytic geometry, multi-view consistency,
and the dataset source / TFDS build built on them."""
import hashlib

import numpy as np
import pytest

from dust3r_jax.data.procedural import raycast
from dust3r_jax.data.procedural.scene import intrinsics_for, look_at, make_scene, pixel_rays, render_view
from dust3r_jax.data.sources.procedural import Procedural, covisible_fraction, write_split


def _digest(view):
    return hashlib.sha256(b"".join(np.ascontiguousarray(view[k]).tobytes()
                                   for k in ("image", "depth", "valid", "intrinsics", "cam2world"))).hexdigest()


def test_same_seed_same_scene_byte_for_byte():
    first = [_digest(render_view(make_scene(11, 3), v, 48, 36)) for v in range(3)]
    again = [_digest(render_view(make_scene(11, 3), v, 48, 36)) for v in range(3)]
    other = [_digest(render_view(make_scene(12, 3), v, 48, 36)) for v in range(3)]
    assert first == again
    assert first != other


def _single_prim_scene(prim, cam2world, hfov=60.0):
    return dict(primitives=[prim], textures=[np.full((4, 4, 3), 0.5, np.float32)], cameras=[(hfov, cam2world)],
                light=np.array([0.0, 1.0, 0.0]), ambient=0.5, sky=(np.ones(3), np.zeros(3)), noise_seed=0)


def _plane_prim():
    return dict(type="disc", centre=np.zeros(3), radius=100.0, texture=np.array([0]),
                texels_per_metre=np.array([10.0]), offset=np.zeros((1, 2)))


def test_depth_of_a_plane_is_analytic():
    """A camera 2 m above the ground looking down at 60 degrees: depth = h / (ray . down) exactly."""
    cam2world = look_at(np.array([0.0, 2.0, 0.0]), np.array([0.0, 0.0, 2.0 / np.tan(np.radians(60))]))
    view = render_view(_single_prim_scene(_plane_prim(), cam2world), 0, 40, 30)
    k = intrinsics_for(60.0, 40, 30)
    dirs = pixel_rays(k, cam2world.astype(np.float64), 40, 30)  # camera-z = 1 per ray
    assert (dirs[:, 1] < 0).all()  # every ray goes down and meets the (100 m) ground within 10 m
    expected = (2.0 / -dirs[:, 1]).reshape(30, 40)
    np.testing.assert_allclose(view["depth"], expected.astype(np.float32), rtol=1e-6)
    # world points from depth lie on the plane y = 0
    v, u = np.nonzero(view["valid"])
    z = view["depth"][v, u].astype(np.float64)
    cam = np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], axis=1)
    world = cam @ cam2world[:3, :3].T + cam2world[:3, 3]
    np.testing.assert_allclose(world[:, 1], 0.0, atol=1e-5)


def test_depth_of_a_sphere_is_analytic():
    """Every valid pixel back-projects onto the sphere; the centre pixel sees the near pole."""
    sphere = dict(type="sphere", centre=np.array([0.0, 0.0, 5.0]), radius=1.5, texture=np.array([0]),
                  texels_per_metre=np.array([10.0]), offset=np.zeros((1, 2)))
    cam2world = look_at(np.zeros(3), np.array([0.0, 0.0, 1.0]))
    width, height = 41, 31  # odd: a pixel centre on the optical axis
    scene = _single_prim_scene(sphere, cam2world)
    scene["cameras"] = [(60.0, cam2world)]
    view = render_view(scene, 0, width, height)
    k = view["intrinsics"].astype(np.float64)
    v, u = np.nonzero(view["valid"])
    z = view["depth"][v, u].astype(np.float64)
    cam = np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], axis=1)
    world = cam @ cam2world[:3, :3].T + cam2world[:3, 3]
    np.testing.assert_allclose(np.linalg.norm(world - sphere["centre"], axis=1), 1.5, rtol=1e-5)
    # the silhouette: a pixel ray is valid iff its distance to the centre is within the radius
    dirs = pixel_rays(k, cam2world, width, height)
    dist = np.linalg.norm(np.cross(dirs / np.linalg.norm(dirs, axis=1, keepdims=True), -sphere["centre"]), axis=1)
    clear = np.abs(dist - 1.5) > 1e-3
    np.testing.assert_array_equal(view["valid"].reshape(-1)[clear], (dist < 1.5)[clear])


@pytest.mark.parametrize("seed", [3, 4])
def test_two_views_agree_in_world_coordinates(seed):
    """Pixels of view 0 projected into view 1 land on view 1's surface (same world points)."""
    scene = make_scene(seed, 2)
    a, b = (render_view(scene, v, 80, 60) for v in range(2))
    seen = covisible_fraction(a["depth"], a["intrinsics"], a["cam2world"], b["depth"], b["intrinsics"],
                              b["cam2world"], rel_tol=0.02)
    assert seen > 0.1  # the scenes are made for overlap
    # exactness: among co-visible pixels, projections agree to sub-percent (pixel rounding only)
    strict = covisible_fraction(a["depth"], a["intrinsics"], a["cam2world"], b["depth"], b["intrinsics"],
                                b["cam2world"], rel_tol=0.5)
    assert seen / strict > 0.6


def test_box_room_seen_from_inside_has_full_depth():
    room = dict(type="box", centre=np.array([0.0, 1.5, 0.0]), half=np.array([3.0, 1.5, 3.0]), yaw=0.3,
                inside=True)
    dirs = np.random.default_rng(0).normal(size=(500, 3))
    t, normal, _, prim, _ = raycast.cast([room], np.array([0.5, 1.0, -0.2]), dirs)
    assert np.isfinite(t).all() and (prim == 0).all()
    assert (np.einsum("ij,ij->i", normal, dirs) < 0).all()  # normals face the rays


def test_dataset_source_and_tfds_build(tmp_path):
    index = write_split(tmp_path / "root", "train", 2, num_views=3, size=(64, 48), progress=False)
    assert index["seeds"] == [0, 1] and len(index["pairs"]) == 6
    test_index = write_split(tmp_path / "root", "test", 1, num_views=3, size=(64, 48), progress=False)
    assert min(test_index["seeds"]) >= 1_000_000  # held-out seeds never overlap the training ones
    dataset = Procedural(split="train", ROOT=str(tmp_path / "root"), resolution=(32, 24), min_overlap=0.0, seed=777)
    views = dataset[0]
    assert views[0]["img"].shape == (24, 32, 3) and views[0]["valid_mask"].any()
    assert views[0]["label"] == views[1]["label"]

    from dust3r_jax.data.tfds_builder import RecordStore, build_source_dataset

    build_source_dataset("Procedural", tmp_path / "root", tmp_path / "tfds", splits=["train"])
    packed = Procedural(split="train", store=RecordStore("Procedural", tmp_path / "tfds"), resolution=(32, 24),
                        min_overlap=0.0, seed=777)
    again = packed[0]
    for key in ("img", "depthmap", "pts3d", "camera_pose", "camera_intrinsics"):
        np.testing.assert_array_equal(views[0][key], again[0][key])
