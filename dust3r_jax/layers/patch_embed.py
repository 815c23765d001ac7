"""Patch embedding: Conv2d(3 -> E, kernel = stride = patch) and the (row, col) token positions.

Two official variants:
* `PatchEmbedDust3R` (inference, `landscape_only=False`): the image is embedded as given; the token
  grid is (H/p, W/p).
* `ManyAR_PatchEmbed` (training, `landscape_only=True`): the batch array is landscape (W >= H) and
  each image's `true_shape` says whether it is really a portrait stored transposed. Portrait images
  are transposed back before the convolution and get a (W/p, H/p) grid, so the convolution always
  sees the upright image. With `true_shape` traced under jit, both embeddings are computed and
  selected per image (the convolution is a small part of the network).
"""
import flax.linen as nn
import jax.numpy as jnp

from dust3r_jax.layers.partitioning import named, xavier, zeros


def grid_positions(rows: int, cols: int):
    """(rows*cols, 2) int32 (row, col) of each token, row-major (token n = r * cols + c)."""
    r, c = jnp.meshgrid(jnp.arange(rows, dtype=jnp.int32), jnp.arange(cols, dtype=jnp.int32), indexing="ij")
    return jnp.stack([r.ravel(), c.ravel()], axis=-1)


def is_portrait(true_shape):
    """true_shape: (B, 2) (H, W) -> (B,) bool, True where height > width (officially: not W >= H)."""
    return true_shape[:, 1] < true_shape[:, 0]


class PatchEmbed(nn.Module):
    embed_dim: int
    patch_size: int = 16
    many_aspect_ratios: bool = False
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, true_shape):
        """images: (B, H, W, 3) NHWC; true_shape: (B, 2) int (H, W).

        Returns tokens (B, N, E) and positions (B, N, 2) int32, N = H * W / patch^2.
        """
        batch, height, width, _ = images.shape
        p = self.patch_size
        proj = nn.Conv(
            self.embed_dim,
            (p, p),
            strides=(p, p),
            padding="VALID",
            kernel_init=named(xavier, None, None, None, "embed"),
            bias_init=named(zeros, "embed"),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="proj",
        )
        tokens = proj(images).reshape(batch, -1, self.embed_dim)
        positions = jnp.broadcast_to(grid_positions(height // p, width // p), (batch, tokens.shape[1], 2))
        if not self.many_aspect_ratios:
            return tokens, positions
        # portrait images: embed the transposed-back (upright) image on a (W/p, H/p) grid
        upright = jnp.swapaxes(images, 1, 2)
        tokens_upright = proj(upright).reshape(batch, -1, self.embed_dim)
        positions_upright = jnp.broadcast_to(grid_positions(width // p, height // p), positions.shape)
        portrait = is_portrait(true_shape)
        tokens = jnp.where(portrait[:, None, None], tokens_upright, tokens)
        positions = jnp.where(portrait[:, None, None], positions_upright, positions)
        return tokens, positions
