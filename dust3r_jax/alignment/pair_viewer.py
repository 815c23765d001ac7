"""Two-view "alignment" without optimisation (the official PairViewer).

For a symmetrized pair (0, 1), (1, 0): the world is the camera whose prediction is more
confident; the other camera's pose comes from PnP-RANSAC of its points against its pixel grid;
focals from the Weiszfeld estimator with pp = (W/2, H/2).
"""
import numpy as np

from dust3r_jax.errors import InputError
from dust3r_jax.geometry import depthmap_to_world, geotrf
from dust3r_jax.pnp import pixel_grid, solve_pnp_ransac
from dust3r_jax.focal import estimate_focal
from dust3r_jax.alignment.scene import Scene


def pair_viewer(pairs, min_conf_thr=3.0, niter_PnP=100):
    """Scene of two images from `PairPredictions` with edges {(0, 1), (1, 0)}."""
    if pairs.n_edges != 2 or set(pairs.edges) != {(0, 1), (1, 0)}:
        raise InputError(f"mode='pair' needs exactly the two pairs (0, 1) and (1, 0), found {pairs.edges}")
    e_of = {ij: e for e, ij in enumerate(pairs.edges)}
    focals, pps, rel_poses, scores = [], [], [], []
    for i in range(2):
        e = e_of[(i, 1 - i)]
        scores.append(float(np.mean(pairs.conf_i[e], dtype=np.float32) * np.mean(pairs.conf_j[e], dtype=np.float32)))
        H, W = pairs.imshapes[i]
        pp = np.array((W / 2, H / 2), np.float32)
        focal = estimate_focal(pairs.pred_i[e], pp)
        focals.append(focal)
        pps.append(pp)
        # camera i seen from camera 1-i: pred_j of pair (1-i, i) is image i in camera 1-i's frame
        pts3d = pairs.pred_j[e_of[(1 - i, i)]]
        msk = pairs.im_conf[i] > min_conf_thr
        res = solve_pnp_ransac(pts3d[msk], pixel_grid(H, W)[msk], focal, pp, niter=niter_PnP) \
            if msk.sum() >= 4 else None
        rel_poses.append(np.eye(4) if res is None else np.linalg.inv(res[1]))
    rel_poses = [p.astype(np.float32) for p in rel_poses]
    if scores[0] > scores[1]:
        e = e_of[(0, 1)]
        cam2world = np.stack([np.eye(4, dtype=np.float32), rel_poses[1]])
        depth = [pairs.pred_i[e][..., 2], geotrf(np.linalg.inv(rel_poses[1]), pairs.pred_j[e])[..., 2]]
    else:
        e = e_of[(1, 0)]
        cam2world = np.stack([rel_poses[0], np.eye(4, dtype=np.float32)])
        depth = [geotrf(np.linalg.inv(rel_poses[0]), pairs.pred_j[e])[..., 2], pairs.pred_i[e][..., 2]]
    focals = np.array(focals, np.float32)
    pps = np.stack(pps)
    pts3d = [depthmap_to_world(np.asarray(d, np.float32), focals[n], pps[n], cam2world[n]).astype(np.float32)
             for n, d in enumerate(depth)]
    return Scene(imshapes=list(pairs.imshapes), edges=list(pairs.edges), cam2world=cam2world, focals=focals,
                 principal_points=pps, depthmaps=[np.asarray(d, np.float32) for d in depth], pts3d=pts3d,
                 conf=list(pairs.im_conf), imgs=pairs.imgs, min_conf_thr=min_conf_thr)
