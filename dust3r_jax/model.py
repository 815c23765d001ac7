"""AsymmetricCroCo3DStereo: the DUSt3R network as a pure-functional Flax linen module.

    model = AsymmetricCroCo3DStereo(model_config(...))
    pred1, pred2 = model.apply({"params": params}, view1, view2)

view = {"img": (B, H, W, 3) float in [-1, 1] (NHWC), "true_shape": (B, 2) int (H, W), optional}.
pred1 = {"pts3d": (B, H, W, 3), "conf": (B, H, W)}: view1's pixels in view1's camera frame.
pred2 = {"pts3d_in_other_view": (B, H, W, 3), "conf": (B, H, W)}: view2's pixels, also in view1's frame.

Structure (attribute names mirror the official state dict, so the converter is a readable map):
patch_embed -> enc_blocks_i -> enc_norm (both views, shared weights) -> decoder_embed ->
dec_blocks_i (view 1, cross-attending to view 2) / dec_blocks2_i (view 2) -> dec_norm ->
downstream_head1 / downstream_head2 (linear or DPT) -> exp post-processing.
MASt3R (AsymmetricMASt3R, head_type 'catmlp+dpt') adds 'desc' (B, H, W, 24) and 'desc_conf' (B, H, W)
to both predictions (dust3r_jax/layers/catmlp_dpt_head.py).

Intermediates are sown into the 'intermediates' collection (names as in the reference fixtures:
'patch_embed.x', 'enc_blocks.{i}', 'decout1.{l}', 'head1.raw', ...) when `mutable=['intermediates']`.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from dust3r_jax.errors import InputError
from dust3r_jax.layers.attention import dense
from dust3r_jax.layers.blocks import DecoderBlock, EncoderBlock, layer_norm
from dust3r_jax.layers.catmlp_dpt_head import CatMLPDPTHead
from dust3r_jax.layers.dpt_head import DPTHead
from dust3r_jax.layers.linear_head import LinearHead
from dust3r_jax.layers.patch_embed import PatchEmbed, is_portrait
from dust3r_jax.layers.postprocess import postprocess
from dust3r_jax.model_config import desc_dim, dpt_hooks, is_mast3r, model_config, rope_frequency

__all__ = ["AsymmetricCroCo3DStereo", "AsymmetricMASt3R", "model_class", "model_config", "check_views"]


def check_views(view1, view2, config) -> None:
    """Static checks of a pair of view dicts; raises InputError with a one-line message."""
    p = config.patch_size
    for name, view in (("view1", view1), ("view2", view2)):
        if "img" not in view:
            raise InputError(f"{name} has no 'img' entry; expected {{'img': (B, H, W, 3), 'true_shape': (B, 2)}}")
        shape = tuple(view["img"].shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise InputError(f"{name}['img'] has shape {shape}; expected (B, H, W, 3) NHWC")
        if shape[1] % p or shape[2] % p:
            raise InputError(
                f"{name}['img'] is {shape[1]}x{shape[2]} (HxW); both sides must be multiples of the patch size {p}"
            )
        if config.patch_embed_cls == "ManyAR_PatchEmbed" and shape[2] < shape[1]:
            raise InputError(
                f"{name}['img'] is portrait ({shape[1]}x{shape[2]}); ManyAR_PatchEmbed models take landscape arrays "
                "with portrait images transposed and their true_shape kept (H, W)"
            )
        true_shape = view.get("true_shape")
        if true_shape is not None and tuple(true_shape.shape) != (shape[0], 2):
            raise InputError(f"{name}['true_shape'] has shape {tuple(true_shape.shape)}; expected ({shape[0]}, 2)")
    if view1["img"].shape[0] != view2["img"].shape[0]:
        raise InputError(f"view1 and view2 batch sizes differ: {view1['img'].shape[0]} vs {view2['img'].shape[0]}")


def _true_shape(view):
    batch, height, width, _ = view["img"].shape
    if view.get("true_shape") is not None:
        return jnp.asarray(view["true_shape"], jnp.int32)
    return jnp.broadcast_to(jnp.array([height, width], jnp.int32), (batch, 2))


def interleave(a, b):
    """(B, ...) x2 -> (2B, ...): a0, b0, a1, b1, ... (the batch layout of `symmetrized=True`)."""
    return jnp.stack([a, b], axis=1).reshape((-1,) + a.shape[1:])


class AsymmetricCroCo3DStereo(nn.Module):
    config: ml_collections.ConfigDict

    def __post_init__(self):
        # a frozen config is hashable, so the module can be closed over by jit and lifted transforms
        if not isinstance(self.config, ml_collections.FrozenConfigDict):
            object.__setattr__(self, "config", ml_collections.FrozenConfigDict(self.config))
        super().__post_init__()

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        """The official constructor: a `.pth`, an HF or converted folder, or a Hub id such as
        "naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt". Returns a `PretrainedModel` (this module +
        its params; see `dust3r_jax.pretrained.from_pretrained`), which `inference` takes as the
        official `inference(pairs, model, device)`."""
        from dust3r_jax.pretrained import from_pretrained
        return from_pretrained(name_or_path, **kwargs)

    # ---- sub-modules -------------------------------------------------------------------------
    def setup(self):
        cfg = self.config
        kw = dict(dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))
        block_kw = dict(kw, attention=cfg.attention)
        rope = rope_frequency(cfg)
        self.patch_embed = PatchEmbed(
            cfg.enc_embed_dim, cfg.patch_size, many_aspect_ratios=cfg.patch_embed_cls == "ManyAR_PatchEmbed", **kw
        )
        self.enc_blocks = [
            EncoderBlock(cfg.enc_num_heads, cfg.mlp_ratio, rope, **block_kw) for _ in range(cfg.enc_depth)
        ]
        self.enc_norm = layer_norm("enc_norm", **kw)
        self.decoder_embed = dense(cfg.dec_embed_dim, ("embed", "embed"), kw["dtype"], kw["param_dtype"], None)
        self.dec_blocks = [
            DecoderBlock(cfg.dec_num_heads, cfg.mlp_ratio, rope, cfg.norm_im2_in_dec, **block_kw) for _ in range(cfg.dec_depth)
        ]
        self.dec_blocks2 = [
            DecoderBlock(cfg.dec_num_heads, cfg.mlp_ratio, rope, cfg.norm_im2_in_dec, **block_kw) for _ in range(cfg.dec_depth)
        ]
        self.dec_norm = layer_norm("dec_norm", **kw)
        head_kw = dict(dtype=jnp.dtype(cfg.head_dtype), param_dtype=kw["param_dtype"])
        num_channels = 3 + (cfg.conf_mode is not None)
        if cfg.head_type == "linear":
            make_head = lambda: LinearHead(num_channels, cfg.patch_size, **head_kw)
        elif cfg.head_type == "catmlp+dpt":  # MASt3R
            make_head = lambda: CatMLPDPTHead(
                num_channels, dpt_hooks(cfg), desc_dim(cfg), cfg.two_confs, cfg.patch_size,
                record=not cfg.landscape_only, **head_kw
            )
        else:
            # in landscape_only mode the heads run inside nn.switch, whose branches must leave the
            # same variables: they record no intermediates there
            make_head = lambda: DPTHead(
                num_channels, dpt_hooks(cfg), cfg.patch_size, record=not cfg.landscape_only, **head_kw
            )
        self.downstream_head1 = make_head()
        self.downstream_head2 = make_head()

    # ---- encoder -----------------------------------------------------------------------------
    def encode(self, images, true_shape):
        """images: (B, H, W, 3); true_shape: (B, 2). Returns tokens (B, N, E), positions (B, N, 2)."""
        x, positions = self.patch_embed(images.astype(self.config.dtype), true_shape)
        self.sow("intermediates", "patch_embed.true_shape", true_shape)
        self.sow("intermediates", "patch_embed.x", x)
        self.sow("intermediates", "patch_embed.pos", positions)
        for i, block in enumerate(self.enc_blocks):
            x = block(x, positions)
            self.sow("intermediates", f"enc_blocks.{i}", x)
        x = self.enc_norm(x)
        self.sow("intermediates", "enc_norm.out", x)  # ".out": the name "enc_norm" is the submodule
        return x, positions

    def encode_pair(self, img1, img2, shape1, shape2):
        """Same-size views are encoded in one batch [view1; view2], as the official model does."""
        if img1.shape[1:] == img2.shape[1:]:
            tokens, positions = self.encode(
                jnp.concatenate([img1, img2]), jnp.concatenate([shape1, shape2])
            )
            batch = img1.shape[0]
            return tokens[:batch], tokens[batch:], positions[:batch], positions[batch:]
        tokens1, positions1 = self.encode(img1, shape1)
        tokens2, positions2 = self.encode(img2, shape2)
        return tokens1, tokens2, positions1, positions2

    # ---- decoder -----------------------------------------------------------------------------
    def decode(self, feat1, pos1, feat2, pos2):
        """Both branches read the previous layer's pair. Returns the two token lists handed to the
        heads: [encoder output, block 0 .. block L-2 outputs, dec_norm(block L-1 output)]."""
        out1, out2 = [feat1], [feat2]
        f1 = self.decoder_embed(feat1)
        f2 = self.decoder_embed(feat2)
        self.sow("intermediates", "decoder_embed.out", f1)
        self.sow("intermediates", "decoder_embed.out", f2)
        for block1, block2 in zip(self.dec_blocks, self.dec_blocks2):
            f1, f2 = block1(f1, f2, pos1, pos2), block2(f2, f1, pos2, pos1)
            out1.append(f1)
            out2.append(f2)
        last = self.config.dec_depth - 1
        self.sow("intermediates", f"dec_blocks.{last}", f1)
        self.sow("intermediates", f"dec_blocks2.{last}", f2)
        out1[-1] = self.dec_norm(f1)
        out2[-1] = self.dec_norm(f2)
        for level, (t1, t2) in enumerate(zip(out1, out2)):
            self.sow("intermediates", f"decout1.{level}", t1)
            self.sow("intermediates", f"decout2.{level}", t2)
        return out1, out2

    # ---- heads -------------------------------------------------------------------------------
    def run_head(self, head_name, tokens, true_shape, image_hw):
        """Raw head output (B, H, W, C) for a batch whose array is (H, W).

        landscape_only=False: the head decodes the (H/p, W/p) grid as given.
        landscape_only=True (training): portrait images (true_shape H > W) arrive transposed and
        were embedded upright, so they are decoded on the (W/p, H/p) grid and the result is
        transposed back into the landscape array layout. true_shape may be traced, so the choice
        is an `nn.switch`: all-landscape and all-portrait batches run the head once, only a batch
        mixing both runs it on both grids and selects per image.
        """
        dtype = jnp.dtype(self.config.head_dtype)
        tokens = [t.astype(dtype) for t in tokens]
        if not self.config.landscape_only:
            return getattr(self, head_name)(tokens, image_hw)
        height, width = image_hw

        def landscape(module, tokens, portrait_mask):
            return getattr(module, head_name)(tokens, (height, width))

        def portrait(module, tokens, portrait_mask):
            return jnp.swapaxes(getattr(module, head_name)(tokens, (width, height)), 1, 2)

        def mixed(module, tokens, portrait_mask):
            return jnp.where(
                portrait_mask[:, None, None, None],
                portrait(module, tokens, portrait_mask),
                landscape(module, tokens, portrait_mask),
            )

        if self.is_initializing():  # one branch creates every param of the head
            return landscape(self, tokens, None)
        is_portrait_image = is_portrait(true_shape)
        n_portrait = jnp.sum(is_portrait_image)
        branch = jnp.where(n_portrait == 0, 0, jnp.where(n_portrait == is_portrait_image.shape[0], 1, 2))
        return nn.switch(branch, [landscape, portrait, mixed], self, tokens, is_portrait_image)

    def _precision(self):
        """float32 matmuls at the configured precision (no silent TF32 on GPU); half precision as is."""
        cfg = self.config
        return jax.default_matmul_precision(cfg.matmul_precision if jnp.dtype(cfg.dtype) == jnp.float32 else None)

    def encode_views(self, view):
        """Encoder alone, for callers that reuse an image's encoding across many pairs
        (`dust3r_jax.inference` does). view: {'img': (B, H, W, 3), 'true_shape': (B, 2)}.
        Returns (tokens (B, N, enc_embed_dim), positions (B, N, 2))."""
        check_views(view, view, self.config)
        with self._precision():
            return self.encode(view["img"], _true_shape(view))

    def predict_from_tokens(self, feat1, pos1, shape1, feat2, pos2, shape2, image_hw1, image_hw2):
        """Decoders, heads and post-processing for encoded views (see `encode_views`).

        feat*: (B, N*, enc_embed_dim) encoder tokens; pos*: (B, N*, 2); shape*: (B, 2) true shapes;
        image_hw*: static (H, W) of each side's image array. Returns (pred1, pred2) as `__call__`.
        """
        cfg = self.config
        with self._precision():
            dec1, dec2 = self.decode(feat1, pos1, feat2, pos2)
            raw1 = self.run_head("downstream_head1", dec1, shape1, tuple(image_hw1))
            raw2 = self.run_head("downstream_head2", dec2, shape2, tuple(image_hw2))
        self.sow("intermediates", "head1.raw", raw1)
        self.sow("intermediates", "head2.raw", raw2)
        desc = dict(desc_dim=desc_dim(cfg), two_confs=cfg.two_confs, desc_conf_mode=cfg.desc_conf_mode) \
            if is_mast3r(cfg) else {}
        pred1 = postprocess(raw1, cfg.depth_mode, cfg.conf_mode, **desc)
        pred2 = postprocess(raw2, cfg.depth_mode, cfg.conf_mode, **desc)
        pred2["pts3d_in_other_view"] = pred2.pop("pts3d")
        return pred1, pred2

    def __call__(self, view1, view2, symmetrized: bool = False):
        """view1, view2: {'img': (B, H, W, 3), 'true_shape': (B, 2)}. `symmetrized` (static): the
        batch is pairs (a, b), (b, a), (c, d), (d, c), ...: only even pairs are encoded."""
        check_views(view1, view2, self.config)
        img1, img2 = view1["img"], view2["img"]
        shape1, shape2 = _true_shape(view1), _true_shape(view2)
        batch = img1.shape[0]
        if symmetrized and batch % 2:
            raise InputError(f"symmetrized=True needs an even batch of (a, b), (b, a) pairs; got batch {batch}")
        with self._precision():
            if symmetrized and batch > 1:
                feat1, feat2, pos1, pos2 = self.encode_pair(img1[::2], img2[::2], shape1[::2], shape2[::2])
                feat1, feat2 = interleave(feat1, feat2), interleave(feat2, feat1)
                pos1, pos2 = interleave(pos1, pos2), interleave(pos2, pos1)
            else:
                feat1, feat2, pos1, pos2 = self.encode_pair(img1, img2, shape1, shape2)
        for name, value in (("shape1", shape1), ("shape2", shape2), ("pos1", pos1), ("pos2", pos2)):
            self.sow("intermediates", f"encoded.{name}", value)
        return self.predict_from_tokens(feat1, pos1, shape1, feat2, pos2, shape2, img1.shape[1:3], img2.shape[1:3])


class AsymmetricMASt3R(AsymmetricCroCo3DStereo):
    """MASt3R (naver/mast3r): the same network with the catmlp+dpt head (`config.head_type`), whose
    predictions also hold 'desc' (B, H, W, desc_dim), unit-norm, and 'desc_conf' (B, H, W).
    Build its config with `model_config(head_type='catmlp+dpt', output_mode='pts3d+desc24', ...)`."""

    def symmetric_inference(self, view1, view2):
        """mast3r.cloud_opt.sparse_ga.symmetric_inference: both views encoded once, decoded both ways.

        Call as `model.apply({"params": params}, view1, view2, method="symmetric_inference")`; views
        as in `__call__`. Returns (res11, res21, res22, res12), each {'pts3d', 'conf', 'desc',
        'desc_conf'}: views 1 and 2 in camera 1's frame (run (1, 2)), then views 2 and 1 in
        camera 2's frame (run (2, 1)); arrays (B, H, W, ...) of the view they describe."""
        check_views(view1, view2, self.config)
        img1, img2 = view1["img"], view2["img"]
        shape1, shape2 = _true_shape(view1), _true_shape(view2)
        with self._precision():
            feat1, feat2, pos1, pos2 = self.encode_pair(img1, img2, shape1, shape2)
        hw1, hw2 = img1.shape[1:3], img2.shape[1:3]
        res11, res21 = self.predict_from_tokens(feat1, pos1, shape1, feat2, pos2, shape2, hw1, hw2)
        res22, res12 = self.predict_from_tokens(feat2, pos2, shape2, feat1, pos1, shape1, hw2, hw1)
        for res in (res21, res12):  # the official keeps the head's own name
            res["pts3d"] = res.pop("pts3d_in_other_view")
        return res11, res21, res22, res12


def model_class(config):
    """The module class of a config: AsymmetricMASt3R for MASt3R configs, else AsymmetricCroCo3DStereo."""
    return AsymmetricMASt3R if is_mast3r(config) else AsymmetricCroCo3DStereo
