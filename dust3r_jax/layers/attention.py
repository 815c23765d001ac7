"""Multi-head self- and cross-attention with RoPE on queries and keys (croco's Attention)."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from dust3r_jax.layers.partitioning import named, xavier, zeros
from dust3r_jax.layers.rope import apply_rope_2d


def dense(features, axes, dtype, param_dtype, name, kernel_init=xavier):
    return nn.Dense(
        features,
        kernel_init=named(kernel_init, *axes),
        bias_init=named(zeros, axes[-1]),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


_HALF = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def attention_implementation(dtype, head_dim: int, platform: str) -> str:
    """The attention kernel 'auto' uses for q/k/v of `dtype` and head size `head_dim` on `platform`
    ('cpu', 'cuda', 'rocm', 'tpu'):

    * 'cudnn': `jax.nn.dot_product_attention`'s fused cuDNN flash kernel, for bfloat16/float16 on
      a CUDA GPU of compute capability >= 8.0 with head_dim a multiple of 8 and <= 128 (what the
      kernel takes; the released models have 64);
    * 'xla': `jax.nn.dot_product_attention`'s XLA path (logits and softmax in float32), for other
      half-precision cases;
    * 'matmul': explicit (B, heads, N, hd) batched matmuls, for float32 on every platform: the
      numbers the parity tests pin, and on XLA:CPU the whole attention becomes one fusion, 1.7x
      faster than dot_product_attention's (measured at N=768, 16 heads of 64).
    """
    if jnp.dtype(dtype) not in _HALF:
        return "matmul"
    if platform == "cuda" and head_dim % 8 == 0 and head_dim <= 128 and _cuda_capability() >= (8, 0):
        return "cudnn"
    return "xla"


def _cuda_capability() -> tuple[int, ...]:
    """Compute capability of the first CUDA device, (0,) when JAX has none."""
    try:
        device = jax.devices("cuda")[0]
    except RuntimeError:
        return (0,)
    return tuple(int(part) for part in str(getattr(device, "compute_capability", "0")).split("."))


def _attend(q, k, v, implementation):
    scale = q.shape[-1] ** -0.5
    if implementation == "matmul":
        q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
        weights = jax.nn.softmax((q * scale) @ k.swapaxes(-1, -2), axis=-1)
        return (weights @ v).transpose(0, 2, 1, 3)
    # (B, N, heads, hd) is the layout dot_product_attention and the cuDNN kernel take as they are
    return jax.nn.dot_product_attention(q, k, v, scale=scale, implementation=implementation)


def multi_head_attention(q, k, v, implementation: str = "auto"):
    """q: (B, Nq, heads, hd), k/v: (B, Nk, heads, hd) -> (B, Nq, heads, hd): softmax(q k^T / sqrt(hd)) v.

    implementation: one of model_config.ATTENTION_IMPLEMENTATIONS. 'auto' takes `attention_implementation`'s
    choice for the platform the program is compiled for (`lax.platform_dependent`), so a model
    jitted for the CPU on a GPU machine (inference(..., device='cpu')) never gets the cuDNN kernel.
    """
    if implementation != "auto":
        return _attend(q, k, v, implementation)
    default = attention_implementation(q.dtype, q.shape[-1], "cpu")  # (the same on every non-CUDA platform)
    cuda = attention_implementation(q.dtype, q.shape[-1], "cuda")
    if cuda == default:
        return _attend(q, k, v, default)
    return jax.lax.platform_dependent(
        q, k, v, cuda=functools.partial(_attend, implementation=cuda),
        default=functools.partial(_attend, implementation=default))


class SelfAttention(nn.Module):
    """One qkv projection ([q | k | v] rows, each split into heads), RoPE, attention, proj."""

    num_heads: int
    rope_base: float | None
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    attention: str = "auto"  # model_config.ATTENTION_IMPLEMENTATIONS

    @nn.compact
    def __call__(self, x, positions):
        """x: (B, N, C) tokens; positions: (B, N, 2) integer (row, col)."""
        batch, n_tokens, channels = x.shape
        qkv = dense(3 * channels, ("embed", "heads"), self.dtype, self.param_dtype, "qkv")(x)
        qkv = qkv.reshape(batch, n_tokens, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if self.rope_base is not None:
            q = apply_rope_2d(q, positions, self.rope_base)
            k = apply_rope_2d(k, positions, self.rope_base)
        out = multi_head_attention(q, k, v, self.attention).reshape(batch, n_tokens, channels)
        return dense(channels, ("heads", "embed"), self.dtype, self.param_dtype, "proj")(out)


class CrossAttention(nn.Module):
    """Queries from x, keys/values from the other view's tokens y; separate projq/projk/projv."""

    num_heads: int
    rope_base: float | None
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    attention: str = "auto"  # model_config.ATTENTION_IMPLEMENTATIONS

    @nn.compact
    def __call__(self, query, memory, query_positions, memory_positions):
        """query: (B, Nq, C); memory: (B, Nk, C) (already normalised); positions (B, N, 2)."""
        batch, n_query, channels = query.shape
        n_memory = memory.shape[1]
        head_dim = channels // self.num_heads
        proj = lambda name: dense(channels, ("embed", "heads"), self.dtype, self.param_dtype, name)
        q = proj("projq")(query).reshape(batch, n_query, self.num_heads, head_dim)
        k = proj("projk")(memory).reshape(batch, n_memory, self.num_heads, head_dim)
        v = proj("projv")(memory).reshape(batch, n_memory, self.num_heads, head_dim)
        if self.rope_base is not None:
            q = apply_rope_2d(q, query_positions, self.rope_base)
            k = apply_rope_2d(k, memory_positions, self.rope_base)
        out = multi_head_attention(q, k, v, self.attention).reshape(batch, n_query, channels)
        return dense(channels, ("heads", "embed"), self.dtype, self.param_dtype, "proj")(out)
