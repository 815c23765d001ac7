"""Initialisers that carry logical axis names, so that training can shard params by rules.

Logical names used by the model (mapped to mesh axes by the training rules table):
  'embed'    model width (residual stream, LayerNorm params, patch-embed output)
  'mlp'      MLP hidden features
  'heads'    attention q/k/v and projection features (all heads side by side)
  'head_out' linear-head output features
  'conv_in', 'conv_out'  convolution channels (DPT head)
  None       spatial kernel dimensions
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch-like defaults, so that weights trained from scratch start where the official ones do:
# croco initialises its Linear layers with xavier-uniform and zero bias; the heads keep PyTorch's
# default (uniform with bound 1/sqrt(fan_in)).
xavier = nn.initializers.xavier_uniform()
torch_default = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
zeros = nn.initializers.zeros_init()
ones = nn.initializers.ones_init()


def named(init, *axes):
    """`init` annotated with the logical axis names of the parameter it creates."""
    return nn.with_logical_partitioning(init, axes)


def torch_bias(fan_in: int):
    """PyTorch's default bias init for Linear/Conv layers: uniform in +-1/sqrt(fan_in)."""
    bound = fan_in ** -0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
