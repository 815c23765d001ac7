"""The train state and its sharded initialisation.

`TrainState` holds everything exact resume needs on device: the optimiser step count, fp32
params, optimiser state, and an RNG key (raw uint32 key data, so that orbax stores it as an array).
Shardings come from the model's logical axis names through the rules table (`sharding.py`):
the state is built with `jax.eval_shape` first, its shardings derived, then materialised by a
`jax.jit` whose `out_shardings` put every shard directly where it lives.
"""
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dust3r_jax.errors import CheckpointError
from dust3r_jax.train import sharding as shd


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # () int32: optimiser steps taken
    params: Any              # fp32 model params
    opt_state: Any           # optax state (moments sharded like their params)
    rng: jax.Array           # (2,) uint32 raw key, advanced once per step


def _path_names(path):
    return tuple(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _sample_views(model_config, batch, height, width):
    view = {"img": jnp.zeros((batch, height, width, 3), jnp.float32),
            "true_shape": jnp.tile(jnp.array([[height, width]], jnp.int32), (batch, 1))}
    return view, dict(view)


def _boxed_abstract_params(model, image_hw, batch=2):
    """`jax.eval_shape` of the model's init: params as `nn.LogicallyPartitioned` boxes of shapes."""
    view1, view2 = _sample_views(model.config, batch, *image_hw)
    return jax.eval_shape(lambda key: model.init(key, view1, view2)["params"], jax.random.key(0))


def abstract_params_and_shardings(model, mesh, rules, image_hw, batch=2):
    """(abstract fp32 params, their NamedShardings, logical specs) without allocating anything."""
    boxed = _boxed_abstract_params(model, image_hw, batch)
    return nn.meta.unbox(boxed), shd.logical_shardings(boxed, mesh, rules), nn.get_partition_spec(boxed)


def merge_pretrained(params, pretrained, param_shardings, source):
    """Official non-strict load: every model parameter found in `pretrained` (same path) replaces
    the random one; the others stay random (e.g. the DPT head when starting from a linear model).

    params: a callable returning the sharded random params (only called when some parameter is
    missing from `pretrained`); pretrained: host param tree. A parameter present in both with
    another shape raises CheckpointError naming it. Returns (params, report dict).
    """
    loaded = {"/".join(_path_names(p)): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(pretrained)[0]}
    wanted = {"/".join(_path_names(p)): (leaf, s) for (p, leaf), s in
              zip(jax.tree_util.tree_flatten_with_path(param_shardings[0])[0], jax.tree.leaves(param_shardings[1]))}
    missing = sorted(set(wanted) - set(loaded))
    used = sorted(set(wanted) & set(loaded))
    if not used:
        raise CheckpointError(f"{source}: none of its parameters fits the configured model")
    random_params = params() if missing else None
    random_leaves = ({"/".join(_path_names(p)): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(random_params)[0]}
                     if missing else {})

    def one(path, abstract_leaf, sharding):
        key = "/".join(_path_names(path))
        if key not in loaded:
            return random_leaves[key]
        value = np.asarray(loaded[key])
        if value.shape != abstract_leaf.shape:
            raise CheckpointError(f"{source}: parameter {key!r} has shape {value.shape}, "
                                  f"model needs {tuple(abstract_leaf.shape)}")
        return jax.device_put(value.astype(abstract_leaf.dtype), sharding)

    merged = jax.tree_util.tree_map_with_path(one, param_shardings[0], param_shardings[1])
    return merged, {"loaded": len(used), "missing": missing, "unexpected": sorted(set(loaded) - set(wanted))}


def create_train_state(model, tx, mesh, rules, image_hw, seed, pretrained=None, pretrained_source="init"):
    """Sharded `TrainState`, its shardings (a TrainState of NamedShardings), and a load report.

    Params are initialised randomly from `seed`; `pretrained` (a host param tree, e.g. from
    `dust3r_jax.load_model`) then replaces every parameter it has (see `merge_pretrained`).
    """
    boxed = _boxed_abstract_params(model, image_hw)
    abstract, param_shardings = nn.meta.unbox(boxed), shd.logical_shardings(boxed, mesh, rules)
    view1, view2 = _sample_views(model.config, 2, *image_hw)

    def init(key):
        return nn.meta.unbox(model.init(key, view1, view2)["params"])

    def random_params():
        return jax.jit(init, out_shardings=param_shardings)(jax.random.key(seed))

    report = None
    if pretrained is None:
        params = random_params()
    else:
        params, report = merge_pretrained(random_params, pretrained, (abstract, param_shardings), pretrained_source)
    # optax builds its moments with tree maps over the params: on boxed params they keep the boxes,
    # so every moment is sharded like its parameter and counts are replicated
    opt_shardings = shd.logical_shardings(jax.eval_shape(tx.init, boxed), mesh, rules)
    opt_state = jax.jit(tx.init, in_shardings=(param_shardings,), out_shardings=opt_shardings)(params)
    replicated = shd.replicated(mesh)
    shardings = TrainState(step=replicated, params=param_shardings, opt_state=opt_shardings, rng=replicated)
    rng = jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1))
    state = TrainState(step=jax.device_put(jnp.zeros((), jnp.int32), replicated), params=params,
                       opt_state=opt_state, rng=jax.device_put(rng, replicated))
    return state, shardings, report


def abstract_state(state):
    """ShapeDtypeStructs (with shardings) of a state: the restore target for orbax."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
