"""The optimisation loop: Adam on the alignment loss, jitted whole.

`align_arrays` is the pure functional core (one `lax.scan` over all iterations): differentiable
with respect to the pair data (pointmaps and confidences) through the unrolled optimisation, and
`vmap`-able over scenes of one layout. `run` is what `global_align` uses: the same step, scanned
over chunks of iterations, with a tqdm progress bar updated by the host between chunks only.

Adam is optax's `scale_by_adam(b1=0.9, b2=0.9, eps=1e-8)` (the official betas); the learning rate
of iteration t is set before its step from the official schedule (`lr_schedule`).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dust3r_jax import meshes, xla_cpu
from dust3r_jax.errors import InputError
from dust3r_jax.alignment import objective


def lr_schedule(niter, lr=0.01, lr_min=1e-6, schedule="cosine"):
    """(niter,) learning rates for t = 0 .. niter - 1 (official `global_alignment_iter`): optax's
    cosine decay lr_min + (lr - lr_min) (1 + cos(pi t / niter)) / 2, or linear lr -> lr_min.

    Evaluated in float64 and rounded once, as the official lr is a Python float: in float32,
    cos(pi t / niter) near t = niter loses the last iterations' lr to 7e-5 relative."""
    if schedule == "cosine":
        decay = optax.cosine_decay_schedule(lr - lr_min, max(niter, 1))
        fn = lambda t: lr_min + decay(t)
    elif schedule == "linear":
        fn = optax.linear_schedule(lr, lr_min, max(niter, 1))
    else:
        raise InputError(f"schedule must be 'cosine' or 'linear', found {schedule!r}")
    with jax.enable_x64(True):
        return np.asarray(fn(np.arange(niter, dtype=np.float64)), np.float32)


def _adam():
    # eps_root keeps the backward pass finite where a gradient is exactly 0 (frozen entries,
    # zero-weight pixels): d sqrt(v)/dv is infinite at v = 0. 1e-30 is far below any v of a
    # moving parameter (g^2 ~ 1e-16 or more), so the forward values are the official ones.
    return optax.scale_by_adam(b1=0.9, b2=0.9, eps=1e-8, eps_root=1e-30)


def _step(layout, prepared, trainable, carry, lr):
    params, opt_state = carry
    value, grads = jax.value_and_grad(objective.loss)(params, prepared, layout)
    grads = jax.tree.map(lambda g, m: g * m, grads, trainable)
    updates, opt_state = _adam().update(grads, opt_state)
    params = jax.tree.map(lambda p, u, m: p - lr * u * m, params, updates, trainable)
    return (params, opt_state), value


def align_arrays(data, params, layout, lrs, trainable):
    """Pure optimisation: returns (final params, (niter,) loss of every iteration, computed before
    its step). data: `objective.pack_data` output; params: initial parameters (see params.py);
    layout: static `objective.Layout`; lrs: (niter,) learning rates; trainable: pytree like
    params of 0/1 factors (0 = frozen entry). Differentiable and vmap-able."""
    prepared = objective.prepare(layout, data)
    opt_state = _adam().init(params)

    def step(carry, lr):
        return _step(layout, prepared, trainable, carry, lr)
    (params, _), losses = jax.lax.scan(step, (params, opt_state), lrs)
    return params, losses


def _row_pixels(layout):
    """Largest (pairs of one image on one side) x (pixels of that image) of the layout."""
    return max(len(sg.edge_ids[0]) * layout.image_groups[sg.group][0][0] * layout.image_groups[sg.group][0][1]
               for sg in layout.side_groups)


def _alignment_jit(fn, layout_argnum, **jit_kwargs):
    """`jax.jit(fn, **jit_kwargs)`, compiled with YNNPACK fusions off on the CPU backend when the
    layout (argument `layout_argnum`, static) is large enough for that to pay."""
    return xla_cpu.jit_choosing_options(
        fn, lambda *args: _row_pixels(args[layout_argnum]) >= xla_cpu.policy().alignment_min_row_pixels, **jit_kwargs)


_prepare_jit = _alignment_jit(objective.prepare, 0, static_argnums=0)


def _chunk(layout, prepared, trainable, params, opt_state, lrs):
    def step(carry, lr):
        return _step(layout, prepared, trainable, carry, lr)
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), lrs)
    return params, opt_state, losses


_chunk_jit = _alignment_jit(_chunk, 0, static_argnums=0, donate_argnums=(3, 4))


def run(data, params, layout, lrs, trainable, chunk_iters=50, progress=False, callback=None):
    """Optimise with the loop jitted in chunks of `chunk_iters` iterations; the host only updates
    the progress bar (and calls `callback(done, niter)`, if given) between chunks.
    Returns (params, (niter,) NumPy loss history)."""
    niter = len(lrs)
    if niter == 0:
        return params, np.zeros((0,), np.float32)
    prepared = _prepare_jit(layout, data)
    params = jax.tree.map(jnp.array, params)  # own copies: buffers are donated
    opt_state = _adam().init(params)
    chunk = min(chunk_iters, niter)
    # equal chunks where possible so that one compilation serves all
    n_chunks = math.ceil(niter / chunk)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=niter, desc="global alignment")
    history = []
    for c in range(n_chunks):
        lr_chunk = jnp.asarray(lrs[c * chunk:(c + 1) * chunk])
        params, opt_state, losses = _chunk_jit(layout, prepared, trainable, params, opt_state, lr_chunk)
        history.append(losses)
        if bar is not None:
            last = float(meshes.fetch(losses)[-1])
            bar.set_postfix_str(f"lr={float(lr_chunk[-1]):g} loss={last:g}")
            bar.update(len(lr_chunk))
        if callback is not None:
            callback(min((c + 1) * chunk, niter), niter)
    if bar is not None:
        bar.close()
    return params, np.concatenate([meshes.fetch(h) for h in history])


loss_jit = _alignment_jit(lambda params, data, layout: objective.loss(params, objective.prepare(layout, data),
                                                                       layout), 2, static_argnums=2)
grad_jit = _alignment_jit(jax.grad(lambda params, data, layout: objective.loss(params, objective.prepare(layout, data),
                                                                               layout)), 2, static_argnums=2)
