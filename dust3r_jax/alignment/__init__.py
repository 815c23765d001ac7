"""Global alignment: pairwise pointmaps -> one scene (cameras, depth maps, world points).

    scene = global_align(output)                      # MST init + 300 Adam iterations
    scene = global_align(output, mode="pair")         # two images, no optimisation (PairViewer)

The official PointCloudOptimizer / ModularPointCloudOptimizer / PairViewer, in JAX: see
`objective.py` (loss), `init.py` (spanning tree), `optimize.py` (jitted loop, pure core
`align_arrays` for `jax.grad` / `jax.vmap`), `problem.py` (options, presets, decoding).
"""
import math

import numpy as np

from dust3r_jax import meshes
from dust3r_jax.errors import InputError
from dust3r_jax.alignment import optimize
from dust3r_jax.alignment.inputs import PairPredictions, read_pairs
from dust3r_jax.alignment.optimize import align_arrays, lr_schedule
from dust3r_jax.alignment.pair_viewer import pair_viewer
from dust3r_jax.alignment.problem import Problem, build_problem, scene_from_params
from dust3r_jax.alignment.scene import Scene

__all__ = ["global_align", "read_pairs", "build_problem", "align_arrays", "lr_schedule", "scene_from_params",
           "pair_viewer", "Scene", "Problem", "PairPredictions"]


def global_align(output, mode="pointcloud", init="mst", niter=300, schedule="cosine", lr=0.01, lr_min=1e-6,
                 min_conf_thr=3.0, conf="log", dist="l1", base_scale=0.5, pw_break=20.0, focal_break=20.0,
                 optimize_pp=False, allow_pw_adaptors=False, niter_PnP=10, known_poses=None, known_focals=None,
                 known_pp=None, stale_focal=True, pnp_own_focal=False, edge_chunk=0, chunk_iters=50, verbose=False,
                 seed=0, init_backend="host", progress=None, mesh=None):
    """Align the pairwise predictions of `inference()` into one scene.

    output: the `inference()` dict (`view1`, `view2` with `idx`; `pred1` {pts3d, conf}; `pred2`
      {pts3d_in_other_view, conf}; stacked (E, H, W, ...) arrays or per-pair lists).
    mode: "pointcloud" (PointCloudOptimizer), "modular" (ModularPointCloudOptimizer: per-pair mean
      loss, presets for some images), "pair" (PairViewer: two images, no optimisation).
    init: "mst" (spanning tree), "known_poses" (every pose and focal preset), None (random start).
    init_backend: where init="mst" runs: "host" (NumPy float64, `init.py`, the reference the
      official fixtures are checked against; the default) or "device" (jitted JAX float32,
      `init_device.py`: same tree and order, poses within ~1e-5; meant for accelerators).
    niter, schedule ("cosine" | "linear"), lr, lr_min: the Adam loop (betas 0.9, 0.9).
    min_conf_thr: confidence threshold of masks and of the PnP points; conf: weight transform
      ("log", "sqrt", "m1", "id"); dist: "l1" (Euclidean distance) or "l2" (squared);
    base_scale, pw_break, focal_break, optimize_pp, allow_pw_adaptors, niter_PnP: as official.
    known_poses / known_focals / known_pp: {image: value} or a full sequence of (4, 4) cam2world /
      float / (cx, cy); frozen during the optimisation.
    stale_focal: True reproduces the official MST focal quirk; False estimates a focal from the
      pair being processed.
    pnp_own_focal: init='known_poses' only; False reproduces the official PnP of image j's points
      with image i's focal, True uses image j's (correct when the focals differ).
    edge_chunk: >0 processes pairs in blocks of this many (memory bounded by a block).
    chunk_iters: iterations per jitted chunk between progress-bar updates (verbose=True).
    progress: optional `progress(done, niter)`, called between chunks (e.g. a web page's bar).
    mesh: a `jax.sharding.Mesh` (e.g. `dust3r_jax.meshes.data_mesh()`): the pair data (pointmaps,
      confidences) split along the pairs over all its devices, parameters replicated; one jitted
      program whose gradient is all-reduced once per step. Memory per device ~1/N of the pair data.
      Multi-host: every process makes the same call. None: one device (JAX's default).
    Returns a `Scene`.
    """
    if niter < 0:
        raise InputError(f"niter must be >= 0, found {niter}")
    pairs = read_pairs(output)
    if mode == "pair":
        return pair_viewer(pairs, min_conf_thr)
    lrs = lr_schedule(niter, lr, lr_min, schedule)  # (checks `schedule` before the initialisation)
    problem = build_problem(pairs, mode=mode, init=init, min_conf_thr=min_conf_thr, conf=conf, dist=dist,
                            base_scale=base_scale, pw_break=pw_break, focal_break=focal_break,
                            optimize_pp=optimize_pp, allow_pw_adaptors=allow_pw_adaptors, niter_PnP=niter_PnP,
                            known_poses=known_poses, known_focals=known_focals, known_pp=known_pp,
                            stale_focal=stale_focal, edge_chunk=edge_chunk, seed=seed,
                            pnp_own_focal=pnp_own_focal, init_backend=init_backend, mesh=mesh)
    params, history = optimize.run(problem.data, problem.params, problem.layout, lrs, problem.trainable,
                                   chunk_iters=chunk_iters, progress=verbose,
                                   callback=progress)
    if niter == 0:
        loss = float(meshes.fetch(optimize.loss_jit(params, problem.data, problem.layout)))
    else:
        loss = float(history[-1])
    if not math.isfinite(loss) or not all(np.all(np.isfinite(p)) for p in _leaves(meshes.fetch(params))):
        raise InputError("global alignment diverged (non-finite loss or parameters); check the predictions "
                         "(confidences, NaN) or lower lr")
    return scene_from_params(problem, params, loss, history)


def _leaves(params):
    import jax
    return jax.tree.leaves(params)
