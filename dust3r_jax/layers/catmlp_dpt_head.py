"""MASt3R's catmlp+dpt head (mast3r/catmlp_dpt_head.py, Cat_MLP_LocalFeatures_DPT_Pts3d).

Two parts on the same token list [enc_out, dec_1, ..., dec_norm(dec_L)]:
  dpt                  DUSt3R's DPT head (`DPTAdapter`): xyz + confidence, 4 channels
  head_local_features  an MLP (Linear E+D -> 4(E+D), exact GELU, Linear -> (desc_dim + two_confs) p^2)
                       on the concatenation [enc_out, dec_norm(dec_L)] per token, pixel-shuffled to
                       desc_dim descriptor channels, then (two_confs) one descriptor-confidence channel.
The raw output is their concatenation (B, H, W, 4 + desc_dim [+ 1]); `layers.postprocess` turns it
into pts3d, conf, desc and desc_conf.
"""
import flax.linen as nn
import jax.numpy as jnp

from dust3r_jax.layers.attention import dense
from dust3r_jax.layers.dpt_head import DPTAdapter
from dust3r_jax.layers.linear_head import pixel_shuffle


class LocalFeaturesMlp(nn.Module):
    """croco's Mlp with its own output width: fc1 (C -> hidden), exact GELU, fc2 (hidden -> out)."""

    hidden: int
    out_features: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = dense(self.hidden, ("embed", "mlp"), self.dtype, self.param_dtype, "fc1")(x)
        x = nn.gelu(x, approximate=False)
        return dense(self.out_features, ("mlp", "head_out"), self.dtype, self.param_dtype, "fc2")(x)


class CatMLPDPTHead(nn.Module):
    """downstream_head{1,2} of MASt3R: 'dpt' and 'head_local_features' as in the official module."""

    num_channels: int       # of the DPT part: 3 + has_conf
    hooks: tuple
    desc_dim: int           # 24 in the released model
    two_confs: bool
    patch_size: int = 16
    hidden_factor: float = 4.0
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    record: bool = True

    @nn.compact
    def __call__(self, token_list, image_hw):
        """token_list: [enc_out (B,N,E), dec_1 .. dec_L (B,N,D)]; image_hw: static (H, W).

        Returns the raw map (B, H, W, num_channels + desc_dim + two_confs)."""
        pts = DPTAdapter(self.num_channels, self.hooks, self.patch_size, self.dtype, self.param_dtype,
                         self.record, name="dpt")(token_list, image_hw)
        cat = jnp.concatenate([token_list[0], token_list[-1]], axis=-1).astype(self.dtype)
        p = self.patch_size
        width = cat.shape[-1]
        mlp = LocalFeaturesMlp(int(self.hidden_factor * width), (self.desc_dim + self.two_confs) * p * p,
                               self.dtype, self.param_dtype, name="head_local_features")
        local = pixel_shuffle(mlp(cat), (image_hw[0] // p, image_hw[1] // p), p)
        return jnp.concatenate([pts, local.astype(pts.dtype)], axis=-1)
