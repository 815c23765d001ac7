"""The linear head (LinearPts3d): one Linear(D -> C*p*p) on the last decoder tokens, pixel-shuffled."""
import flax.linen as nn
import jax.numpy as jnp

from dust3r_jax.layers.partitioning import named, torch_bias, torch_default


def pixel_shuffle(features, grid_hw, patch_size):
    """features: (B, h*w, C*p*p), token grid row-major -> (B, h*p, w*p, C).

    Output channel c at pixel (p r + i, p s + j) is feature c*p*p + i*p + j of token (r, s),
    i.e. torch's `view(B, C*p*p, h, w)` followed by `pixel_shuffle(p)`.
    """
    batch = features.shape[0]
    rows, cols = grid_hw
    p = patch_size
    channels = features.shape[-1] // (p * p)
    x = features.reshape(batch, rows, cols, channels, p, p)
    x = x.transpose(0, 1, 4, 2, 5, 3)  # (B, rows, i, cols, j, C)
    return x.reshape(batch, rows * p, cols * p, channels)


class LinearHead(nn.Module):
    num_channels: int  # 3 + has_conf
    patch_size: int = 16
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, token_list, image_hw):
        """token_list: [enc_out, dec_1, ..., dec_L] each (B, N, .); image_hw: static (H, W).

        Returns the raw map (B, H, W, num_channels).
        """
        p = self.patch_size
        proj = nn.Dense(
            self.num_channels * p * p,
            kernel_init=named(torch_default, "embed", "head_out"),
            bias_init=named(torch_bias(token_list[-1].shape[-1]), "head_out"),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="proj",
        )
        features = proj(token_list[-1].astype(self.dtype))
        return pixel_shuffle(features, (image_hw[0] // p, image_hw[1] // p), p)
