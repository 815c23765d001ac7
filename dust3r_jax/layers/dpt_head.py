"""The DPT head of DUSt3R (croco's DPTOutputAdapter_fix inside PixelwiseTaskWithDPT).

Fixed widths whatever the trunk: act_postprocess to 96/192/384/768 channels, 256 fusion features,
128 in the output head (about 19.4M parameters per head). Inputs are four hooked token maps
(hook 0 is the encoder output of width E, the others decoder outputs of width D), each reshaped to
the (h, w) = (H/16, W/16) token grid:
  #0 1x1 conv -> 96,  ConvTranspose 4x4/4 -> (4h, 4w)
  #1 1x1 conv -> 192, ConvTranspose 2x2/2 -> (2h, 2w)
  #2 1x1 conv -> 384                     -> (h, w)
  #3 1x1 conv -> 768, conv 3x3/2 pad 1   -> (ceil(h/2), ceil(w/2))
then layer{k}_rn (3x3, no bias) -> 256, and fusion refinenet4 -> 3 -> 2 -> 1 (each: optional
residual unit on the skip input, a residual unit, bilinear x2 with align_corners=True, 1x1 conv).
refinenet4's output is cropped to (h, w) before fusion (matters for odd grids). Output head:
conv3x3 256->128, bilinear x2, conv3x3 128->128, ReLU, conv1x1 128->4, at full resolution.
Intermediates are sown under 'intermediates' for parity tests (free unless requested).
"""
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from dust3r_jax.layers.partitioning import named, torch_bias, torch_default

LAYER_DIMS = (96, 192, 384, 768)
FEATURE_DIM = 256
LAST_DIM = FEATURE_DIM // 2


def conv(features, kernel, fan_in, name, stride=1, padding=0, use_bias=True, dtype=jnp.float32, param_dtype=jnp.float32):
    """A Conv2d with PyTorch's default init and symmetric zero padding, NHWC."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        use_bias=use_bias,
        kernel_init=named(torch_default, None, None, "conv_in", "conv_out"),
        bias_init=named(torch_bias(fan_in * kernel * kernel), "conv_out"),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


class PatchConvTranspose(nn.Module):
    """ConvTranspose2d whose stride equals its kernel: every input pixel writes its own k x k block.

    kernel param: (k, k, in, out) = torch's (in, out, k, k) transposed (2, 3, 0, 1).
    """

    features: int
    kernel_size: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """x: (B, h, w, C) -> (B, h*k, w*k, features)."""
        k = self.kernel_size
        in_ch = x.shape[-1]
        # torch's fan_in for a transposed conv weight (in, out, k, k) is out * k * k
        fan_in = self.features * k * k
        kernel = self.param(
            "kernel", named(nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform", in_axis=-1, out_axis=-2),
                            None, None, "conv_in", "conv_out"),
            (k, k, in_ch, self.features), self.param_dtype,
        )
        bias = self.param("bias", named(torch_bias(fan_in), "conv_out"), (self.features,), self.param_dtype)
        batch, rows, cols, _ = x.shape
        y = jnp.einsum("bhwc,ijco->bhiwjo", x.astype(self.dtype), kernel.astype(self.dtype))
        return y.reshape(batch, rows * k, cols * k, self.features) + bias.astype(self.dtype)


def _align_corners_taps(n_in: int, n_out: int):
    """Linear interpolation with align_corners=True from n_in to n_out samples, as torch computes it
    in float32: output k reads inputs lo[k] and hi[k] with weights 1 - frac[k] and frac[k]."""
    scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
    src = scale * np.arange(n_out, dtype=np.float32)
    lo = np.floor(src).astype(np.int32)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo.astype(np.float32)).astype(np.float32)
    return lo, hi, frac


def _lerp2x(x, axis):
    """Doubles `axis` of x by linear interpolation (align_corners=True)."""
    lo, hi, frac = _align_corners_taps(x.shape[axis], 2 * x.shape[axis])
    shape = [1] * x.ndim
    shape[axis] = frac.size
    frac = jnp.asarray(frac.reshape(shape), x.dtype)
    return jnp.take(x, lo, axis=axis) * (1 - frac) + jnp.take(x, hi, axis=axis) * frac


def upsample2x_bilinear(x):
    """x: (B, h, w, C) -> (B, 2h, 2w, C), bilinear with align_corners=True.

    Two gathers and a weighted sum per axis: memory-bound, where the equivalent dense
    interpolation matmuls cost ~23 GFLOP per head at 512x384 (on a 2-core CPU 0.34 s against
    0.05 s for the full-resolution upsample)."""
    return _lerp2x(_lerp2x(x, 2), 1)


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x)))), 3x3 convs with bias, no normalisation."""

    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(padding=1, dtype=self.dtype, param_dtype=self.param_dtype)
        out = conv(FEATURE_DIM, 3, FEATURE_DIM, "conv1", **kw)(nn.relu(x))
        out = conv(FEATURE_DIM, 3, FEATURE_DIM, "conv2", **kw)(nn.relu(out))
        return out + x


class FeatureFusion(nn.Module):
    """refinenet{k}: out = x (+ RCU1(skip)); RCU2; bilinear x2 (align_corners); 1x1 out_conv."""

    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, skip=None):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        residual_skip = ResidualConvUnit(name="resConfUnit1", **kw)
        if skip is not None:
            x = x + residual_skip(skip)
        elif self.is_initializing():
            # refinenet4 owns resConfUnit1 weights that the official forward never uses; create
            # them so official checkpoints map one to one and parameter counts agree.
            residual_skip(x)
        x = ResidualConvUnit(name="resConfUnit2", **kw)(x)
        x = upsample2x_bilinear(x)
        return conv(FEATURE_DIM, 1, FEATURE_DIM, "out_conv", **kw)(x)


class ActPostprocess(nn.Module):
    """Hook k's token map to its pyramid level (see module docstring)."""

    level: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        dim = LAYER_DIMS[self.level]
        x = conv(dim, 1, x.shape[-1], "layers_0", **kw)(x)
        if self.level == 0:
            x = PatchConvTranspose(dim, 4, name="layers_1", **kw)(x)
        elif self.level == 1:
            x = PatchConvTranspose(dim, 2, name="layers_1", **kw)(x)
        elif self.level == 3:
            x = conv(dim, 3, dim, "layers_1", stride=2, padding=1, **kw)(x)
        return x


class Scratch(nn.Module):
    """The fusion stage: layer{1..4}_rn projections and refinenet{1..4}."""

    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    record: bool = True  # sow intermediates (off inside control flow, see AsymmetricCroCo3DStereo)

    def sow(self, collection, name, value):
        if self.record:
            super().sow(collection, name, value)

    @nn.compact
    def __call__(self, levels):
        """levels: 4 maps (B, 4h, 4w, 96), (B, 2h, 2w, 192), (B, h, w, 384), (B, h', w', 768).

        Returns the fused map (B, 8h, 8w, 256) (refinenet1 output, half the image resolution).
        """
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        projected = []
        for k, level in enumerate(levels):
            out = conv(FEATURE_DIM, 3, level.shape[-1], f"layer{k + 1}_rn", padding=1, use_bias=False, **kw)(level)
            self.sow("intermediates", f"layer_rn.{k}", out)
            projected.append(out)
        path = FeatureFusion(name="refinenet4", **kw)(projected[3])
        self.sow("intermediates", "refinenet4.out", path)  # before the crop
        path = path[:, : projected[2].shape[1], : projected[2].shape[2]]
        for k in (3, 2, 1):
            path = FeatureFusion(name=f"refinenet{k}", **kw)(path, projected[k - 1])
            self.sow("intermediates", f"refinenet{k}.out", path)
        return path


class OutputHead(nn.Module):
    """conv3x3 256->128, bilinear x2, conv3x3 128->128, ReLU, conv1x1 128->C (Sequential 0..4)."""

    num_channels: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = conv(FEATURE_DIM // 2, 3, FEATURE_DIM, "layers_0", padding=1, **kw)(x)
        x = upsample2x_bilinear(x)
        x = conv(LAST_DIM, 3, FEATURE_DIM // 2, "layers_2", padding=1, **kw)(x)
        x = nn.relu(x)
        return conv(self.num_channels, 1, LAST_DIM, "layers_4", **kw)(x)


class DPTAdapter(nn.Module):
    num_channels: int
    hooks: tuple
    patch_size: int = 16
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    record: bool = True

    def sow(self, collection, name, value):
        if self.record:
            super().sow(collection, name, value)

    @nn.compact
    def __call__(self, token_list, image_hw):
        """token_list: [enc_out (B,N,E), dec_1 .. dec_L (B,N,D)]; image_hw: static (H, W).

        Returns the raw map (B, H, W, num_channels).
        """
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        rows, cols = image_hw[0] // self.patch_size, image_hw[1] // self.patch_size
        levels = []
        for k, hook in enumerate(self.hooks):
            tokens = token_list[hook].astype(self.dtype)
            grid = tokens.reshape(tokens.shape[0], rows, cols, tokens.shape[-1])
            level = ActPostprocess(k, name=f"act_postprocess_{k}", **kw)(grid)
            self.sow("intermediates", f"act_postprocess.{k}", level)
            levels.append(level)
        fused = Scratch(name="scratch", record=self.record, **kw)(levels)
        return OutputHead(self.num_channels, name="head", **kw)(fused)


class DPTHead(nn.Module):
    """downstream_head{1,2}: holds the adapter under the name 'dpt' like the official module."""

    num_channels: int
    hooks: tuple
    patch_size: int = 16
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    record: bool = True  # sow DPT internals into 'intermediates'

    @nn.compact
    def __call__(self, token_list, image_hw):
        adapter = DPTAdapter(
            self.num_channels, self.hooks, self.patch_size, self.dtype, self.param_dtype, self.record, name="dpt"
        )
        return adapter(token_list, image_hw)
