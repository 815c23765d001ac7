"""Config files and their `--config.a.b=value` overrides, parsed by `ml_collections.config_flags`.

    config = load_config("configs/train_tiny.py", ["--config.optim.lr=3e-4", "--config.mesh.shape=(2,2,2)"])

`load_config` calls the file's `get_config()`; the overrides (argv items, `--config.a.b value`
works too) are parsed by config_flags on a private absl `FlagValues`, so no global flags are
defined or read. Each value is typed by the key it replaces (an int key takes an int, a float key
a number, a tuple key a tuple); an unknown key or a value of the wrong type is a one-line
ConfigError naming it.
"""
import importlib.util
from pathlib import Path

from absl import flags
from ml_collections import config_flags
from ml_collections.config_flags import config_path

from dust3r_jax.errors import ConfigError

PREFIX = "--config."


def load_config(path, overrides=()):
    """The ConfigDict returned by `get_config()` of the Python file at `path`, with `overrides`."""
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
    return apply_overrides(module.get_config(), overrides)


def apply_overrides(config, overrides):
    """`config`, changed in place, with argv-style overrides such as
    ['--config.optim.lr=3e-4', '--config.seed', '3'] applied; returns it."""
    argv = ["dust3r-jax", *overrides]
    if len(argv) == 1:
        return config
    flag_values = flags.FlagValues()
    try:
        # config_flags defines one typed flag per key named in `sys_argv`, then absl parses them
        config_flags.DEFINE_config_dict("config", config, flag_values=flag_values, sys_argv=argv,
                                        lock_config=False)
        rest = flag_values(argv)
    except (AttributeError, KeyError):  # a key that is not in the config
        raise ConfigError(f"config key {_unknown_key(config, overrides)!r} does not exist") from None
    except flags.UnrecognizedFlagError as err:
        raise ConfigError(f"unrecognized argument --{err.flagname} "
                          f"(config overrides are {PREFIX}KEY=VALUE)") from None
    except flags.Error as err:  # a value that does not parse as its key's type, a missing value
        raise ConfigError(f"config override: {str(err).splitlines()[0]}") from None
    if len(rest) > 1:
        raise ConfigError(f"unrecognized arguments: {' '.join(rest[1:])}")
    return config


def _unknown_key(config, overrides):
    """The first key named by `overrides` that `config` does not have (for the error message)."""
    for arg in overrides:
        if arg.startswith(PREFIX):
            key = arg[len(PREFIX):].split("=", 1)[0]
            try:
                config_path.get_value(key, config)
            except (AttributeError, KeyError, IndexError, TypeError):
                return key
    return " ".join(overrides)
