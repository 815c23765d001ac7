"""The model's hyper-parameters as data: one `ml_collections.ConfigDict` per model.

Field names and meanings are those of the official constructor `AsymmetricCroCo3DStereo(...)`
(and of its CroCo base), so a checkpoint's `args.model` string or HF `config.json` maps onto it
one to one. Defaults are the RELEASED models' trunk (ViT-Large encoder, ViT-Base decoder, RoPE100,
patch 16) in inference mode (`PatchEmbedDust3R`, `landscape_only=False`, what the official
`load_model` builds), not the official constructor's ViT-Base/cosine defaults.
"""
import math

import ml_collections

from dust3r_jax.errors import ConfigError

_DEFAULTS = dict(
    img_size=(512, 512),      # training crop size; only the 'cosine' position embedding uses it
    patch_size=16,
    enc_embed_dim=1024,
    enc_depth=24,
    enc_num_heads=16,
    dec_embed_dim=768,
    dec_depth=12,
    dec_num_heads=12,
    mlp_ratio=4.0,
    norm_im2_in_dec=True,     # decoder blocks normalise the other view's tokens (norm_y)
    pos_embed="RoPE100",      # 'RoPE<freq>'; croco's 'cosine' is refused by DUSt3R's encoder
    head_type="linear",       # 'linear' | 'dpt'
    output_mode="pts3d",
    depth_mode=("exp", -math.inf, math.inf),
    conf_mode=("exp", 1.0, math.inf),   # None: no confidence channel
    freeze="none",            # 'none' | 'mask' | 'encoder' (used by training to mask updates)
    landscape_only=False,     # True: portrait images arrive transposed (training datasets)
    patch_embed_cls="PatchEmbedDust3R",  # or 'ManyAR_PatchEmbed' (needs landscape arrays + true_shape)
    dtype="float32",          # compute dtype of the trunk ('bfloat16' for mixed precision)
    head_dtype="float32",     # the official code runs both heads in float32 even under autocast
    param_dtype="float32",
    # precision of float32 matmuls/convolutions: 'highest' keeps GPUs from silently using TF32
    # (the official outputs are true float32); 'default' trades that for speed. Ignored for bf16.
    matmul_precision="highest",
)

# The trunk of every released model and of CroCo v2: ViT-Large encoder, ViT-Base decoder, RoPE100.
VITL_BASE_DECODER = dict(
    enc_embed_dim=1024, enc_depth=24, enc_num_heads=16,
    dec_embed_dim=768, dec_depth=12, dec_num_heads=12, pos_embed="RoPE100",
)

# Constructor arguments of the official classes that do not change the computation at inference.
IGNORED_OFFICIAL_KWARGS = ("mask_ratio", "norm_layer")


def model_config(**overrides) -> ml_collections.ConfigDict:
    """Returns a frozen-shape ConfigDict of the model, defaults overridden by `overrides`.

    Unknown keys raise ConfigError (a typo must not silently build another model).
    """
    unknown = sorted(set(overrides) - set(_DEFAULTS) - set(IGNORED_OFFICIAL_KWARGS))
    if unknown:
        raise ConfigError(f"unknown model config key(s) {unknown}; known: {sorted(_DEFAULTS)}")
    values = dict(_DEFAULTS)
    values.update({k: v for k, v in overrides.items() if k not in IGNORED_OFFICIAL_KWARGS})
    for key in ("img_size", "depth_mode", "conf_mode"):
        if isinstance(values[key], list):
            values[key] = tuple(values[key])
    if isinstance(values["img_size"], int):
        values["img_size"] = (values["img_size"], values["img_size"])
    config = ml_collections.ConfigDict(values)
    validate(config)
    return config


def validate(config) -> None:
    """Checks the combinations the official constructor refuses, with one-line messages."""
    for prefix in ("enc", "dec"):
        dim, heads = config[f"{prefix}_embed_dim"], config[f"{prefix}_num_heads"]
        if dim % heads:
            raise ConfigError(f"{prefix}_embed_dim={dim} is not divisible by {prefix}_num_heads={heads}")
        if (dim // heads) % 4:
            raise ConfigError(f"RoPE needs a head size divisible by 4; {prefix} head size is {dim // heads}")
    pos_embed = str(config.pos_embed)
    if not (pos_embed.startswith("RoPE") and _is_number(pos_embed[len("RoPE"):])):
        # DUSt3R's _encode_image asserts there is no absolute position embedding
        raise ConfigError(f"pos_embed={config.pos_embed!r}: DUSt3R supports only 'RoPE<freq>' (e.g. 'RoPE100')")
    if config.head_type not in ("linear", "dpt"):
        raise ConfigError(f"head_type={config.head_type!r}: expected 'linear' or 'dpt'")
    if config.head_type == "dpt" and config.dec_depth <= 9:
        raise ConfigError(f"the DPT head needs dec_depth > 9 (hooks at 2/4, 3/4 of it); got {config.dec_depth}")
    if config.output_mode != "pts3d":
        raise ConfigError(f"output_mode={config.output_mode!r}: only 'pts3d' exists in DUSt3R")
    if config.patch_embed_cls not in ("PatchEmbedDust3R", "ManyAR_PatchEmbed"):
        raise ConfigError(f"patch_embed_cls={config.patch_embed_cls!r}: expected PatchEmbedDust3R or ManyAR_PatchEmbed")
    mode, vmin, vmax = config.depth_mode
    if mode not in ("linear", "square", "exp"):
        raise ConfigError(f"depth_mode={config.depth_mode!r}: expected 'linear', 'square' or 'exp'")
    if not (vmin == -math.inf and vmax == math.inf):
        # the official reg_dense_depth asserts unbounded depth
        raise ConfigError(f"depth_mode={config.depth_mode!r}: bounded depth modes are not supported officially")
    if config.conf_mode is not None and config.conf_mode[0] not in ("exp", "sigmoid"):
        raise ConfigError(f"conf_mode={config.conf_mode!r}: expected 'exp' or 'sigmoid'")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def rope_frequency(config) -> float:
    """The RoPE base frequency: 'RoPE100' -> 100.0."""
    return float(config.pos_embed[len("RoPE"):])


def dpt_hooks(config) -> tuple[int, ...]:
    """Indices into the head's token list [enc, dec_1, ..., dec_L] that feed the DPT head."""
    depth = config.dec_depth
    return (0, depth * 2 // 4, depth * 3 // 4, depth)
