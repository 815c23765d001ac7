"""Reciprocal matching against the official fixture, and the pixel-correspondence helper."""
import numpy as np

from dust3r_jax.matching import find_reciprocal_matches, pixel_correspondences


def test_reciprocal_matches_equal_official(reference_dir):
    data = np.load(reference_dir / "utils" / "reciprocal_matches.npz")
    recip, nn2_in_p1, num = find_reciprocal_matches(data["P1"], data["P2"])
    np.testing.assert_array_equal(recip, data["reciprocal_in_P2"])
    np.testing.assert_array_equal(nn2_in_p1, data["nn2_in_P1"])
    assert num == int(data["num_matches"])


def test_pixel_correspondences_find_shifted_pixels():
    # image b sees the same plane as image a shifted by 3 columns: pixel (u, v) of b == (u + 3, v) of a
    H, W = 6, 10
    v, u = np.mgrid[:H, :W].astype(np.float32)
    pts_a = np.stack((u, v, np.full_like(u, 5.0)), -1)
    pts_b = np.stack((u + 3, v, np.full_like(u, 5.0)), -1)
    conf_b = np.full((H, W), 5.0)
    conf_b[0, 0] = 1.0  # ignored pixel
    uv_a, uv_b = pixel_correspondences(pts_a, pts_b, None, conf_b, min_conf=3)
    assert len(uv_a) == H * (W - 3) - 1  # pixels of b whose shifted copy exists in a, less the masked one
    np.testing.assert_array_equal(uv_a, uv_b + np.array([3, 0]))
    assert not np.any(np.all(uv_b == 0, axis=-1))
