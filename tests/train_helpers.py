"""Shared pieces of the training tests: the tiny config, a few steps on a given mesh."""
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "train_tiny.py"


def tiny_config(**overrides):
    from dust3r_jax.train.config_overrides import load_config

    return load_config(TINY_CONFIG, [f"--config.{k}={v}" for k, v in overrides.items()])


def run_steps(config, mesh_shape, num_steps, devices=None, init_params=None):
    """`num_steps` steps on a mesh -> (per-step losses, final params (numpy), final state,
    initial params (numpy)). init_params: host params to start from (skips the random init)."""
    from dust3r_jax.train import sharding as shd
    from dust3r_jax.train import sources
    from dust3r_jax.data.loader import to_global_arrays
    from dust3r_jax.train.loop import _image_hw, build_model, stack_micro_batches
    from dust3r_jax.losses import criterion_from_string
    from dust3r_jax.train.optimizer import make_optimizer
    from dust3r_jax.train.state import abstract_params_and_shardings, create_train_state
    from dust3r_jax.train.step import batch_shardings, make_train_step

    mesh = shd.make_mesh(mesh_shape, devices)
    rules = tuple(tuple(r) for r in config.mesh.logical_axis_rules)
    model = build_model(config.model)
    source = sources.train_source(config)
    accum = config.optim.accum_iter
    steps_per_epoch = source.num_batches(0) // accum
    abstract, _, _ = abstract_params_and_shardings(model, mesh, rules, _image_hw(config))
    tx, _ = make_optimizer(config.optim, steps_per_epoch, abstract)
    state, shardings, _ = create_train_state(model, tx, mesh, rules, _image_hw(config), config.seed,
                                             pretrained=init_params)
    initial = jax.tree.map(np.array, state.params)  # a copy: the step donates the state
    micro = list(source.host_batches(0))
    template = stack_micro_batches(micro[:accum])
    batch_tree = batch_shardings(template, mesh, leading_axes=1)
    step_fn = make_train_step(model, tx, criterion_from_string(config.train_criterion), shardings, batch_tree, mesh)
    losses = []
    for k in range(num_steps):
        batch = to_global_arrays(stack_micro_batches(micro[k * accum:(k + 1) * accum]), batch_tree, batch_axis=1)
        state, metrics = step_fn(state, batch)
        losses.append(float(metrics["loss"]))
    run_steps.last = {"step_fn": step_fn, "micro": micro, "batch_tree": batch_tree}  # for follow-up checks
    return losses, jax.tree.map(np.asarray, state.params), state, initial


def cli_env(cache_dir=None, devices=1):
    """Environment for a `dust3r-jax` subprocess: CPU, `devices` host devices, shared compile cache."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if cache_dir is not None:  # compiled steps are shared by the subprocesses of one test
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def train_cmd(workdir, *overrides, config=TINY_CONFIG):
    return [sys.executable, "-m", "dust3r_jax.cli", "train", "--config", str(config), "--workdir", str(workdir),
            *[f"--config.{o}" for o in overrides]]


def run_cli(cmd, env, timeout=600):
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def restore_numpy_state(workdir, step):
    """The TrainState saved at `step` under `workdir`, as numpy, whatever devices saved it."""
    import orbax.checkpoint as ocp

    path = (Path(workdir) / "checkpoints" / str(step) / "state").absolute()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with ocp.StandardCheckpointer() as checkpointer:
        metadata = checkpointer.metadata(path)
        tree = getattr(metadata, "item_metadata", metadata)
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
        state = checkpointer.restore(path, target)
    return jax.tree.map(np.asarray, state)
