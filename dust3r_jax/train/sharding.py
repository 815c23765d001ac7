"""One device mesh with named axes (`data`, `fsdp`, `tensor`) and the logical-axis rules table.

The model names every parameter dimension with a logical axis (`dust3r_jax.layers.partitioning`);
the rules below say which mesh axis each logical name is split over:

  embed    -> fsdp     model width: params and optimiser moments sharded FSDP-style
  mlp      -> tensor   MLP hidden features (Megatron-style tensor parallelism)
  heads    -> tensor   q/k/v and attention-projection features
  head_out -> tensor   linear-head output features
  conv_out -> tensor   DPT / patch-embed conv output channels
  conv_in  -> fsdp     conv input channels
  None     -> replicated (spatial kernel dimensions)

A dimension is only split when its size is divisible by the mesh axis size, and a mesh axis is
used at most once per array; otherwise that dimension stays replicated (small heads, odd sizes).
Param and optimiser-state shardings both come from `logical_shardings` of the boxed abstract
values (flax's logical-partitioning helpers, as flax's lm1b example derives them).
The batch is split over (`data`, `fsdp`): FSDP is data parallel for activations.
"""
import flax.linen as nn
import jax
import numpy as np

from dust3r_jax.errors import ConfigError
from dust3r_jax.meshes import replicated  # noqa: F401 (one definition; train code reads shd.replicated)

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

DEFAULT_RULES = (
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("head_out", "tensor"),
    ("conv_out", "tensor"),
    ("conv_in", "fsdp"),
)


def make_mesh(shape, devices=None):
    """Mesh of `shape` = (data, fsdp, tensor) over `devices` (default: all global devices).

    One entry may be -1: it takes whatever device count is left.
    """
    devices = jax.devices() if devices is None else list(devices)
    shape = list(shape)
    if len(shape) != len(MESH_AXES):
        raise ConfigError(f"mesh shape {tuple(shape)}: expected 3 sizes for {MESH_AXES}")
    # (a --config.mesh.shape=abc override arrives as ('a', 'b', 'c'))
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and (s >= 1 or s == -1) for s in shape):
        raise ConfigError(f"mesh shape {tuple(shape)}: sizes must be integers >= 1 (or one -1)")
    if shape.count(-1) > 1:
        raise ConfigError(f"mesh shape {tuple(shape)}: at most one -1")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1]))
        shape[shape.index(-1)] = len(devices) // known
    if int(np.prod(shape)) != len(devices):
        raise ConfigError(f"mesh shape {tuple(shape)} needs {int(np.prod(shape))} devices, "
                         f"{len(devices)} are available")
    return jax.make_mesh(tuple(shape), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3,
                         devices=devices)


def rules_dict(rules):
    """Rules as {logical name: mesh axis or None}, from a table of (name, axis) pairs."""
    out = {}
    for name, axis in rules:
        if axis is not None and axis not in MESH_AXES:
            raise ValueError(f"logical axis rule {name!r} -> {axis!r}: mesh axes are {MESH_AXES}")
        out[name] = axis
    return out


def logical_shardings(abstract_tree, mesh, rules):
    """NamedShardings for every leaf of `abstract_tree` (e.g. `jax.eval_shape` of a model's init
    or of `tx.init` on its params): `nn.LogicallyPartitioned` boxes by their logical names through
    flax's `logical_to_mesh_sharding`, plain leaves replicated.

    Before that, a dim keeps no name when its mesh axis is of size 1, does not divide its size (jit
    refuses uneven shards) or was taken by an earlier dim of the array (('embed', 'embed')
    kernels): flax maps names without looking at shapes and refuses repeated names."""
    table = rules_dict(rules)

    def shardable(box):
        used, names = set(), []
        for size, name in zip(box.value.shape, box.names):
            axis = table.get(name)
            if axis is None or axis in used or mesh.shape[axis] == 1 or size % mesh.shape[axis]:
                name = None
            else:
                used.add(axis)
            names.append(name)
        return box.replace(names=tuple(names))

    abstract_tree = jax.tree.map(lambda x: shardable(x) if isinstance(x, nn.LogicallyPartitioned) else x,
                                 abstract_tree, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    return nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract_tree), mesh, rules)

