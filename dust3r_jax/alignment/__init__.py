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
from dust3r_jax.alignment.options import AlignOptions, align_options
from dust3r_jax.alignment.pair_viewer import pair_viewer
from dust3r_jax.alignment.problem import Problem, build_problem, scene_from_params
from dust3r_jax.alignment.scene import Scene

__all__ = ["global_align", "AlignOptions", "align_options", "read_pairs", "build_problem", "align_arrays", "lr_schedule", "scene_from_params",
           "pair_viewer", "Scene", "Problem", "PairPredictions"]


def global_align(output, options=None, *, known_poses=None, known_focals=None, known_pp=None, verbose=False,
                 progress=None, mesh=None, **option_overrides):
    """Align the pairwise predictions of `inference()` into one scene.

    output: the `inference()` dict (`view1`, `view2` with `idx`; `pred1` {pts3d, conf}; `pred2`
      {pts3d_in_other_view, conf}; stacked (E, H, W, ...) arrays or per-pair lists).
    options: an `AlignOptions` (mode, init, niter, schedule, lr, min_conf_thr, ...: see its
      docstring); keywords override single options, e.g. `global_align(output, niter=500)`.
      mode="pair" is the PairViewer (two images, no optimisation).
    known_poses / known_focals / known_pp: {image: value} or a full sequence of (4, 4) cam2world /
      float / (cx, cy); frozen during the optimisation.
    verbose: a progress bar; progress: optional `progress(done, niter)`, called between chunks
      (e.g. a web page's bar).
    mesh: a `jax.sharding.Mesh` (e.g. `dust3r_jax.meshes.data_mesh()`): the pair data (pointmaps,
      confidences) split along the pairs over all its devices, parameters replicated; one jitted
      program whose gradient is all-reduced once per step. Memory per device ~1/N of the pair data.
      Multi-host: every process makes the same call. None: one device (JAX's default).
    Returns a `Scene`.
    """
    options = align_options(options, **option_overrides)
    pairs = read_pairs(output)
    if options.mode == "pair":
        return pair_viewer(pairs, options.min_conf_thr)
    lrs = lr_schedule(options.niter, options.lr, options.lr_min, options.schedule)
    problem = build_problem(pairs, options, known_poses=known_poses, known_focals=known_focals, known_pp=known_pp,
                            mesh=mesh)
    params, history = optimize.run(problem.data, problem.params, problem.layout, lrs, problem.trainable,
                                   chunk_iters=options.chunk_iters, progress=verbose,
                                   callback=progress)
    if options.niter == 0:
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
