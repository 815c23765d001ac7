"""The model constructor strings that DUSt3R checkpoints carry, read without `eval`.

A DUSt3R checkpoint stores `args.model`, the Python expression that built the network, e.g.

    AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed',
        img_size=(512, 512), head_type='dpt', output_mode='pts3d',
        depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), enc_embed_dim=1024, ...)

The official code `eval`s it. Here it is parsed with `ast` and only literal keyword arguments
are accepted: numbers, strings, True/False/None, tuples/lists/dicts of those, and the
spellings of infinity the official strings use (`inf`, `-inf`, `float('inf')`). Anything else
(calls, names, attribute access, positional arguments) is refused with a one-line error.
"""
import ast
import math

from dust3r_jax.errors import ConfigError

# names that the official code has in scope as numbers when it evals a model string
_NAMED_CONSTANTS = {"inf": math.inf, "nan": math.nan}
# `np.inf`, `math.inf`, `torch.inf`
_CONSTANT_MODULES = ("np", "numpy", "math", "torch")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _literal(node: ast.AST, where: str):
    """Python value of a literal AST node; ConfigError naming `where` for anything else."""
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMED_CONSTANTS:
        return _NAMED_CONSTANTS[node.id]
    if (isinstance(node, ast.Attribute) and node.attr in _NAMED_CONSTANTS
            and isinstance(node.value, ast.Name) and node.value.id in _CONSTANT_MODULES):
        return _NAMED_CONSTANTS[node.attr]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, where)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: sign applied to a non-number")
        return -value if isinstance(node.op, ast.USub) else value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float"
            and len(node.args) == 1 and not node.keywords):
        # float('inf') / float('-inf') / float(3)
        value = _literal(node.args[0], where)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: float({value!r}) is not a number") from None
    if isinstance(node, (ast.Tuple, ast.List)):
        values = [_literal(item, where) for item in node.elts]
        return tuple(values) if isinstance(node, ast.Tuple) else values
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise ConfigError(f"{where}: '**' unpacking is not a literal")
        return {_literal(k, where): _literal(v, where) for k, v in zip(node.keys, node.values)}
    raise ConfigError(f"{where}: '{_short(ast.unparse(node))}' is not a literal "
                      f"(only numbers, strings, True/False/None, inf and tuples are accepted)")


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
    where = f"{source} {_short(s.strip())!r}"
    try:
        tree = ast.parse(s.strip(), mode="eval")
    except SyntaxError as err:
        raise ConfigError(f"{where}: not a Python call expression ({err.msg})") from None
    except (ValueError, RecursionError, MemoryError) as err:  # null bytes, absurd nesting
        raise ConfigError(f"{where}: not a Python call expression ({type(err).__name__})") from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ConfigError(f"{where}: expected ClassName(key=value, ...)")
    if call.args:
        raise ConfigError(f"{where}: positional arguments are not supported, use key=value")
    kwargs = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise ConfigError(f"{where}: '**' arguments are not supported")
        if keyword.arg in kwargs:
            raise ConfigError(f"{where}: argument '{keyword.arg}' given twice")
        kwargs[keyword.arg] = _literal(keyword.value, f"{source} argument '{keyword.arg}'")
    return call.func.id, kwargs


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
        raise ConfigError(f"{source} {_short(s)!r}: cannot force landscape_only=False "
                          f"(the official load_model would fail its assertion)")
    return edited
