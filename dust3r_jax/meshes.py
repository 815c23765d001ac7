"""Device meshes for reconstruction: one batch axis over every device, on one host or many.

Inference and global alignment shard one axis of their data (pairs of a batch, pair slots of the
alignment) over all devices of a mesh and replicate the rest; `jax.jit` then runs one SPMD program
and inserts the collectives by itself. Multi-host: every process calls the same function with the
same arguments (after `jax.distributed.initialize`); `put_global` lets each process fill only the
shards of its own devices from its full copy, and `fetch` returns the whole result on every process.

    mesh = meshes.data_mesh()                    # all devices (of all processes), axis "batch"
    mesh = meshes.data_mesh(jax.local_devices()[:2])
"""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dust3r_jax.errors import InputError

BATCH_AXIS = "batch"


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh named "batch" over `devices` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise InputError("a mesh needs at least one device")
    return Mesh(np.asarray(devices), (BATCH_AXIS,))


def backend_devices(platform: str | None = None, count: int | None = None) -> list:
    """The first `count` (default: all) devices of `platform` (default: the default backend); a
    platform JAX lacks, or a count above what it sees, is a one-line error."""
    try:
        devices = jax.devices(platform) if platform else jax.devices()
    except RuntimeError:
        devices = []
    if not devices:
        raise InputError(f"--device {platform}: JAX sees no {platform.upper()} (backend: {jax.default_backend()})")
    if count is not None and not 1 <= count <= len(devices):
        raise InputError(f"--devices {count}: JAX sees {len(devices)} {devices[0].platform.upper()} device(s)")
    return devices[:count or len(devices)]


def mesh_size(mesh: Mesh) -> int:
    return int(np.prod(list(mesh.shape.values())))


def sharded_along(mesh: Mesh, axis: int, ndim: int) -> NamedSharding:
    """Sharding of an `ndim` array split along `axis` over all mesh axes (the others replicated)."""
    spec = [None] * ndim
    spec[axis] = tuple(mesh.axis_names)
    return NamedSharding(mesh, P(*spec))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def round_up(count: int, multiple: int) -> int:
    return -(-count // multiple) * multiple


def put_global(value, sharding):
    """`value` (a pytree of arrays, the same full copy on every process) as global arrays;
    `sharding` is one NamedSharding or a function of the leaf's ndim giving one. Each process
    transfers only the shards of its own devices."""
    def one(x):
        sh = sharding(np.ndim(x)) if callable(sharding) else sharding
        if jax.process_count() == 1:
            return jax.device_put(x, sh)
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sh, lambda index: x[index])
    return jax.tree.map(one, value)


def put_batch(value, mesh: Mesh):
    """Every leaf of `value` split along its first axis over all devices of `mesh`."""
    return put_global(value, lambda ndim: sharded_along(mesh, 0, ndim))


def put_replicated(value, mesh: Mesh):
    """Every leaf of `value` replicated on all devices of `mesh`."""
    return put_global(value, replicated(mesh))


def fetch(value):
    """Global arrays (pytree) -> NumPy on every process (replicated arrays read locally, sharded
    ones gathered across processes)."""
    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.tree.map(one, value)
