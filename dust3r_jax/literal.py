"""Python-expression strings read with `ast`, never `eval`.

The official code `eval`s three kinds of string, which we parse here instead:

    model strings    AsymmetricCroCo3DStereo(pos_embed='RoPE100', depth_mode=('exp', -inf, inf), ...)
                     (checkpoints' `args.model`, `dust3r_jax.checkpoints.model_string`)
    dataset strings  100_000 @ Co3d(split='train', resolution=224, transform=ColorJitter) + ...
                     (`dust3r_jax.data.mixture`)
    criteria         ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)  (`dust3r_jax.losses`)

Each caller walks the tree it expects (calls, `@` / `*` / `+`) with `parse` and `call`, and reads
argument values with `literal`. A literal is a number, a string, True/False/None, a sign on a
number, infinity or NaN as the official strings write them (`inf`, `np.inf`, `math.inf`,
`torch.inf`, `float('inf')`), a tuple, list or dict of literals, or a bare name the caller allows
(a dataset string's `transform=ColorJitter`). Anything else (other calls and names, attribute
access, comprehensions, lambdas) is refused with a one-line ConfigError naming the string.
"""
import ast
import math

from dust3r_jax.errors import ConfigError

# names that the official code has in scope as numbers when it evals a string
_NAMED_CONSTANTS = {"inf": math.inf, "nan": math.nan}
# `np.inf`, `math.inf`, `torch.inf`
_CONSTANT_MODULES = ("np", "numpy", "math", "torch")


def shorten(text: str, limit: int = 60) -> str:
    """`text` cut to `limit` characters for a one-line message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse(text: str, where: str) -> ast.expr:
    """The expression tree of `text`; ConfigError '{where}: syntax error ...' if it is not one."""
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        raise ConfigError(f"{where}: syntax error at column {err.offset} ({err.msg})") from None
    except (ValueError, RecursionError, MemoryError) as err:  # null bytes, absurd nesting
        raise ConfigError(f"{where}: not a Python expression ({type(err).__name__})") from None


def literal(node: ast.AST, where: str, names=()):
    """The Python value of a literal node (see the module docstring); a name in `names` is its own
    string. ConfigError naming `where` for anything else."""
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
        return node.value
    if isinstance(node, ast.Name) and node.id in names:
        return node.id
    if isinstance(node, ast.Name) and node.id in _NAMED_CONSTANTS:
        return _NAMED_CONSTANTS[node.id]
    if (isinstance(node, ast.Attribute) and node.attr in _NAMED_CONSTANTS
            and isinstance(node.value, ast.Name) and node.value.id in _CONSTANT_MODULES):
        return _NAMED_CONSTANTS[node.attr]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = literal(node.operand, where)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: sign applied to a non-number")
        return -value if isinstance(node.op, ast.USub) else value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float"
            and len(node.args) == 1 and not node.keywords):
        # float('inf') / float('-inf') / float(3)
        value = literal(node.args[0], where)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: float({value!r}) is not a number") from None
    if isinstance(node, (ast.Tuple, ast.List)):
        values = [literal(item, where, names) for item in node.elts]
        return tuple(values) if isinstance(node, ast.Tuple) else values
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise ConfigError(f"{where}: '**' unpacking is not a literal")
        return {literal(k, where, names): literal(v, where, names) for k, v in zip(node.keys, node.values)}
    raise ConfigError(f"{where}: '{shorten(ast.unparse(node))}' is not a literal "
                      f"(only numbers, strings, True/False/None, inf and tuples are accepted)")


def call(node: ast.AST, where: str, names=()) -> tuple[str, list, dict]:
    """`Name(arg, ..., key=literal, ...)` -> (name, [positional argument nodes], {key: value}).

    The positional arguments stay nodes (a criterion nests calls there); keyword values are read
    with `literal(..., names)`. ConfigError naming `where`: not a call of a plain name, `**`
    arguments, a keyword given twice, a keyword value that is not a literal.
    """
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ConfigError(f"{where}: expected Name(key=value, ...), found '{shorten(ast.unparse(node))}'")
    name, kwargs = node.func.id, {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise ConfigError(f"{where}: {name}(**...): '**' arguments are not supported")
        if keyword.arg in kwargs:
            raise ConfigError(f"{where}: {name}(...): argument '{keyword.arg}' given twice")
        kwargs[keyword.arg] = literal(keyword.value, f"{where}: {name}({keyword.arg}=...)", names)
    return name, list(node.args), kwargs
