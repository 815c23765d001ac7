"""Analytic FLOP count of one DUSt3R pair forward, layer by layer, from the model config.

Method: every matrix product and convolution counts 2 FLOPs per multiply-add (2 M N K), the
convention of model FLOPs utilisation (MFU) and of XLA's `cost_analysis()['flops']` for dots and
convolutions (like XLA, taps on a convolution's zero padding are not counted); element-wise work (LayerNorm, GELU, softmax, RoPE, residual adds, bilinear
upsampling, the output post-processing) is left out: it is a few percent at the real widths and
is memory-bound, not a use of the matrix units. tests/test_flops.py checks the count against XLA's
cost analysis of the compiled forward on small configs.

One pair = two images of (H, W): patch embedding and encoder on both images, decoder_embed, the
two decoders (self-attention, cross-attention to the other view, MLP), the two heads. With
`symmetrized` batches or cached encodings (`dust3r_jax.inference`) the encoder runs once per
image, not per pair: `pair_flops(..., encoder=False)` counts the rest and `encoder_flops` it.
"""
import dataclasses

from dust3r_jax.layers.dpt_head import FEATURE_DIM, LAST_DIM, LAYER_DIMS
from dust3r_jax.model_config import dpt_hooks


def _dense(tokens, d_in, d_out):
    return 2 * tokens * d_in * d_out


def _conv(out_h, out_w, c_in, c_out, kernel):
    return 2 * out_h * out_w * c_in * c_out * kernel * kernel


def _taps(n_in, stride):
    """Kernel taps of a 3-wide, zero-padded-by-1 convolution that fall inside n_in, summed over
    its outputs along one axis."""
    n_out = (n_in - 1) // stride + 1
    return sum(sum(0 <= stride * o + t < n_in for t in (-1, 0, 1)) for o in range(n_out))


def _conv3x3(in_h, in_w, c_in, c_out, stride=1):
    """3x3 convolution, padding 1: only taps on the image count (XLA's cost analysis does the
    same; at 512x384 the padded taps would add 1% to the DPT head)."""
    return 2 * _taps(in_h, stride) * _taps(in_w, stride) * c_in * c_out


def _attention(n_q, n_k, dim):
    """q k^T and weights v over all heads: 2 (n_q n_k dim) each."""
    return 2 * 2 * n_q * n_k * dim


@dataclasses.dataclass(frozen=True)
class Flops:
    """FLOPs of one pair by part (see the module docstring for what is counted)."""
    patch_embed: int
    encoder: int
    decoder: int
    heads: int

    @property
    def total(self):
        return self.patch_embed + self.encoder + self.decoder + self.heads


def encoder_flops(config, image_hw):
    """Patch embedding + encoder blocks of ONE image of (H, W): (patch_embed, blocks)."""
    p, E = config.patch_size, config.enc_embed_dim
    n = (image_hw[0] // p) * (image_hw[1] // p)
    mlp = int(E * config.mlp_ratio)
    embed = _dense(n, 3 * p * p, E)
    block = _dense(n, E, 3 * E) + _attention(n, n, E) + _dense(n, E, E) + _dense(n, E, mlp) + _dense(n, mlp, E)
    return embed, config.enc_depth * block


def decoder_flops(config, image_hw):
    """decoder_embed + one decoder (self-attention, cross-attention, MLP) for ONE view."""
    p, E, D = config.patch_size, config.enc_embed_dim, config.dec_embed_dim
    n = (image_hw[0] // p) * (image_hw[1] // p)
    mlp = int(D * config.mlp_ratio)
    self_attn = _dense(n, D, 3 * D) + _attention(n, n, D) + _dense(n, D, D)
    cross_attn = 3 * _dense(n, D, D) + _attention(n, n, D) + _dense(n, D, D)  # projq/k/v, proj
    block = self_attn + cross_attn + _dense(n, D, mlp) + _dense(n, mlp, D)
    return _dense(n, E, D) + config.dec_depth * block


def head_flops(config, image_hw):
    """One downstream head for ONE view of (H, W) (linear or DPT)."""
    p = config.patch_size
    h, w = image_hw[0] // p, image_hw[1] // p
    channels = 3 + (config.conf_mode is not None)
    if config.head_type == "linear":
        return _dense(h * w, config.dec_embed_dim, channels * p * p)
    if config.head_type != "dpt":
        raise NotImplementedError(f"FLOP count of head_type {config.head_type!r}")
    widths = [config.enc_embed_dim if hook == 0 else config.dec_embed_dim for hook in dpt_hooks(config)]
    total = 0
    # act_postprocess: 1x1 convs, then ConvTranspose 4x4/4, 2x2/2, -, conv 3x3/2 (pad 1)
    sizes = [(4 * h, 4 * w), (2 * h, 2 * w), (h, w), ((h + 1) // 2, (w + 1) // 2)]
    for k, (c_in, dim) in enumerate(zip(widths, LAYER_DIMS)):
        total += _conv(h, w, c_in, dim, 1)
        if k in (0, 1):
            total += _conv(sizes[k][0], sizes[k][1], dim, dim, 1)  # each input pixel writes k x k outputs
        elif k == 3:
            total += _conv3x3(h, w, dim, dim, stride=2)
        total += _conv3x3(*sizes[k], dim, FEATURE_DIM)  # layer{k}_rn
    # refinenets: two residual units (3x3, 3x3) each, except refinenet4 (one); out_conv 1x1 after x2
    rcu = lambda hh, ww: 2 * _conv3x3(hh, ww, FEATURE_DIM, FEATURE_DIM)
    hh, ww = sizes[3]
    total += rcu(hh, ww) + _conv(2 * hh, 2 * ww, FEATURE_DIM, FEATURE_DIM, 1)
    for level in (2, 1, 0):
        hh, ww = sizes[level]
        total += 2 * rcu(hh, ww) + _conv(2 * hh, 2 * ww, FEATURE_DIM, FEATURE_DIM, 1)
    # output head at 8h x 8w -> 16h x 16w: conv3x3 256->128, x2, conv3x3 128->128, conv1x1 128->C
    hh, ww = 2 * sizes[0][0], 2 * sizes[0][1]
    total += _conv3x3(hh, ww, FEATURE_DIM, FEATURE_DIM // 2)
    total += _conv3x3(2 * hh, 2 * ww, FEATURE_DIM // 2, LAST_DIM) + _conv(2 * hh, 2 * ww, LAST_DIM, channels, 1)
    return total


def pair_flops(config, image_hw, encoder=True):
    """`Flops` of one pair forward of two (H, W) images; encoder=False: encodings given."""
    embed, blocks = encoder_flops(config, image_hw)
    n_enc = 2 if encoder else 0
    return Flops(patch_embed=n_enc * embed, encoder=n_enc * blocks, decoder=2 * decoder_flops(config, image_hw),
                 heads=2 * head_flops(config, image_hw))
