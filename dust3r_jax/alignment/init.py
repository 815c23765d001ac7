"""Initialisation of the aligner (host side, NumPy): minimum spanning tree or known poses.

Follows the official `init_minimum_spanning_tree` / `init_from_known_poses` step by step
(dust3r/cloud_opt/init_im_poses.py), including its stale-focal quirk, which is kept by default so
that results match the official release (`stale_focal=False` gives the corrected behaviour).

Parameters are handled per image as in `params.py` but with `depth` a list of (H_i * W_i,)
log-depth maps; `frozen` maps a parameter name to a (N,) bool array of preset (not to be
initialised) entries.
"""
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import minimum_spanning_tree as _scipy_mst

from dust3r_jax.errors import InputError
from dust3r_jax.geometry import align_multiple_poses, geotrf, rigid_points_registration, sRT_to_4x4
from dust3r_jax.pnp import fast_pnp
from dust3r_jax.focal import estimate_focal
from dust3r_jax.alignment.options import AlignOptions
from dust3r_jax.alignment.params import decode_poses, encode_pose, focals_from_params, principal_points


def edge_scores(pairs):
    """{(i, j): mean(conf_i) * mean(conf_j)} over directed pairs (raw confidences, float32)."""
    return {(i, j): float(np.mean(pairs.conf_i[e], dtype=np.float32) * np.mean(pairs.conf_j[e], dtype=np.float32))
            for e, (i, j) in enumerate(pairs.edges)}


def spanning_tree(pairs, min_conf_thr=3.0, niter_PnP=10, stale_focal=True):
    """The official `minimum_spanning_tree`: world points, focals and cam-to-world poses per image.

    Returns (pts3d: list of (H_i, W_i, 3) float64 world points (frame of the first image placed),
    mst_edges: list of (i, j) in the order used, focals: list of float, cam2world: (N, 4, 4)).
    """
    n_imgs = pairs.n_imgs
    edge_index = {ij: e for e, ij in enumerate(pairs.edges)}
    scores = edge_scores(pairs)
    graph = sp.dok_array((n_imgs, n_imgs))
    for ij, score in scores.items():
        graph[ij] = -score
    tree = _scipy_mst(graph).tocoo()
    todo = sorted(zip(-tree.data, tree.row.tolist(), tree.col.tolist()))

    pts3d = [None] * n_imgs
    poses = [None] * n_imgs
    focals = [None] * n_imgs

    def focal_of(e):
        return estimate_focal(pairs.pred_i[e])

    score, i, j = todo.pop()
    e = edge_index[(i, j)]
    pts3d[i] = pairs.pred_i[e].astype(np.float64)
    pts3d[j] = pairs.pred_j[e].astype(np.float64)
    done = {i, j}
    poses[i] = np.eye(4)
    focals[i] = focal_of(e)
    mst_edges = [(i, j)]
    last_e = e  # the official code's `i_j`, only updated when an edge is processed
    while todo:
        score, i, j = todo.pop()
        e = edge_index[(i, j)]
        if focals[i] is None:
            # official quirk: the focal comes from the previously processed edge's pred_i
            focals[i] = focal_of(last_e if stale_focal else e)
        if i in done:
            s, R, T = rigid_points_registration(pairs.pred_i[e], pts3d[i], pairs.conf_i[e])
            pts3d[j] = geotrf(sRT_to_4x4(s, R, T), pairs.pred_j[e].astype(np.float64))
            done.add(j)
        elif j in done:
            s, R, T = rigid_points_registration(pairs.pred_j[e], pts3d[j], pairs.conf_j[e])
            pts3d[i] = geotrf(sRT_to_4x4(s, R, T), pairs.pred_i[e].astype(np.float64))
            done.add(i)
        else:
            todo.insert(0, (score, i, j))  # try again once a neighbour is placed
            continue
        last_e = e
        mst_edges.append((i, j))
        if poses[i] is None:
            poses[i] = sRT_to_4x4(1, R, T)

    # remaining focals: from the best-scoring pair where the image comes first
    for i, j in sorted(scores, key=lambda ij: -scores[ij]):
        if focals[i] is None:
            focals[i] = focal_of(edge_index[(i, j)])
    for n in range(n_imgs):
        if poses[n] is None:
            res = fast_pnp(pts3d[n], focals[n], msk=pairs.im_conf[n] > min_conf_thr, niter_PnP=niter_PnP)
            if res is not None:
                focals[n], poses[n] = res
        if poses[n] is None:
            poses[n] = np.eye(4)
    return pts3d, mst_edges, focals, np.stack(poses)


def init_from_pts3d(pairs, params, frozen, pts3d, focals, cam2world, base_scale=0.5, norm_pw_scale=True,
                    focal_break=20.0):
    """Set pair poses, depth maps, image poses and focals from world points per image (official
    `init_from_pts3d`). Preset (frozen) poses are kept: when more than one is known, the whole
    initial scene is first moved onto them by a similarity; with exactly one, by a rigid motion."""
    params = {k: (list(v) if k == "depth" else np.array(v)) for k, v in params.items()}
    cam2world = np.array(cam2world, np.float64)
    pts3d = [np.array(p, np.float64) for p in pts3d]
    trf, cam2world = move_onto_preset_cameras(cam2world, params, frozen)
    if trf is not None:
        pts3d = [geotrf(trf, p) for p in pts3d]

    log_scales = []
    for e, (i, j) in enumerate(pairs.edges):
        s, R, T = rigid_points_registration(pairs.pred_i[e], pts3d[i], pairs.conf_i[e])
        params["pw_poses"][e] = encode_pose(R, T, scale=s)
        log_scales.append(params["pw_poses"][e, -1])
    if norm_pw_scale:
        s_factor = float(np.exp(np.log(base_scale) - np.mean(np.asarray(log_scales, np.float32))))
        cam2world[:, :3, 3] *= s_factor
        pts3d = [p * s_factor for p in pts3d]

    for n in range(pairs.n_imgs):
        if not frozen["depth"][n]:
            depth = geotrf(np.linalg.inv(cam2world[n]), pts3d[n])[..., 2]
            with np.errstate(divide="ignore", invalid="ignore"):
                log_depth = np.log(depth.astype(np.float32).ravel())
            params["depth"][n] = np.nan_to_num(log_depth, nan=0.0, neginf=0.0).astype(np.float32)
        if not frozen["im_poses"][n]:
            params["im_poses"][n] = encode_pose(cam2world[n, :3, :3], cam2world[n, :3, 3])
        if focals[n] is not None and not frozen["im_focals"][n]:
            params["im_focals"][n] = focal_break * np.log(focals[n])
    return params


def move_onto_preset_cameras(cam2world, params, frozen):
    """The similarity that moves the scene onto the preset (frozen) cameras, as the official
    `init_from_pts3d` does, and the cameras moved by it: (trf (4, 4) or None when no pose is
    preset, cam2world (N, 4, 4) float64 with unit-scale rotations)."""
    known = np.asarray(frozen["im_poses"], bool)
    if not known.any():
        return None, cam2world
    known_poses = decode_poses(params["im_poses"].astype(np.float64))
    if known.sum() > 1:
        s, R, T = align_multiple_poses(cam2world[known], known_poses[known])
    else:  # one known camera: move the scene rigidly onto it
        n = int(np.flatnonzero(known)[0])
        rel = known_poses[n] @ np.linalg.inv(cam2world[n])
        s, R, T = 1.0, rel[:3, :3], rel[:3, 3]
    trf = sRT_to_4x4(s, R, T)
    cam2world = trf @ cam2world
    cam2world[:, :3, :3] /= s
    return trf, cam2world


def init_mst(pairs, params, frozen, options=None, norm_pw_scale=True):
    """MST initialisation: spanning tree, then `init_from_pts3d`. options: an `AlignOptions`
    (min_conf_thr, niter_PnP, stale_focal, base_scale, focal_break)."""
    options = options or AlignOptions()
    pts3d, _, focals, cam2world = spanning_tree(pairs, options.min_conf_thr, options.niter_PnP, options.stale_focal)
    return init_from_pts3d(pairs, params, frozen, pts3d, focals, cam2world, options.base_scale, norm_pw_scale,
                           options.focal_break)


def init_known_poses(pairs, params, frozen, options=None):
    """Official `init_from_known_poses`: every pose and focal preset; each pair's pose is found by
    PnP of pred_j and aligned onto the two known cameras; depths from the best pair of each image.

    The official PnP projects image j's points with image i's focal and principal point, which is
    wrong when the cameras differ (on our synthetic scenes with +-20% focals the initial pair
    scales are off by up to 3x and 300 iterations do not recover). `options.pnp_own_focal=True`
    uses image j's. options: an `AlignOptions` (min_conf_thr, niter_PnP, focal_break, pnp_own_focal).
    """
    options = options or AlignOptions()
    min_conf_thr, niter_PnP, focal_break = options.min_conf_thr, options.niter_PnP, options.focal_break
    own_focal = options.pnp_own_focal
    if not (np.all(frozen["im_poses"]) and np.all(frozen["im_focals"])):
        raise InputError("init='known_poses' needs known_poses and known_focals for every image")
    params = {k: (list(v) if k == "depth" else np.array(v)) for k, v in params.items()}
    known_poses = decode_poses(params["im_poses"].astype(np.float64))
    focals = focals_from_params(params["im_focals"].astype(np.float64), focal_break)
    pps = principal_points(params["im_pp"].astype(np.float64), pairs.imshapes)
    best = {}
    for e, (i, j) in enumerate(pairs.edges):
        conf = pairs.conf_i[e]
        msk = conf > min(min_conf_thr, conf.min() - 0.1)
        k = j if own_focal else i
        res = fast_pnp(pairs.pred_j[e], float(focals[k]), msk=msk, pp=pps[k], niter_PnP=niter_PnP)
        if res is None:
            raise InputError(f"init='known_poses': PnP failed for pair ({i}, {j}); use init='mst'")
        s, R, T = align_multiple_poses(np.stack((np.eye(4), res[1])), known_poses[[i, j]])
        params["pw_poses"][e] = encode_pose(R, T, scale=s)
        score = float(conf.mean())
        if score > best.get(i, (0,))[0]:
            best[i] = score, e, s
    for n in range(pairs.n_imgs):
        if n not in best:
            raise InputError(f"init='known_poses': image {n} is never the first image of a pair")
        _, e, s = best[n]
        if not frozen["depth"][n]:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_depth = np.log((pairs.pred_i[e][..., 2] * s).astype(np.float32).ravel())
            params["depth"][n] = np.nan_to_num(log_depth, nan=0.0, neginf=0.0).astype(np.float32)
    return params
