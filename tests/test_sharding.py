"""The train step on 8 CPU devices: meshes 8x1x1, 2x4x1, 2x2x2 against one device.

Tolerance: losses within rtol 1e-5, params within 1e-6 absolute after three optimiser steps
(measured: 1.2e-7, one float32 ulp at 1.0; one step moves params by up to lr = 5e-4, so a wrong
update would be seen). A relative criterion per array is not used on params: zero-initialised
biases after two Adam steps are ~lr in size, and Adam turns float32 noise in near-zero gradients
into noise of order 1e-8 there.

The default run checks the 2x2x2 mesh (all three axes at once); 8x1x1 and 2x4x1 are `slow`.
"""
import jax
import numpy as np
import pytest

from tests.train_helpers import run_steps, tiny_config

MESHES = [pytest.param((8, 1, 1), marks=pytest.mark.slow), pytest.param((2, 4, 1), marks=pytest.mark.slow),
          (2, 2, 2)]
NUM_STEPS = 3
LOSS_RTOL = 1e-5
PARAM_ATOL = 1e-6
# small and quick to compile: one encoder and one decoder block
TEST_MODEL = {"data.batch_size": 8, "optim.accum_iter": 2, "model.enc_depth": 1, "model.dec_depth": 1}


@pytest.fixture(scope="module")
def config():
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 (virtual) devices: XLA_FLAGS=--xla_force_host_platform_device_count=8")
    return tiny_config(**TEST_MODEL)


@pytest.fixture(scope="module")
def single_device_run(config):
    result = run_steps(config, (1, 1, 1), NUM_STEPS, devices=jax.devices()[:1])
    return result + (dict(run_steps.last),)


@pytest.mark.parametrize("mesh_shape", MESHES, ids=lambda s: "x".join(map(str, s)))
def test_mesh_step_equals_single_device(config, single_device_run, mesh_shape):
    ref_losses, ref_params, _, initial, _ = single_device_run
    losses, params, state, _ = run_steps(config, mesh_shape, NUM_STEPS, init_params=initial)
    np.testing.assert_allclose(losses, ref_losses, rtol=LOSS_RTOL)
    assert losses[-1] != losses[0]  # the params really moved (lr is 0 only at the first step)
    for (path, got), want in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(ref_params)):
        np.testing.assert_allclose(got, want, rtol=0, atol=PARAM_ATOL, err_msg=jax.tree_util.keystr(path))

    mesh = dict(state.params["enc_blocks_0"]["mlp"]["fc1"]["kernel"].sharding.mesh.shape)
    assert tuple(mesh.values()) == mesh_shape
    # params and optimiser moments are really split over fsdp / tensor when those axes exist
    kernel = state.params["enc_blocks_0"]["mlp"]["fc1"]["kernel"]  # (embed, mlp)
    shard = kernel.addressable_shards[0].data.shape
    assert shard == (kernel.shape[0] // mesh_shape[1], kernel.shape[1] // mesh_shape[2])
    mu = jax.tree.leaves(state.opt_state, is_leaf=lambda x: hasattr(x, "mu"))
    assert any(hasattr(m, "mu") and m.mu["enc_blocks_0"]["mlp"]["fc1"]["kernel"].sharding == kernel.sharding for m in mu)


def test_every_param_is_sharded_by_the_rules(config):
    from dust3r_jax.train import sharding as shd
    from dust3r_jax.train.loop import _image_hw, build_model
    from dust3r_jax.train.state import abstract_params_and_shardings

    mesh = shd.make_mesh((2, 2, 2))
    abstract, shardings, logical = abstract_params_and_shardings(
        build_model(config.model), mesh, shd.DEFAULT_RULES, _image_hw(config))
    table = dict(shd.DEFAULT_RULES)
    flat_logical = jax.tree.leaves(logical, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    for leaf, sharding, names in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings), flat_logical):
        for dim, name in enumerate(names):
            axis = table.get(name)
            expected = axis if axis and leaf.shape[dim] % mesh.shape[axis] == 0 else None
            if expected is not None and expected in tuple(sharding.spec)[:dim]:
                expected = None  # a mesh axis is used once per array
            assert (tuple(sharding.spec) + (None,) * leaf.ndim)[dim] == expected, (names, sharding.spec)


def test_non_finite_batch_is_skipped_and_reported(config, single_device_run):
    """NaN ground truth in a valid pixel: the step reports loss NaN / finite=False and leaves the
    params and optimiser state as they were (the loop then stops with NonFiniteLossError)."""
    from dust3r_jax.data.loader import to_global_arrays
    from dust3r_jax.train.loop import stack_micro_batches

    _, _, state, _, last = single_device_run
    host = stack_micro_batches(last["micro"][:config.optim.accum_iter])
    view = host["view1"]
    row, y, x = np.argwhere(view["valid_mask"][0])[0]
    view["pts3d"][0, row, y, x] = np.nan
    batch = to_global_arrays(host, last["batch_tree"], batch_axis=1)
    before = jax.tree.map(np.array, (state.params, state.opt_state))
    new_state, metrics = last["step_fn"](state, batch)
    assert not bool(metrics["finite"]) and not np.isfinite(float(metrics["loss"]))
    for a, b in zip(jax.tree.leaves((new_state.params, new_state.opt_state)), jax.tree.leaves(before)):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert int(new_state.step) == NUM_STEPS + 1
