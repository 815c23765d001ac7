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
The batch is split over (`data`, `fsdp`): FSDP is data parallel for activations.
"""
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

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
        raise ValueError(f"mesh shape {tuple(shape)}: expected 3 sizes for {MESH_AXES}")
    if shape.count(-1) > 1:
        raise ValueError(f"mesh shape {tuple(shape)}: at most one -1")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1]))
        shape[shape.index(-1)] = len(devices) // known
    if int(np.prod(shape)) != len(devices):
        raise ValueError(f"mesh shape {tuple(shape)} needs {int(np.prod(shape))} devices, "
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


def mesh_spec(logical_spec, shape, mesh, rules):
    """Logical PartitionSpec (names per dim) + array shape -> mesh PartitionSpec.

    Dims whose size the mesh axis does not divide, or whose mesh axis is already used by an earlier
    dim of the same array, stay replicated.
    """
    table = rules_dict(rules)
    used, out = set(), []
    for dim, name in enumerate(tuple(logical_spec) + (None,) * (len(shape) - len(logical_spec))):
        axis = table.get(name) if name is not None else None
        if axis is None or axis in used or mesh.shape[axis] == 1 or shape[dim] % mesh.shape[axis]:
            out.append(None)
            continue
        used.add(axis)
        out.append(axis)
    return P(*out)


def logical_specs(boxed_tree):
    """Logical PartitionSpecs of a tree of `nn.LogicallyPartitioned` boxes (P() for plain leaves)."""
    import flax.linen as nn

    return nn.get_partition_spec(boxed_tree)


def tree_shardings(abstract_tree, logical_spec_tree, mesh, rules):
    """NamedShardings for every leaf of `abstract_tree` given its logical specs (same structure)."""
    def one(leaf, spec):
        return NamedSharding(mesh, mesh_spec(spec if spec is not None else P(), leaf.shape, mesh, rules))

    return jax.tree.map(one, abstract_tree, logical_spec_tree,
                        is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh, ndim):
    """Sharding of a batch array of rank `ndim`: leading dim over (data, fsdp), rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh):
    return NamedSharding(mesh, P())
