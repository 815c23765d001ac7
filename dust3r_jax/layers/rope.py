"""2-D rotary position embedding (croco's RoPE2D, e.g. 'RoPE100').

For a head of size hd, the first hd/2 features rotate with the token's row, the last hd/2 with its
column. Within each half (size Dh), feature j < Dh/2 pairs with feature j + Dh/2 ("rotate half"),
angle = position * base^(-2j/Dh). Positions are integer patch coordinates; no interpolation.
"""
import jax.numpy as jnp


def _rope_1d(features, positions, base):
    """features: (B, N, heads, Dh); positions: (B, N) integer. Returns the rotated features."""
    dim = features.shape[-1]
    # float32 throughout, as croco builds its cos/sin tables, whatever the compute dtype
    inv_freq = 1.0 / (base ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq          # (B, N, Dh/2)
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]    # (B, N, 1, Dh)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    first, second = jnp.split(features.astype(jnp.float32), 2, axis=-1)
    rotated_half = jnp.concatenate([-second, first], axis=-1)
    return (features.astype(jnp.float32) * cos + rotated_half * sin).astype(features.dtype)


def apply_rope_2d(tokens, positions, base):
    """tokens: (B, N, heads, hd) queries or keys; positions: (B, N, 2) = (row, col) per token."""
    rows_half, cols_half = jnp.split(tokens, 2, axis=-1)
    return jnp.concatenate(
        [_rope_1d(rows_half, positions[..., 0], base), _rope_1d(cols_half, positions[..., 1], base)], axis=-1
    )
