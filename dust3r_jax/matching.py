"""Nearest-neighbour matching of point clouds (host side, scipy KD-trees).

Two pointmaps predicted for a pair live in the same frame (view 1's camera), so pixels of image A
and image B that look at the same 3D point are reciprocal nearest neighbours in 3D.
"""
import numpy as np
from scipy.spatial import cKDTree


def find_reciprocal_matches(P1, P2):
    """Reciprocal 1-NN between point sets P1 (N1, 3) and P2 (N2, 3), as the official helper.

    Returns (reciprocal_in_P2 (N2,) bool: P2[k]'s nearest neighbour in P1 has P2[k] as its own
    nearest neighbour; nn2_in_P1 (N2,) int64: index in P1 of P2[k]'s nearest neighbour;
    num_matches: int).
    """
    P1 = np.asarray(P1)
    P2 = np.asarray(P2)
    tree1, tree2 = cKDTree(P1), cKDTree(P2)
    _, nn1_in_P2 = tree2.query(P1, workers=-1)
    _, nn2_in_P1 = tree1.query(P2, workers=-1)
    reciprocal_in_P2 = nn1_in_P2[nn2_in_P1] == np.arange(len(nn2_in_P1))
    return reciprocal_in_P2, nn2_in_P1.astype(np.int64), int(reciprocal_in_P2.sum())


def pixel_correspondences(pts3d_a, pts3d_b, conf_a=None, conf_b=None, min_conf=3.0):
    """2D-2D correspondences between two images from their pointmaps in a common frame.

    pts3d_a: (Ha, Wa, 3), pts3d_b: (Hb, Wb, 3) points of images a and b in the SAME frame (e.g.
      pred1['pts3d'] and pred2['pts3d_in_other_view'] of one pair, or aligned world points).
    conf_a, conf_b: (Ha, Wa), (Hb, Wb) confidences; pixels with conf <= min_conf are ignored.
    Returns (uv_a (M, 2), uv_b (M, 2)) float32 pixel coordinates (u = column, v = row) of the
    reciprocal nearest neighbours, ordered by pixel of b (row-major).
    """
    pts3d_a = np.asarray(pts3d_a, dtype=np.float32)
    pts3d_b = np.asarray(pts3d_b, dtype=np.float32)
    Ha, Wa = pts3d_a.shape[:2]
    Hb, Wb = pts3d_b.shape[:2]
    keep_a = np.ones((Ha, Wa), bool) if conf_a is None else np.asarray(conf_a) > min_conf
    keep_b = np.ones((Hb, Wb), bool) if conf_b is None else np.asarray(conf_b) > min_conf
    keep_a &= np.all(np.isfinite(pts3d_a), axis=-1)
    keep_b &= np.all(np.isfinite(pts3d_b), axis=-1)
    idx_a = np.flatnonzero(keep_a)
    idx_b = np.flatnonzero(keep_b)
    if len(idx_a) == 0 or len(idx_b) == 0:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    recip, nn_b_in_a, _ = find_reciprocal_matches(pts3d_a.reshape(-1, 3)[idx_a], pts3d_b.reshape(-1, 3)[idx_b])
    pix_a = idx_a[nn_b_in_a[recip]]
    pix_b = idx_b[recip]
    uv_a = np.stack((pix_a % Wa, pix_a // Wa), axis=-1).astype(np.float32)
    uv_b = np.stack((pix_b % Wb, pix_b // Wb), axis=-1).astype(np.float32)
    return uv_a, uv_b
