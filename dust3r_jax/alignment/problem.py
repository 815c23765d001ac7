"""From `inference()` output and options to an optimisation problem, and from parameters to a Scene.

`build_problem` reads the pairs, applies presets (known poses / focals / principal points),
initialises (MST, known poses or random) and packs everything for `optimize`:
    problem.data, problem.params, problem.layout, problem.trainable
are exactly the arguments of `optimize.align_arrays` (with the learning rates), so a user can
differentiate or vmap the optimisation. `scene_from_params` decodes a parameter pytree.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dust3r_jax import meshes
from dust3r_jax.errors import InputError
from dust3r_jax.alignment import init as init_lib
from dust3r_jax.alignment import init_device
from dust3r_jax.alignment import objective
from dust3r_jax.alignment import params as P
from dust3r_jax.alignment.inputs import PairPredictions
from dust3r_jax.alignment.options import align_options
from dust3r_jax.alignment.scene import Scene


@dataclasses.dataclass
class Problem:
    pairs: PairPredictions
    layout: objective.Layout
    data: list          # objective.pack_data
    params: dict        # initial parameters, depth per image group (JAX arrays)
    trainable: dict     # 0/1 factors like params
    min_conf_thr: float


def _presets(values, n, name, shape):
    """A dict {image: value} or a full sequence -> (mask (n,), list of values or None)."""
    mask = np.zeros(n, bool)
    out = [None] * n
    if values is None:
        return mask, out
    items = values.items() if isinstance(values, dict) else enumerate(values)
    for k, v in items:
        k = int(k)
        if not 0 <= k < n:
            raise InputError(f"{name}: image index {k} out of range 0..{n - 1}")
        v = np.asarray(v, np.float64)
        if v.shape != shape:
            raise InputError(f"{name}[{k}]: expected shape {shape}, found {v.shape}")
        if not np.all(np.isfinite(v)):
            raise InputError(f"{name}[{k}]: contains NaN/Inf")
        mask[k] = True
        out[k] = v
    return mask, out


def build_problem(pairs, options=None, *, known_poses=None, known_focals=None, known_pp=None, mesh=None,
                  **option_overrides):
    """The optimisation problem of `pairs` (see `global_align` for the arguments; `options` an
    `AlignOptions`, keywords override single options)."""
    options = align_options(options, **option_overrides)
    mode = options.mode
    if mode == "pair":
        raise InputError("mode='pair' (the PairViewer) has no optimisation problem; use global_align")
    n = pairs.n_imgs
    pose_known, poses = _presets(known_poses, n, "known_poses", (4, 4))
    focal_known, focals = _presets(known_focals, n, "known_focals", ())
    pp_known, pps = _presets(known_pp, n, "known_pp", (2,))
    if mode == "pointcloud":
        for mask, name in ((pose_known, "known_poses"), (focal_known, "known_focals"), (pp_known, "known_pp")):
            if mask.any() and not mask.all():
                raise InputError(f"{name}: mode='pointcloud' presets all images or none "
                                 f"(given for {np.flatnonzero(mask).tolist()}); use mode='modular'")
        norm_pw_scale = not pose_known.any()
    else:
        norm_pw_scale = int(pose_known.sum()) <= 1

    focal_break = options.focal_break
    params = P.default_params(pairs.imshapes, pairs.n_edges, focal_break, np.random.default_rng(options.seed))
    for k in range(n):
        if pose_known[k]:
            params["im_poses"][k] = P.encode_pose(poses[k][:3, :3], poses[k][:3, 3])
        if focal_known[k]:
            params["im_focals"][k] = focal_break * np.log(float(focals[k]))
        if pp_known[k]:
            H, W = pairs.imshapes[k]
            params["im_pp"][k] = (pps[k] - (W / 2, H / 2)) / 10
    frozen = {"im_poses": pose_known, "im_focals": focal_known, "im_pp": pp_known, "depth": np.zeros(n, bool)}

    if options.init in ("mst", "msp"):
        init_mst = init_lib.init_mst if options.init_backend == "host" else init_device.init_mst_device
        params = init_mst(pairs, params, frozen, options, norm_pw_scale)
    elif options.init == "known_poses":
        params = init_lib.init_known_poses(pairs, params, frozen, options)

    slots = 1 if mesh is None else meshes.mesh_size(mesh)
    layout = objective.make_layout(pairs.imshapes, pairs.edges, options.edge_chunk, slots, loss_mode=mode,
                                   dist=options.dist, conf=options.conf, base_scale=float(options.base_scale),
                                   pw_break=float(options.pw_break), focal_break=float(focal_break),
                                   norm_pw_scale=bool(norm_pw_scale), pw_adaptors=bool(options.allow_pw_adaptors))
    data = objective.pack_data(layout, pairs.pred_i, pairs.pred_j, pairs.conf_i, pairs.conf_j)
    jparams = {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in params.items() if k != "depth"}
    jparams["depth"] = objective.pack_depth(layout, params["depth"])

    def col(mask):
        return jnp.asarray((~mask).astype(np.float32)[:, None])
    trainable = {
        "depth": [jnp.ones((1, 1), jnp.float32) for _ in layout.image_groups],
        "im_poses": col(pose_known),
        "im_focals": col(focal_known),
        "im_pp": col(pp_known | (not options.optimize_pp)),
        "pw_poses": jnp.ones((pairs.n_edges, 1), jnp.float32),
        "pw_adaptors": jnp.full((pairs.n_edges, 1), 1.0 if options.allow_pw_adaptors else 0.0, jnp.float32),
    }
    if mesh is not None:
        data, jparams, trainable = shard_problem(mesh, data, jparams, trainable)
    return Problem(pairs, layout, data, jparams, trainable, float(options.min_conf_thr))


def shard_problem(mesh, data, params, trainable):
    """The pair data split along its pair slots (axis 1 of every side group's (R, D, ...) arrays)
    over all devices of `mesh`; parameters (per image and per pair: a few numbers each) and their
    masks replicated. The loss sums over slots, so `jit` reduces the gradient across devices once
    per step. Every process passes the same full arrays (see `meshes.put_global`)."""
    data = meshes.put_global(data, lambda ndim: meshes.sharded_along(mesh, 1, ndim))
    return data, meshes.put_replicated(params, mesh), meshes.put_replicated(trainable, mesh)


def scene_from_params(problem, params, loss=float("nan"), loss_history=None):
    """Decode parameters into a Scene (NumPy)."""
    layout = problem.layout
    params = meshes.fetch(params)
    cam2world = np.asarray(P.decode_poses(jnp.asarray(params["im_poses"])))
    focals = np.asarray(P.focals_from_params(jnp.asarray(params["im_focals"]), layout.focal_break))
    pps = np.asarray(P.principal_points(jnp.asarray(params["im_pp"]), layout.imshapes))
    world = objective.world_points(layout, jax.tree.map(jnp.asarray, params))
    pts3d = [None] * layout.n_imgs
    for ((H, W), members), arr in zip(layout.image_groups, world):
        arr = np.swapaxes(np.asarray(arr), -1, -2)
        for k, n in enumerate(members):
            pts3d[n] = arr[k].reshape(H, W, 3)
    depth = [np.exp(d) for d in objective.unpack_depth(layout, params["depth"])]
    pw = np.asarray(P.scaled_pw_poses(jnp.asarray(params["pw_poses"]), layout.base_scale, layout.norm_pw_scale))
    pw_scale = np.asarray(P.pw_scales(jnp.asarray(params["pw_poses"]), layout.base_scale, layout.norm_pw_scale))
    raw = {k: v for k, v in params.items() if k != "depth"}
    raw["depth"] = [d.ravel() for d in objective.unpack_depth(layout, params["depth"])]
    scene = Scene(imshapes=list(layout.imshapes), edges=list(layout.edges), cam2world=cam2world, focals=focals,
                  principal_points=pps, depthmaps=depth, pts3d=pts3d, conf=list(problem.pairs.im_conf),
                  imgs=problem.pairs.imgs, loss=float(loss), min_conf_thr=problem.min_conf_thr,
                  pw_poses=pw, pw_scale=pw_scale, params=raw)
    if loss_history is not None:
        scene.loss_history = np.asarray(loss_history)
    return scene
