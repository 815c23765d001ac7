"""Scene helpers: intrinsics, masks and clean_pointcloud on hand-made geometry."""
import numpy as np

from dust3r_jax.alignment import Scene
from dust3r_jax.geometry import depthmap_to_world


def _two_camera_scene(depth0, depth1, conf0, conf1):
    H, W = depth0.shape
    focals = np.array([20.0, 20.0], np.float32)
    pps = np.array([[W / 2, H / 2]] * 2, np.float32)
    poses = np.stack([np.eye(4, dtype=np.float32)] * 2)
    pts = [depthmap_to_world(d, focals[n], pps[n], poses[n]) for n, d in enumerate((depth0, depth1))]
    return Scene(imshapes=[(H, W)] * 2, edges=[(0, 1), (1, 0)], cam2world=poses, focals=focals,
                 principal_points=pps, depthmaps=[depth0, depth1], pts3d=pts, conf=[conf0, conf1],
                 imgs=[None, None])


def test_intrinsics_and_masks():
    ones = np.ones((4, 6), np.float32)
    scene = _two_camera_scene(ones, ones, 5 * ones, 2 * ones)
    K = scene.intrinsics
    np.testing.assert_array_equal(K[0], [[20, 0, 3], [0, 20, 2], [0, 0, 1]])
    masks = scene.masks(3.0)
    assert masks[0].all() and not masks[1].any()


def test_clean_pointcloud_lowers_less_confident_points_in_front_of_a_seen_surface():
    ones = np.ones((4, 6), np.float32)
    # same camera twice: image 0's points float in front of the surface image 1 sees
    scene = _two_camera_scene(ones, 2 * ones, 2 * ones, 5 * ones)
    cleaned = scene.clean_pointcloud()
    np.testing.assert_array_equal(cleaned.conf[0], 0 * ones)        # in front and less confident
    np.testing.assert_array_equal(cleaned.conf[1], scene.conf[1])  # behind: kept
    # more confident floating points are kept
    scene = _two_camera_scene(ones, 2 * ones, 5 * ones, 2 * ones)
    np.testing.assert_array_equal(scene.clean_pointcloud().conf[0], 5 * ones)
