"""The spanning-tree initialisation of `init.py` as jitted array code (`init_backend="device"`).

Same steps and same choices as the host path (the official `init_minimum_spanning_tree`):
* scores: mean(conf_i) * mean(conf_j) per directed pair, float32;
* tree: scipy's Kruskal keeps, for each image pair, the directed pair met first in its stable
  sort of (-score, row, column); giving every directed pair that rank makes all undirected
  weights distinct, so the tree is unique and Prim's algorithm over the dense (N, N) rank matrix
  (a `fori_loop`, N fixed at trace time) finds the same one, ties included;
* order: the official queue pops tree edges by descending (score, i, j) and sends an edge that
  touches no placed image to the back; that is "the next unprocessed edge touching a placed
  image after the last one processed, else the first one from the top", one step per edge; the
  official code gives image i a focal when an edge is popped, deferred or not, so each step
  also looks at the edges it skipped;
* registrations: every weighted Umeyama of a pair prediction onto an already placed image
  needs only the weighted 3x3 moments of (prediction, that image's own source prediction), so
  all of them are computed at once, batched, and the poses are then composed along the order
  with 3x3 algebra;
* focals (Weiszfeld, with the stale-focal quirk), pair poses, depth maps: batched.

Differences from the host path (`init.py`), all covered by tests/test_alignment_init_device.py:
* float32 throughout (the host registers in float64): poses agree to ~1e-6, scores to 1 ulp,
  so only pairs whose scores tie to the last bit could be ordered differently;
* images of different sizes are zero-padded to the largest (H, W) with a validity mask;
* PnP (images that no tree edge gives a pose, OpenCV SQPnP-RANSAC as the official code) stays
  on the host: only those images' world points come back, with their focal estimated again on
  the host in float64 (RANSAC's inlier set can flip with the last bit of the focal), then the
  pair poses and depth maps are computed on the device again. A point that sits exactly on
  RANSAC's 5-pixel threshold can still flip with float32 world points.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from dust3r_jax.alignment.options import AlignOptions
from dust3r_jax.alignment.init import move_onto_preset_cameras
from dust3r_jax.alignment.params import encode_pose
from dust3r_jax.pnp import fast_pnp
from dust3r_jax.focal import estimate_focal

# points per batch of the pair registrations (bounds the gathered world points in memory)
_POINTS_PER_BATCH = 1 << 24


def _stacked(items):
    """np.stack(items) as float32, or the array they are consecutive views of (read_pairs keeps
    the rows of a stacked `inference()` output as views), which saves one copy of the input."""
    base = items[0].base
    if (isinstance(base, np.ndarray) and base.dtype == np.float32 and base.shape[0] == len(items)
            and base.shape[1:] == items[0].shape and base.flags.c_contiguous
            and all(v.base is base and v.ctypes.data == base[k].ctypes.data for k, v in enumerate(items))):
        return base
    return np.stack(items).astype(np.float32, copy=False)


def stack_pairs(pairs):
    """Pad and stack `PairPredictions` (lists per edge) into arrays for the device.

    Returns a dict of NumPy arrays: pred (side i, side j) two (E, H, W, 3) points in camera i's
    frame, conf two (E, H, W) confidences (0 on padding), valid (N, H, W) bool pixels of each
    image, edges (E, 2) int32; (H, W) is the largest image size.
    """
    H = max(h for h, _ in pairs.imshapes)
    W = max(w for _, w in pairs.imshapes)
    E, N = pairs.n_edges, pairs.n_imgs
    if all(hw == (H, W) for hw in pairs.imshapes):
        pred = (_stacked(pairs.pred_i), _stacked(pairs.pred_j))
        conf = (_stacked(pairs.conf_i), _stacked(pairs.conf_j))
        valid = np.ones((N, H, W), bool)
    else:
        pred = np.zeros((2, E, H, W, 3), np.float32)
        conf = np.zeros((2, E, H, W), np.float32)
        for s, (preds, confs) in enumerate(((pairs.pred_i, pairs.conf_i), (pairs.pred_j, pairs.conf_j))):
            for e in range(E):
                h, w = confs[e].shape
                pred[s, e, :h, :w] = preds[e]
                conf[s, e, :h, :w] = confs[e]
        valid = np.zeros((N, H, W), bool)
        for n, (h, w) in enumerate(pairs.imshapes):
            valid[n, :h, :w] = True
    return {"pred": tuple(pred), "conf": tuple(conf), "valid": valid, "edges": np.asarray(pairs.edges, np.int32).reshape(E, 2)}


def _take(arrays, side, e):
    """arrays[side][e] for index arrays side (0: i, 1: j) and e of one shape."""
    a_i, a_j = arrays[0][e], arrays[1][e]
    return jnp.where((side == 0).reshape(side.shape + (1,) * (a_i.ndim - side.ndim)), a_i, a_j)


def _moments(a, w, b):
    """Weighted moments of a registration of a onto b: a, b (P, 3), w (P,) (not normalised).
    Returns (amean (3,), bmean (3,), C (3, 3) = sum w (b - bm)(a - am)^T / sum w, sig2a)."""
    w = w / jnp.sum(w)
    am, bm = w @ a, w @ b
    ah, bh = a - am, b - bm
    C = (bh * w[:, None]).T @ ah
    return am, bm, C, jnp.sum(w * jnp.sum(ah * ah, axis=-1))


def _umeyama(am, bm, C, sig2a, dst):
    """(s, R, T) with s R a + T ~= dst(b), from the moments of (a, b) and dst = [[A, t], [0, 1]]
    (a similarity, A = s' R'): the host `rigid_points_registration` of a onto dst(b)."""
    A, t = dst[:3, :3], dst[:3, 3]
    U, S, Vt = jnp.linalg.svd(A @ C)
    D = jnp.array([1.0, 1.0, 0.0]) + jnp.array([0.0, 0.0, 1.0]) * jnp.sign(jnp.linalg.det(U @ Vt))
    R = (U * D) @ Vt
    s = jnp.sum(S * D) / sig2a
    T = (A @ bm + t) - s * R @ am
    return s, R, T


def _similarity(s, R, T):
    return jnp.eye(4, dtype=R.dtype).at[:3, :3].set(s * R).at[:3, 3].set(T)


def _weiszfeld_focal(pts, valid, pp):
    """Official Weiszfeld focal of one image over its valid pixels: pts (H, W, 3) in its own
    camera frame, valid (H, W), pp (2,). As `focal.estimate_focal_knowing_depth`."""
    H, W, _ = pts.shape
    u, v = jnp.meshgrid(jnp.arange(W, dtype=pts.dtype), jnp.arange(H, dtype=pts.dtype), indexing="xy")
    pix = (jnp.stack((u, v), -1) - pp).reshape(-1, 2)
    pts = pts.reshape(-1, 3)
    m = valid.reshape(-1).astype(pts.dtype)
    xy = jnp.nan_to_num(pts[:, :2] / pts[:, 2:3], nan=0.0, posinf=0.0, neginf=0.0)
    dot_px = jnp.sum(xy * pix, -1)
    dot_xx = jnp.sum(xy * xy, -1)
    focal = jnp.sum(m * dot_px) / jnp.sum(m * dot_xx)
    for _ in range(10):
        w = m / jnp.maximum(jnp.linalg.norm(pix - focal * xy, axis=-1), 1e-8)
        focal = jnp.sum(w * dot_px) / jnp.sum(w * dot_xx)
    return jnp.maximum(focal, 0.0)


def _tree_order(score, edges, n_imgs, stale_focal):
    """Tree edges in the official processing order: (E_tree (N-1,) edge indices, known_is_i
    (N-1,) bool: the edge's image i was already placed, entry 0 is the root edge; focal_edge
    (N,) the pair whose pred_i gives image n its focal, -1 if no tree edge does)."""
    E = score.shape[0]
    ei, ej = edges[:, 0], edges[:, 1]
    big = jnp.int32(E)
    order = jnp.lexsort((ej, ei, -score))  # scipy's stable sort of CSR entries by -score
    rank = jnp.zeros(E, jnp.int32).at[order].set(jnp.arange(E, dtype=jnp.int32))
    directed = jnp.full((n_imgs, n_imgs), big).at[ei, ej].set(rank)
    weight = jnp.minimum(directed, directed.T)
    keep = rank <= directed[ej, ei]  # the direction Kruskal meets first
    kept = jnp.full((n_imgs, n_imgs), -1, jnp.int32)
    kept = kept.at[jnp.where(keep, ei, n_imgs), jnp.where(keep, ej, n_imgs)].set(jnp.arange(E, dtype=jnp.int32),
                                                                                 mode="drop")
    kept = jnp.maximum(kept, kept.T)

    def prim(_, state):
        in_tree, key, parent = state
        v = jnp.argmin(jnp.where(in_tree, big + 1, key))
        in_tree = in_tree.at[v].set(True)
        better = (weight[v] < key) & ~in_tree
        return in_tree, jnp.where(better, weight[v], key), jnp.where(better, v, parent)
    in_tree = jnp.zeros(n_imgs, bool).at[0].set(True)
    _, _, parent = jax.lax.fori_loop(0, n_imgs - 1, prim, (in_tree, weight[0], jnp.zeros(n_imgs, jnp.int32)))
    tree = kept[parent[1:], jnp.arange(1, n_imgs)]

    # official queue: descending (score, i, j), edges not touching a placed image go to the back
    tree = tree[jnp.lexsort((ej[tree], ei[tree], score[tree]))[::-1]]
    ti, tj = ei[tree], ej[tree]
    M = n_imgs - 1
    pos = jnp.arange(M)
    candidates = jnp.arange(n_imgs)[:, None] == ti[None, :]  # (N, M): tree edge whose image i is n

    def sweep(k, state):
        done, processed, cursor, steps, known_is_i, fedge = state
        adjacent = ~processed & (done[ti] | done[tj])
        after = adjacent & (pos > cursor)
        nxt = jnp.where(after.any(), jnp.argmax(after), jnp.argmax(adjacent))
        # every edge popped since the last step (the deferred ones, then nxt) gives image i a
        # focal if it has none: the last processed edge's (stale quirk) or its own
        key = (pos - cursor - 1) % M
        popped = candidates & (~processed & (key <= key[nxt]))[None, :]
        first = jnp.argmin(jnp.where(popped, key[None, :], M), axis=1)
        focal_from = tree[cursor] if stale_focal else tree[first]
        fedge = jnp.where((fedge < 0) & popped.any(1), focal_from, fedge)
        known_is_i = known_is_i.at[k].set(done[ti[nxt]])
        done = done.at[ti[nxt]].set(True).at[tj[nxt]].set(True)
        return done, processed.at[nxt].set(True), nxt, steps.at[k].set(nxt), known_is_i, fedge
    done = jnp.zeros(n_imgs, bool).at[ti[0]].set(True).at[tj[0]].set(True)
    processed = jnp.zeros(M, bool).at[0].set(True)
    fedge = jnp.full(n_imgs, -1, jnp.int32).at[ti[0]].set(tree[0])
    state = (done, processed, 0, jnp.zeros(M, jnp.int32), jnp.ones(M, bool), fedge)
    _, _, _, steps, known_is_i, fedge = jax.lax.fori_loop(1, M, sweep, state)
    return tree[steps], known_is_i, fedge


@functools.partial(jax.jit, static_argnames=("n_imgs", "stale_focal"))
def tree_stage(pred, conf, valid, edges, imshapes, n_imgs, stale_focal=True):
    """Scores, tree, order, registrations along the tree and focals (see the module docstring).

    pred two (E, H, W, 3), conf two (E, H, W), valid (N, H, W), edges (E, 2): from `stack_pairs`;
    imshapes (N, 2) int (H_n, W_n). Returns a dict: `order` (N-1,) tree edges as processed,
    `sims` (N, 4, 4) similarity taking image n's source prediction to the world, `src` (N, 2)
    (edge, side) of that source, `poses` (N, 4, 4) cam2world, `has_pose` (N,), `focals` (N,),
    `focal_edge` (N,) the pair whose pred_i gave the focal (-1: none).
    """
    E = edges.shape[0]
    ei, ej = edges[:, 0], edges[:, 1]
    count = jnp.sum(valid, axis=(1, 2)).astype(jnp.float32)
    score = (jnp.sum(conf[0], axis=(1, 2)) / count[ei]) * (jnp.sum(conf[1], axis=(1, 2)) / count[ej])
    tree, known_is_i, fedge = _tree_order(score, edges, n_imgs, stale_focal)

    # sources: root images are their root-edge predictions, every other image the prediction of
    # the step that places it
    known_side = jnp.where(known_is_i, 0, 1)
    new_img = jnp.where(known_is_i, ej[tree], ei[tree])
    known_img = jnp.where(known_is_i, ei[tree], ej[tree])
    src = jnp.zeros((n_imgs, 2), jnp.int32)
    src = src.at[ei[tree[0]]].set(jnp.stack((tree[0], 0))).at[ej[tree[0]]].set(jnp.stack((tree[0], 1)))
    src = src.at[new_img[1:]].set(jnp.stack((tree[1:], 1 - known_side[1:]), -1))

    # moments of every registration at once, then composition along the order
    # (entry 0, the root edge onto itself, is not used: it keeps the arrays non-empty for N = 2)
    a = _take(pred, known_side, tree).reshape(n_imgs - 1, -1, 3)
    w = _take(conf, known_side, tree).reshape(n_imgs - 1, -1)
    bsrc = src[known_img]
    b = _take(pred, bsrc[:, 1], bsrc[:, 0]).reshape(n_imgs - 1, -1, 3)
    moments = jax.vmap(_moments)(a, w, b)

    root = tree[0]
    sims = jnp.broadcast_to(jnp.eye(4), (n_imgs, 4, 4))
    poses = sims
    has_pose = jnp.zeros(n_imgs, bool).at[ei[root]].set(True)

    def place(k, state):
        sims, poses, has_pose = state
        m = jax.tree.map(lambda x: x[k], moments)
        s, R, T = _umeyama(*m, sims[known_img[k]])
        i = ei[tree[k]]
        sims = sims.at[new_img[k]].set(_similarity(s, R, T))
        poses = poses.at[i].set(jnp.where(has_pose[i], poses[i], _similarity(1.0, R, T)))
        return sims, poses, has_pose.at[i].set(True)
    sims, poses, has_pose = jax.lax.fori_loop(1, n_imgs - 1, place, (sims, poses, has_pose))

    # remaining focals: best-scoring pair where the image comes first (first such pair on ties)
    first = ei[None, :] == jnp.arange(n_imgs)[:, None]
    best = jnp.argmax(jnp.where(first, score[None, :], -jnp.inf), axis=1)
    fedge = jnp.where(fedge < 0, jnp.where(first.any(1), best, -1), fedge)
    pp = imshapes[:, ::-1].astype(jnp.float32) / 2
    focals = jax.vmap(_weiszfeld_focal)(pred[0][jnp.maximum(fedge, 0)], valid, pp)
    return {"order": tree, "sims": sims, "src": src, "poses": poses, "has_pose": has_pose, "focals": focals,
            "focal_edge": fedge}


@jax.jit
def world_points(pred, sims, src, trf):
    """(N, H, W, 3) world points of each image: trf @ sims[n] applied to its source prediction."""
    T = trf @ sims
    pts = _take(pred, src[:, 1], src[:, 0])
    return jnp.einsum("nij,nhwj->nhwi", T[:, :3, :3], pts) + T[:, None, None, :3, 3]


@jax.jit
def pair_registrations(pred, conf, world, edges):
    """Umeyama of every pair's pred_i onto image i's world points, weights conf_i (official
    `init_from_pts3d`). Returns s (E,), R (E, 3, 3), T (E, 3)."""
    E = edges.shape[0]
    P = world.shape[1] * world.shape[2]
    pred_i, conf_i = pred[0], conf[0]

    def one(e):
        m = _moments(pred_i[e].reshape(P, 3), conf_i[e].reshape(P), world[edges[e, 0]].reshape(P, 3))
        return _umeyama(*m, jnp.eye(4))
    return jax.lax.map(one, jnp.arange(E), batch_size=max(1, min(E, _POINTS_PER_BATCH // P)))


@jax.jit
def camera_depths(world, cam2world):
    """(N, H, W) z of each image's world points in its own camera, cam2world (N, 4, 4)."""
    w2c = jnp.linalg.inv(cam2world)
    return jnp.einsum("nj,nhwj->nhw", w2c[:, 2, :3], world) + w2c[:, None, None, 2, 3]


def _device_arrays(pairs):
    stacked = stack_pairs(pairs)
    return jax.tree.map(jnp.asarray, stacked), np.asarray(pairs.imshapes, np.int32)


def spanning_tree_device(pairs, min_conf_thr=3.0, niter_PnP=10, stale_focal=True, arrays=None):
    """`init.spanning_tree` on the device. Returns (mst_edges in the order used, focals (list of
    float or None), cam2world (N, 4, 4) float64, arrays): arrays holds the device inputs and the
    tree results (`device_pts3d` reads the world points from it)."""
    if arrays is None:
        arrays, imshapes = _device_arrays(pairs)
        arrays["imshapes"] = jnp.asarray(imshapes)
    out = tree_stage(arrays["pred"], arrays["conf"], arrays["valid"], arrays["edges"], arrays["imshapes"],
                     n_imgs=pairs.n_imgs, stale_focal=stale_focal)
    out = dict(out, **{k: np.asarray(out[k]) for k in ("order", "has_pose", "focals", "focal_edge")})
    cam2world = np.asarray(out["poses"], np.float64)
    focals = [float(f) if e >= 0 else None for f, e in zip(out["focals"], out["focal_edge"])]
    missing = np.flatnonzero(~out["has_pose"])
    if len(missing):  # PnP on the host (OpenCV), as the official code
        for n in missing:  # RANSAC's inliers can flip with the last bit of the focal: host's float64 one
            if out["focal_edge"][n] >= 0:
                focals[n] = estimate_focal(pairs.pred_i[out["focal_edge"][n]])
        world = world_points(arrays["pred"], out["sims"][missing], out["src"][missing], jnp.eye(4))
        for n, pts in zip(missing, np.asarray(world)):
            H, W = pairs.imshapes[n]
            res = fast_pnp(pts[:H, :W], focals[n], msk=pairs.im_conf[n] > min_conf_thr, niter_PnP=niter_PnP)
            if res is not None:
                focals[n], cam2world[n] = res
    mst_edges = [tuple(pairs.edges[e]) for e in out["order"]]
    arrays["tree"] = out
    return mst_edges, focals, cam2world, arrays


def device_pts3d(pairs, arrays, trf=None):
    """World points per image (list of (H_n, W_n, 3) NumPy float32) of a `spanning_tree_device` run."""
    out = arrays["tree"]
    world = np.asarray(world_points(arrays["pred"], out["sims"], out["src"], jnp.eye(4) if trf is None else trf))
    return [world[n, :h, :w] for n, (h, w) in enumerate(pairs.imshapes)]


def init_mst_device(pairs, params, frozen, options=None, norm_pw_scale=True):
    """`init.init_mst` with the heavy steps on the device (same arguments and result)."""
    options = options or AlignOptions()
    base_scale, focal_break = options.base_scale, options.focal_break
    params = {k: (list(v) if k == "depth" else np.array(v)) for k, v in params.items()}
    _, focals, cam2world, arrays = spanning_tree_device(pairs, options.min_conf_thr, options.niter_PnP,
                                                        options.stale_focal)
    tree = arrays["tree"]

    trf, cam2world = move_onto_preset_cameras(cam2world, params, frozen)
    trf = np.eye(4) if trf is None else trf

    world = world_points(arrays["pred"], tree["sims"], tree["src"], jnp.asarray(trf, jnp.float32))
    s, R, T = jax.tree.map(np.asarray, pair_registrations(arrays["pred"], arrays["conf"], world, arrays["edges"]))
    for e in range(pairs.n_edges):
        params["pw_poses"][e] = encode_pose(R[e], T[e], scale=s[e])
    depth = np.asarray(camera_depths(world, jnp.asarray(cam2world, jnp.float32)))
    s_factor = 1.0  # scaling the scene scales every depth (the host scales points and poses)
    if norm_pw_scale:
        log_scales = np.ascontiguousarray(params["pw_poses"][:, -1])
        s_factor = float(np.exp(np.log(base_scale) - np.mean(log_scales)))
        cam2world[:, :3, 3] *= s_factor
    for n, (h, w) in enumerate(pairs.imshapes):
        if not frozen["depth"][n]:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_depth = np.log((depth[n, :h, :w].astype(np.float64) * s_factor).astype(np.float32).ravel())
            params["depth"][n] = np.nan_to_num(log_depth, nan=0.0, neginf=0.0).astype(np.float32)
        if not frozen["im_poses"][n]:
            params["im_poses"][n] = encode_pose(cam2world[n, :3, :3], cam2world[n, :3, 3])
        if focals[n] is not None and not frozen["im_focals"][n]:
            params["im_focals"][n] = focal_break * np.log(focals[n])
    return params
