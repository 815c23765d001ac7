"""Transformer blocks: the ViT encoder block and the cross-view decoder block of croco."""
import flax.linen as nn
import jax.numpy as jnp

from dust3r_jax.layers.attention import CrossAttention, SelfAttention, dense
from dust3r_jax.layers.partitioning import named, ones, zeros


def layer_norm(name, dtype=jnp.float32, param_dtype=jnp.float32):
    """LayerNorm with eps 1e-6 and the two-pass variance (torch's), not E[x^2] - E[x]^2."""
    return nn.LayerNorm(
        epsilon=1e-6,
        use_fast_variance=False,
        scale_init=named(ones, "embed"),
        bias_init=named(zeros, "embed"),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


class Mlp(nn.Module):
    """Linear(C -> hidden), exact (erf) GELU, Linear(hidden -> C)."""

    hidden: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        x = dense(self.hidden, ("embed", "mlp"), self.dtype, self.param_dtype, "fc1")(x)
        x = nn.gelu(x, approximate=False)
        return dense(channels, ("mlp", "embed"), self.dtype, self.param_dtype, "fc2")(x)


class EncoderBlock(nn.Module):
    """x = x + SA(norm1(x)); x = x + MLP(norm2(x))."""

    num_heads: int
    mlp_ratio: float
    rope_base: float | None
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    attention: str = "auto"  # model_config.ATTENTION_IMPLEMENTATIONS

    @nn.compact
    def __call__(self, x, positions):
        """x: (B, N, C); positions: (B, N, 2)."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        attn_kw = dict(kw, attention=self.attention)
        x = x + SelfAttention(self.num_heads, self.rope_base, name="attn", **attn_kw)(layer_norm("norm1", **kw)(x), positions)
        hidden = int(x.shape[-1] * self.mlp_ratio)
        return x + Mlp(hidden, name="mlp", **kw)(layer_norm("norm2", **kw)(x))


class DecoderBlock(nn.Module):
    """Self-attention, cross-attention to the other view (normalised by its own norm_y), MLP."""

    num_heads: int
    mlp_ratio: float
    rope_base: float | None
    norm_memory: bool = True
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    attention: str = "auto"  # model_config.ATTENTION_IMPLEMENTATIONS

    @nn.compact
    def __call__(self, x, y, x_positions, y_positions):
        """x: (B, Nx, D) own tokens; y: (B, Ny, D) other view's tokens. Returns the new x."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        attn_kw = dict(kw, attention=self.attention)
        x = x + SelfAttention(self.num_heads, self.rope_base, name="attn", **attn_kw)(layer_norm("norm1", **kw)(x), x_positions)
        memory = layer_norm("norm_y", **kw)(y) if self.norm_memory else y
        x = x + CrossAttention(self.num_heads, self.rope_base, name="cross_attn", **attn_kw)(
            layer_norm("norm2", **kw)(x), memory, x_positions, y_positions
        )
        hidden = int(x.shape[-1] * self.mlp_ratio)
        return x + Mlp(hidden, name="mlp", **kw)(layer_norm("norm3", **kw)(x))
