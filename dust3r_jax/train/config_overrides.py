"""Config files and `--config.a.b=value` overrides, without absl flags.

    config = load_config("configs/train_tiny.py")          # calls its get_config()
    apply_overrides(config, ["--config.optim.lr=3e-4", "--config.mesh.shape=(2,2,2)"])

A value is parsed as a Python literal when it is one (numbers, tuples, True/None, quoted strings)
and kept as a string otherwise; it must fit the type of the key it replaces (an int key accepts
an int, a float key an int or float, ...). A key that does not exist raises ConfigError naming it.
"""
import ast
import importlib.util
from pathlib import Path

import ml_collections

from dust3r_jax.errors import ConfigError

PREFIX = "--config."


def load_config(path):
    """The ConfigDict returned by `get_config()` of the Python file at `path`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path}: not found")
    spec = importlib.util.spec_from_file_location(f"_dust3r_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a broken config file: say which, and what
        raise ConfigError(f"config file {path}: {type(err).__name__}: {err}") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path}: defines no get_config()")
    return module.get_config()


def split_override_args(argv):
    """argv -> (other args, ['a.b=value', ...]); accepts '--config.a.b=value' and '--config.a.b value'."""
    rest, overrides, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith(PREFIX):
            body = arg[len(PREFIX):]
            if "=" not in body:
                if i + 1 >= len(argv):
                    raise ConfigError(f"{arg}: missing value (use {arg}=VALUE)")
                body, i = f"{body}={argv[i + 1]}", i + 1
            overrides.append(body)
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _parse_value(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _coerce(key, old, new):
    """`new` converted to the type of `old`, or ConfigError naming `key`."""
    if old is None or new is None:
        return new
    if isinstance(old, bool):
        if isinstance(new, bool):
            return new
        if isinstance(new, str) and new.lower() in ("true", "false"):
            return new.lower() == "true"
        raise ConfigError(f"config key {key!r}: expected true/false, got {new!r}")
    if isinstance(old, int) and not isinstance(old, bool):
        if isinstance(new, int) and not isinstance(new, bool):
            return new
        raise ConfigError(f"config key {key!r}: expected an int, got {new!r}")
    if isinstance(old, float):
        if isinstance(new, (int, float)) and not isinstance(new, bool):
            return float(new)
        raise ConfigError(f"config key {key!r}: expected a number, got {new!r}")
    if isinstance(old, str):
        return new if isinstance(new, str) else str(new)
    if isinstance(old, (tuple, list)):
        if isinstance(new, (tuple, list)):
            return type(old)(new)
        raise ConfigError(f"config key {key!r}: expected a tuple like {old!r}, got {new!r}")
    return new


def apply_override(config, assignment):
    """Applies one 'a.b.c=value' to `config` in place."""
    if "=" not in assignment:
        raise ConfigError(f"config override {assignment!r}: expected key=value")
    key, text = assignment.split("=", 1)
    node, parts = config, key.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth + 1])
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            # roots are free-form: {dataset class name: folder}
            if isinstance(node, ml_collections.ConfigDict) and ".".join(parts[:depth]) == "data.roots" \
                    and depth == len(parts) - 1:
                break
            raise ConfigError(f"config key {where!r} does not exist (override {key}={text})")
        if depth < len(parts) - 1:
            node = node[part]
    last = parts[-1]
    old = node[last] if last in node else None
    value = _coerce(key, old, _parse_value(text))
    if isinstance(old, ml_collections.ConfigDict):
        raise ConfigError(f"config key {key!r} is a section; override one of its keys: {sorted(old)}")
    with node.unlocked() if hasattr(node, "unlocked") else _null():
        node[last] = value


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def apply_overrides(config, assignments):
    for assignment in assignments:
        apply_override(config, assignment[len(PREFIX):] if assignment.startswith(PREFIX) else assignment)
    return config
