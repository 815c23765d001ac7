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

# Values of `attention`, the attention kernel (dust3r_jax/layers/attention.py): 'auto' picks one of
# the others per platform and dtype.
ATTENTION_IMPLEMENTATIONS = ("auto", "cudnn", "xla", "matmul")

# The trunk of every released model and of CroCo v2: ViT-Large encoder, ViT-Base decoder, RoPE100.
VITL_BASE_DECODER = dict(
    enc_embed_dim=1024, enc_depth=24, enc_num_heads=16,
    dec_embed_dim=768, dec_depth=12, dec_num_heads=12, pos_embed="RoPE100",
)


_DEFAULTS = dict(
    img_size=(512, 512),      # training crop size; only the 'cosine' position embedding uses it
    patch_size=16,
    **VITL_BASE_DECODER,
    mlp_ratio=4.0,
    norm_im2_in_dec=True,     # decoder blocks normalise the other view's tokens (norm_y)
    # pos_embed 'RoPE<freq>' (in the trunk above); croco's 'cosine' is refused by DUSt3R's encoder
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
    # attention kernel: 'auto' (cuDNN flash attention for bf16/fp16 on CUDA GPUs, else XLA), or
    # 'cudnn' | 'xla' | 'matmul' to force one (dust3r_jax/layers/attention.py)
    attention="auto",
)

# Constructor arguments of the official classes that do not change the computation at inference.
IGNORED_OFFICIAL_KWARGS = ("mask_ratio", "norm_layer")

# MASt3R (naver/mast3r `AsymmetricMASt3R`): its extra constructor arguments with the official
# defaults. A config holds them only for MASt3R (head_type 'catmlp+dpt' or any of them given), so
# DUSt3R configs, and the config.json files written from them, are unchanged.
MAST3R_DEFAULTS = dict(
    desc_mode="norm",         # descriptors L2-normalised over their channels
    two_confs=False,          # True: a separate descriptor confidence channel
    desc_conf_mode=None,      # its (name, min, max); None: conf_mode
)
MAST3R_HEAD_TYPES = ("catmlp+dpt",)


def model_config(**overrides) -> ml_collections.ConfigDict:
    """Returns a frozen-shape ConfigDict of the model, defaults overridden by `overrides`.

    Unknown keys raise ConfigError (a typo must not silently build another model).
    """
    defaults = {**_DEFAULTS, **(MAST3R_DEFAULTS if is_mast3r(overrides) else {})}
    unknown = sorted(set(overrides) - set(defaults) - set(IGNORED_OFFICIAL_KWARGS))
    if unknown:
        raise ConfigError(f"unknown model config key(s) {unknown}; known: {sorted(defaults)}")
    values = dict(defaults)
    values.update({k: v for k, v in overrides.items() if k not in IGNORED_OFFICIAL_KWARGS})
    for key in ("img_size", "depth_mode", "conf_mode", "desc_conf_mode"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    if isinstance(values["img_size"], int):
        values["img_size"] = (values["img_size"], values["img_size"])
    config = ml_collections.ConfigDict(values)
    validate(config)
    return config


def is_mast3r(config) -> bool:
    """True for a MASt3R config (or constructor kwargs): the catmlp+dpt head, or MASt3R's arguments."""
    return config.get("head_type") in MAST3R_HEAD_TYPES or any(k in config for k in MAST3R_DEFAULTS)


def desc_dim(config) -> int:
    """Descriptor channels of a MASt3R config: output_mode 'pts3d+desc24' -> 24."""
    return int(config.output_mode[len("pts3d+desc"):])


# Sanity bounds, far above every released model (ViT-L: depth 24, width 1024): a checkpoint or
# config.json declaring more is refused before anything is traced or allocated (a depth of 20000
# takes minutes to trace, a width of 10^6 exhausts memory).
MAX_DEPTH = 64
MAX_WIDTH = 4096
MAX_PATCH_SIZE = 64
MAX_IMG_SIDE = 8192
MAX_MLP_RATIO = 16.0


def _check_int(config, key: str, low: int, high: int) -> None:
    value = config[key]
    if type(value) is not int:  # bool is an int subclass; 16.0 is not an int either
        raise ConfigError(f"{key}={value!r}: expected an integer")
    if not low <= value <= high:
        raise ConfigError(f"{key}={value}: expected an integer in [{low}, {high}]")


def _check_types_and_ranges(config) -> None:
    """Types and sane sizes of the numeric fields, before any arithmetic on them."""
    _check_int(config, "patch_size", 1, MAX_PATCH_SIZE)
    for prefix in ("enc", "dec"):
        _check_int(config, f"{prefix}_embed_dim", 1, MAX_WIDTH)
        _check_int(config, f"{prefix}_depth", 1, MAX_DEPTH)
        _check_int(config, f"{prefix}_num_heads", 1, MAX_WIDTH)
    ratio = config.mlp_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= MAX_MLP_RATIO:
        raise ConfigError(f"mlp_ratio={ratio!r}: expected a number in (0, {MAX_MLP_RATIO}]")
    size = config.img_size
    if (not isinstance(size, tuple) or len(size) != 2
            or not all(type(s) is int and 0 < s <= MAX_IMG_SIDE for s in size)):
        raise ConfigError(f"img_size={size!r}: expected (height, width), integers in [1, {MAX_IMG_SIDE}]")
    for key in ("norm_im2_in_dec", "landscape_only"):
        if not isinstance(config[key], bool):
            raise ConfigError(f"{key}={config[key]!r}: expected True or False")
    if config.attention not in ATTENTION_IMPLEMENTATIONS:
        raise ConfigError(f"attention={config.attention!r}: expected one of {ATTENTION_IMPLEMENTATIONS}")
    for key in ("pos_embed", "head_type", "output_mode", "patch_embed_cls", "freeze"):
        if not isinstance(config[key], str):
            raise ConfigError(f"{key}={config[key]!r}: expected a string")
    for key in ("depth_mode", "conf_mode"):
        mode = config[key]
        if mode is None and key == "conf_mode":
            continue
        if not (isinstance(mode, tuple) and len(mode) == 3 and isinstance(mode[0], str)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in mode[1:])):
            raise ConfigError(f"{key}={mode!r}: expected (name, min, max), e.g. ('exp', 1, inf)")


def validate(config) -> None:
    """Checks types and sizes, then the combinations the official constructor refuses, with
    one-line messages: nothing is built from a config that fails here."""
    _check_types_and_ranges(config)
    for prefix in ("enc", "dec"):
        dim, heads = config[f"{prefix}_embed_dim"], config[f"{prefix}_num_heads"]
        if dim % heads:
            raise ConfigError(f"{prefix}_embed_dim={dim} is not divisible by {prefix}_num_heads={heads}")
        if (dim // heads) % 4:
            raise ConfigError(f"RoPE needs a head size divisible by 4; {prefix} head size is {dim // heads}")
    pos_embed = str(config.pos_embed)
    if not (pos_embed.startswith("RoPE") and _is_number(pos_embed[len("RoPE"):])
            and 0 < float(pos_embed[len("RoPE"):]) < math.inf):
        # DUSt3R's _encode_image asserts there is no absolute position embedding
        raise ConfigError(f"pos_embed={config.pos_embed!r}: DUSt3R supports only 'RoPE<freq>' (e.g. 'RoPE100')")
    if is_mast3r(config):
        _validate_mast3r(config)
    elif config.head_type not in ("linear", "dpt"):
        raise ConfigError(f"head_type={config.head_type!r}: expected 'linear' or 'dpt'")
    if config.head_type == "dpt" and config.dec_depth <= 9:
        raise ConfigError(f"the DPT head needs dec_depth > 9 (hooks at 2/4, 3/4 of it); got {config.dec_depth}")
    if config.output_mode != "pts3d" and not is_mast3r(config):
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


def _validate_mast3r(config) -> None:
    """What the official MASt3R constructor and its head factory accept (mast3r_head_factory)."""
    if config.head_type != "catmlp+dpt":
        raise ConfigError(f"head_type={config.head_type!r}: MASt3R supports only 'catmlp+dpt'")
    mode = config.output_mode
    dim = mode[len("pts3d+desc"):]
    if not (isinstance(mode, str) and mode.startswith("pts3d+desc") and dim.isdigit() and 0 < int(dim) <= MAX_WIDTH):
        raise ConfigError(f"output_mode={mode!r}: the catmlp+dpt head expects 'pts3d+desc<N>', e.g. 'pts3d+desc24'")
    if config.dec_depth <= 9:
        # mast3r_head_factory asserts dec_depth > 9; the DPT part hooks decoder layers 2/4, 3/4, 4/4
        raise ConfigError(f"the catmlp+dpt head of MASt3R needs dec_depth > 9 (the official head factory asserts it); "
                          f"got {config.dec_depth}")
    if config.conf_mode is None:
        raise ConfigError("conf_mode=None: the MASt3R head needs a confidence mode (its desc_conf falls back on it)")
    if not isinstance(config.two_confs, bool):
        raise ConfigError(f"two_confs={config.two_confs!r}: expected True or False")
    if not (isinstance(config.desc_mode, str) and "norm" in config.desc_mode):
        raise ConfigError(f"desc_mode={config.desc_mode!r}: MASt3R knows only 'norm' (L2-normalised descriptors)")
    conf = config.desc_conf_mode
    if conf is not None and not (isinstance(conf, tuple) and len(conf) == 3 and conf[0] in ("exp", "sigmoid")
                                 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in conf[1:])):
        raise ConfigError(f"desc_conf_mode={conf!r}: expected None or ('exp' | 'sigmoid', min, max)")
