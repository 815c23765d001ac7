"""The jitted train and eval steps.

A training batch is a pair of view dicts (`view0`, `view1`) as the data loaders yield them, with
only the keys the steps read kept (`STEP_KEYS`), every array stacked to (accum, B, ...) for gradient
accumulation. Like the official `loss_of_one_batch(..., symmetrize_batch=True)`, the step
interleaves the pair into a 2B batch seen in both orders:
    view 1 = (v0_0, v1_0, v0_1, v1_1, ...),  view 2 = (v1_0, v0_0, v1_1, v0_1, ...)
and the model encodes each image once (`symmetrized=True`). The loss is computed in float32
whatever the model's compute dtype.

Gradient accumulation: the official loss of each micro-batch is divided by `accum_iter` and the
gradients add up; here a `lax.scan` over the accum axis does the same (mean of gradients).
A step whose loss or gradients are not finite is skipped (params and optimiser state unchanged, as
the official GradScaler does) and reported in the metrics; the loop stops on a non-finite loss.
"""
import jax
import jax.numpy as jnp
import optax

from dust3r_jax.model import interleave
from dust3r_jax.train import sharding as shd

# The fields of a view that the train and eval steps read, with the rank of each (B, ...) array:
# the model's inputs (img, true_shape) and the criteria's ground truth. Only these go to the
# device; the rest of a collated view (depthmap, camera_intrinsics, strings, idx, rng) stays on
# the host.
STEP_KEYS = {"img": 4, "true_shape": 2, "pts3d": 4, "camera_pose": 3, "valid_mask": 3}


def symmetrize(view0, view1):
    """The official `make_batch_symmetric`: every pair in both orders, batch 2B."""
    first = jax.tree.map(interleave, view0, view1)
    second = jax.tree.map(interleave, view1, view0)
    return first, second


def _model_input(view):
    return {"img": view["img"], "true_shape": view["true_shape"]}


def make_loss_fn(model, criterion, symmetrized_encoding=True):
    """loss(params, view0, view1) -> (loss, details) on one symmetrised micro-batch."""
    def loss_fn(params, view0, view1):
        gt1, gt2 = symmetrize(view0, view1)
        pred1, pred2 = model.apply({"params": params}, _model_input(gt1), _model_input(gt2),
                                   symmetrized=symmetrized_encoding)
        pred1 = jax.tree.map(lambda x: x.astype(jnp.float32), pred1)
        pred2 = jax.tree.map(lambda x: x.astype(jnp.float32), pred2)
        return criterion(gt1, gt2, pred1, pred2)
    return loss_fn


def batch_shardings(batch, mesh, leading_axes=0):
    """NamedShardings for a batch pytree: the batch dim (after `leading_axes`) over (data, fsdp)."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    def one(x):
        spec = [None] * leading_axes + [shd.BATCH_AXES] + [None] * (x.ndim - leading_axes - 1)
        return NamedSharding(mesh, P(*spec))
    return jax.tree.map(one, batch)


def _apply(tx, state, grads, loss, details):
    """One optimiser update from averaged grads; skipped entirely when loss or grads are not finite
    (the official GradScaler skips optimizer.step() then). Returns (state, metrics)."""
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = state.replace(
        step=state.step + 1,
        params=keep(new_params, state.params),
        opt_state=keep(new_opt_state, state.opt_state),
        rng=jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)),
    )
    return new_state, {"loss": loss, "grad_norm": grad_norm, "finite": finite, **details}


def make_train_step(model, tx, criterion, state_shardings, batch_sharding_tree, mesh,
                    symmetrized_encoding=True):
    """jitted `step(state, batch) -> (state, metrics)`; `state` is donated.

    batch: {'view0': {...}, 'view1': {...}} with arrays (accum, B, ...). metrics: replicated
    scalars `loss`, `grad_norm`, `finite`, `lr` and the criterion's details (means over accum).
    """
    loss_fn = make_loss_fn(model, criterion, symmetrized_encoding)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state, batch):
        accum = jax.tree.leaves(batch)[0].shape[0]

        def micro(grads_sum, micro_batch):
            (loss, details), grads = grad_fn(state.params, micro_batch["view0"], micro_batch["view1"])
            return jax.tree.map(jnp.add, grads_sum, grads), (loss, details)

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        grads, (losses, details) = jax.lax.scan(micro, zeros, batch)
        grads = jax.tree.map(lambda g: g / accum, grads)
        return _apply(tx, state, grads, jnp.mean(losses), {k: jnp.mean(v) for k, v in details.items()})

    replicated = shd.replicated(mesh)
    return jax.jit(step, in_shardings=(state_shardings, batch_sharding_tree),
                   out_shardings=(state_shardings, replicated), donate_argnums=(0,))


def make_split_accumulation(model, tx, criterion, state_shardings, micro_sharding_tree, mesh,
                            symmetrized_encoding=True):
    """(grad_fn, apply_fn) for steps whose micro-batches differ in shape (aspect ratios).

    The official sampler draws one aspect ratio per micro-batch, so the `accum_iter` micro-batches
    of a step may differ in shape and cannot be stacked. Then:
        grads_sum, metrics = grad_fn(params, micro, grads_sum)   # once per micro-batch
        state, metrics = apply_fn(state, grads_sum, losses, details)
    compute the same update as `make_train_step` (same summation order), at the cost of one
    compiled `grad_fn` per shape instead of one step per combination of shapes.
    """
    loss_fn = make_loss_fn(model, criterion, symmetrized_encoding)
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)
    replicated = shd.replicated(mesh)

    def grad_fn(params, micro, grads_sum):
        (loss, details), grads = value_and_grad(params, micro["view0"], micro["view1"])
        return jax.tree.map(jnp.add, grads_sum, grads), {"loss": loss, **details}

    def apply_fn(state, grads_sum, micro_metrics):
        accum = len(micro_metrics)
        grads = jax.tree.map(lambda g: g / accum, grads_sum)
        loss = jnp.mean(jnp.stack([m["loss"] for m in micro_metrics]))
        details = {k: jnp.mean(jnp.stack([m[k] for m in micro_metrics])) for k in micro_metrics[0] if k != "loss"}
        return _apply(tx, state, grads, loss, details)

    grad_jit = jax.jit(grad_fn, in_shardings=(state_shardings.params, micro_sharding_tree, state_shardings.params),
                       out_shardings=(state_shardings.params, replicated), donate_argnums=(2,))
    apply_jit = jax.jit(apply_fn, in_shardings=(state_shardings, state_shardings.params, replicated),
                        out_shardings=(state_shardings, replicated), donate_argnums=(0, 1))
    return grad_jit, apply_jit


def make_eval_step(model, criterion, param_shardings, batch_sharding_tree, mesh, symmetrized_encoding=True):
    """jitted `eval_step(params, batch) -> metrics` with the test criterion; batch arrays (B, ...).

    metrics: `loss` (mean over the batch as the official criterion reduces it) and its details.
    """
    loss_fn = make_loss_fn(model, criterion, symmetrized_encoding)

    def eval_step(params, batch):
        loss, details = loss_fn(params, batch["view0"], batch["view1"])
        return {"loss": loss, **details}

    return jax.jit(eval_step, in_shardings=(param_shardings, batch_sharding_tree),
                   out_shardings=shd.replicated(mesh))
