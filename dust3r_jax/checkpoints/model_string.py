"""The model constructor strings that DUSt3R checkpoints carry, read without `eval`.

A DUSt3R checkpoint stores `args.model`, the Python expression that built the network, e.g.

    AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed',
        img_size=(512, 512), head_type='dpt', output_mode='pts3d',
        depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), enc_embed_dim=1024, ...)

The official code `eval`s it. Here it is parsed with `dust3r_jax.literal` and only literal keyword
arguments are accepted: numbers, strings, True/False/None, tuples/lists/dicts of those, and the
spellings of infinity the official strings use (`inf`, `-inf`, `float('inf')`). Anything else
(calls, names, attribute access, positional arguments) is refused with a one-line error.
"""
from dust3r_jax import literal
from dust3r_jax.errors import ConfigError


def parse_model_string(s: str, source: str = "model string") -> tuple[str, dict]:
    """Split a constructor string into its class name and keyword arguments.

    Args:
      s: e.g. "AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(224, 224), ...)".
      source: what to call the string in errors, e.g. "checkpoint X.pth args.model".
    Returns:
      (class_name, kwargs): kwargs in the order written; tuples stay tuples, `inf` is math.inf.
    Raises:
      ConfigError (one line): not a single call of a plain name, positional or `**` arguments,
      repeated keywords, or a value that is not a literal.
    """
    if not isinstance(s, str):
        raise ConfigError(f"{source}: expected a string, found {type(s).__name__}")
    where = f"{source} {literal.shorten(s.strip())!r}"
    class_name, args, kwargs = literal.call(literal.parse(s, where), where)
    if args:
        raise ConfigError(f"{where}: positional arguments are not supported, use key=value")
    return class_name, kwargs


def official_load_model_string(s: str, source: str = "model string") -> str:
    """The string the official `dust3r.model.load_model` really instantiates from `args.model`.

    The official loader (used by inference, the demo and the HF route) swaps the training-time
    patch embedding for the plain one and turns off the landscape transposition. Its edits are
    textual and reproduced exactly here, quirks included: `ManyAR_PatchEmbed` ->
    `PatchEmbedDust3R`; if `landscape_only` does not occur, `, landscape_only=False` is inserted
    before the final `)`; otherwise ALL spaces are removed and `landscape_only=True` becomes
    `landscape_only=False`.

    Raises:
      ConfigError: the result does not contain `landscape_only=False` (the official loader
      asserts this, e.g. for `landscape_only=0`).
    """
    edited = s.replace("ManyAR_PatchEmbed", "PatchEmbedDust3R")
    if "landscape_only" not in edited:
        edited = edited[:-1] + ", landscape_only=False)"
    else:
        edited = edited.replace(" ", "").replace("landscape_only=True", "landscape_only=False")
    if "landscape_only=False" not in edited:
        raise ConfigError(f"{source} {literal.shorten(s)!r}: cannot force landscape_only=False "
                          f"(the official load_model would fail its assertion)")
    return edited
