"""The optimiser of MASt3R's sparse alignment (mast3r/cloud_opt/sparse_ga.py sparse_scene_optimizer),
as pure functions of a parameter pytree, each stage one jitted `lax.scan`.

Parameters (as official): per image a normalised principal point `pp` (pixels / (W, H)), `log_focal`,
a unit quaternion `quat` (x, y, z, w) and translation `trans` of the camera relative to its parent
in the kinematic tree, a `log_size` and the anchor depths `core_depth` (relative to the image's
median). With shared intrinsics `pp` and `log_focal` have one row.

The cameras are re-parametrised around their focal plane: the optimised pose places the point at
depth z_cam = size * median_depth * focal / base_focal on the optical axis, and the camera centre
is moved back by z_cam along its ray through the principal point; everything is divided by the
smallest size (the optimisation would otherwise shrink the scene).

Stage 1 ("3d"): poses and sizes only, gamma-1.5 loss between the two 3D points of each
correspondence. Stage 2 ("2d"): everything, gamma-0.5 loss of reprojections. Both add 0.01 x the
DUSt3R fallback loss (gamma 1.1). Adam (betas 0.9, 0.9) from optax, a cosine (or linear) schedule
to 0, quaternions renormalised after every step, a fresh optimiser per stage.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dust3r_jax.geometry import quat_to_rotmat

__all__ = ["init_sparse_params", "camera_model", "points3d", "run_stage", "gamma_loss"]


def gamma_loss(gamma):
    """mast3r/cloud_opt/utils/losses.py gamma_loss: (d + o)^gamma - o^gamma of the distance d, with
    o = (1/gamma)^(1/(gamma-1)) where the slope is 1; d itself for gamma = 1."""
    def distance(x, y):
        sq = jnp.sum(jnp.square(x - y), axis=-1)
        safe = jnp.where(sq > 0, sq, 1.0)  # gradient 0 at distance 0, as torch's norm
        return jnp.where(sq > 0, jnp.sqrt(safe), 0.0)
    if gamma == 1:
        return distance
    offset = (1 / gamma) ** (1 / (gamma - 1))
    return lambda x, y: (distance(x, y) + offset) ** gamma - offset ** gamma


def init_sparse_params(problem, shared_intrinsics, exp_depth=False):
    """The official initial values: identity poses, unit sizes, pp at the centre, the estimated
    focals, the canonical anchor depths (their logs with exp_depth). Shared intrinsics start at the
    average of the images' weighted by their mean canonical confidence."""
    n = problem.n_imgs
    pp = np.full((n, 2), 0.5, np.float32)
    log_focal = np.log(problem.base_focals)
    if shared_intrinsics:
        weights = np.array([np.mean(c) for c in problem.canon_conf], np.float32)
        weights = weights / weights.sum()
        pp = (weights @ pp)[None]
        log_focal = np.log(weights @ problem.base_focals)[None]
    core = problem.core_depth
    if exp_depth:
        core = np.log(np.maximum(core, 1e-4))
    return {"pp": jnp.asarray(pp, jnp.float32), "log_focal": jnp.asarray(log_focal, jnp.float32),
            "quat": jnp.tile(jnp.array([0.0, 0, 0, 1], jnp.float32), (n, 1)),
            "trans": jnp.zeros((n, 3), jnp.float32), "log_size": jnp.zeros((n,), jnp.float32),
            "core_depth": jnp.asarray(core, jnp.float32)}


def camera_model(params, data, tree, depth_mode="add", exp_depth=False):
    """Intrinsics, poses and anchor depths from the parameters (the official make_K_cam_depth).

    data: `SparseProblem.device_arrays()`; tree: (root, ((parent, child), ...)).
    Returns (K (N, 3, 3), cam2w (N, 4, 4), world2cam (N, 4, 4), depth (A,) anchor depths).
    """
    imsizes = data["imsizes"].astype(jnp.float32)
    n = imsizes.shape[0]
    diag = jnp.linalg.norm(imsizes, axis=1)
    focals = jnp.clip(jnp.exp(jnp.broadcast_to(params["log_focal"], (n,))), 0.25 * diag, 10 * diag)
    pp = jnp.broadcast_to(params["pp"], (n, 2))
    K = jnp.zeros((n, 3, 3)).at[:, 0, 0].set(focals).at[:, 1, 1].set(focals).at[:, 2, 2].set(1.0)
    K = K.at[:, :2, 2].set(pp * imsizes)

    sizes = jnp.exp(params["log_size"])
    scale = 1 / jnp.min(sizes)
    z_cam = sizes * data["median_depths"] * focals / data["base_focals"]

    quat = params["quat"] / jnp.maximum(jnp.linalg.norm(params["quat"], axis=1, keepdims=True), 1e-12)
    rel = jnp.zeros((n, 4, 4)).at[:, :3, :3].set(quat_to_rotmat(quat)).at[:, :3, 3].set(params["trans"])
    rel = rel.at[:, 3, 3].set(1.0)
    root, edges = tree
    chain = [None] * n
    chain[root] = rel[root]
    for parent, child in edges:  # child's pose is relative to its parent's
        chain[child] = chain[parent] @ rel[child]
    chain = jnp.stack(chain)

    offset = z_cam[:, None] * jnp.concatenate([imsizes / focals[:, None] * (0.5 - pp), jnp.ones((n, 1))], axis=1)
    rot = chain[:, :3, :3]
    centre = scale * (chain[:, :3, 3] - jnp.einsum("nij,nj->ni", rot, offset))
    cam2w = chain.at[:, :3, 3].set(centre)
    world2cam = jnp.zeros_like(cam2w).at[:, :3, :3].set(jnp.swapaxes(rot, 1, 2))
    world2cam = world2cam.at[:, :3, 3].set(-jnp.einsum("nji,nj->ni", rot, centre)).at[:, 3, 3].set(1.0)

    core = jnp.exp(params["core_depth"]) if exp_depth else params["core_depth"]
    img = data["anchor_img"]
    if depth_mode == "add":
        depth = z_cam[img] + (core - 1) * (data["median_depths"] * sizes)[img]
    elif depth_mode == "mul":
        depth = z_cam[img] * core
    else:
        raise ValueError(f"sparse alignment: depth_mode must be 'add' or 'mul', found {depth_mode!r}")
    return K, cam2w, world2cam, scale * depth


def points3d(K, cam2w, depth, img, uv, anchor, offset, base_focals, world=True):
    """World points (P, 3) of pixels uv (P, 2) of images img (P,), at depth[anchor] times a ratio
    `offset` that was measured at the base focal and is rescaled to the current one (official
    make_pts3d). With world=False: (points in the camera frame, their depth)."""
    focals = K[:, 0, 0]
    f = focals[img]
    ratio = 1 + (offset - 1) * (base_focals[img] / f)
    z = depth[anchor] * ratio
    xy = (uv - K[img, :2, 2]) / f[:, None]
    cam = jnp.concatenate([xy * z[:, None], z[:, None]], axis=1)
    if not world:
        return cam, z
    return jnp.einsum("pij,pj->pi", cam2w[img, :3, :3], cam) + cam2w[img, :3, 3]


def _weighted_mean(conf, values):
    total = jnp.sum(conf)
    return jnp.where(total != 0, jnp.sum(conf * values) / jnp.where(total != 0, total, 1.0), 0.0)


def objective(params, data, tree, stage, options):
    """The loss of one step of `stage` ('3d' or '2d'), as official: matching loss + 0.01 x fallback."""
    K, cam2w, world2cam, depth = camera_model(params, data, tree, options.depth_mode, options.exp_depth)
    pts = points3d(K, cam2w, depth, data["pt_img"], data["pt_uv"], data["pt_anchor"], data["pt_offset"],
                   data["base_focals"])
    if stage == "3d":
        loss = _weighted_mean(data["l3_conf"], gamma_loss(options.gamma1)(pts[data["l3_a"]], pts[data["l3_b"]]))
    else:
        proj = K @ world2cam[:, :3]  # (N, 3, 4)
        cam = data["l2_cam"]
        xyz = jnp.einsum("pij,pj->pi", proj[cam, :, :3], pts[data["l2_pt"]]) + proj[cam, :, 3]
        uv = jnp.clip(xyz[:, :2] / jnp.maximum(xyz[:, 2:3], 1e-3), -1000, 2000)
        loss = _weighted_mean(data["l2_conf"], gamma_loss(options.gamma2)(data["l2_uv"], uv))
    cam = data["ld_cam"]
    target = jnp.einsum("pij,pj->pi", cam2w[cam, :3, :3], data["ld_tgt"]) + cam2w[cam, :3, 3]
    fallback = _weighted_mean(data["ld_conf"], gamma_loss(options.gamma_dust3r)(pts[data["ld_pt"]], target))
    return loss + options.loss_dust3r_w * fallback


def _schedule(options, lr_base, niter):
    if options.schedule == "cosine":
        return optax.cosine_decay_schedule(lr_base, max(niter, 1))
    if options.schedule == "linear":
        return optax.linear_schedule(lr_base, 0.0, max(niter, 1))
    raise ValueError(f"sparse alignment: schedule must be 'cosine' or 'linear', found {options.schedule!r}")


@functools.partial(jax.jit, static_argnames=("tree", "stage", "trainable", "shared", "niter", "lr_base", "options"))
def run_stage(params, data, *, tree, stage, trainable, shared, niter, lr_base, options):
    """`niter` Adam steps of `stage` on the `trainable` parameter names (the others fixed).

    Returns (params after the last step, params the last step started from, last loss): the official
    loop reports the cameras evaluated at the start of its last step (before that step's update),
    and it stops early (after the step) when the loss is NaN.
    shared: the names of shared intrinsics, listed once per image in the official torch optimiser,
    which therefore steps them N times per iteration with the same gradient; they are stepped so.
    """
    n = data["imsizes"].shape[0]
    adam = optax.scale_by_adam(b1=0.9, b2=0.9, eps=1e-8)
    lr_at = _schedule(options, lr_base, niter)
    train = {k: params[k] for k in trainable}
    main = {k: v for k, v in train.items() if k not in shared}
    dup = {k: v for k, v in train.items() if k in shared}

    def loss_of(train, fixed):
        return objective({**fixed, **train}, data, tree, stage, options)

    def step(carry, it):
        params, report, state_main, state_dup, done, last_loss = carry
        fixed = {k: v for k, v in params.items() if k not in trainable}
        loss, grads = jax.value_and_grad(loss_of)({k: params[k] for k in trainable}, fixed)
        lr = lr_at(it)
        upd, new_state_main = adam.update({k: grads[k] for k in main}, state_main)
        new = dict(params)
        for k in main:
            new[k] = params[k] - lr * upd[k]

        def dup_step(_, value_state):
            value, state = value_state
            upd, state = adam.update({k: grads[k] for k in dup}, state)
            return {k: value[k] - lr * upd[k] for k in dup}, state

        dup_values, new_state_dup = jax.lax.fori_loop(0, n, dup_step, ({k: params[k] for k in dup}, state_dup))
        new.update(dup_values)
        new["quat"] = new["quat"] / jnp.linalg.norm(new["quat"], axis=1, keepdims=True)
        keep = lambda a, b: jax.tree.map(lambda x, y: jnp.where(done, x, y), a, b)  # noqa: E731
        carry = (keep(params, new), keep(report, params), keep(state_main, new_state_main),
                 keep(state_dup, new_state_dup), done | jnp.isnan(loss), jnp.where(done, last_loss, loss))
        return carry, None

    init = (params, params, adam.init(main), adam.init(dup), jnp.array(False), jnp.array(jnp.nan, jnp.float32))
    (params, report, _, _, _, loss), _ = jax.lax.scan(step, init, jnp.arange(niter))
    return params, report, loss
