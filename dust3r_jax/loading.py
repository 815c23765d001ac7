"""Load a DUSt3R model from any official checkpoint, or from our converted orbax directory.

    model, params = load_model("DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth")   # official torch.save
    model, params = load_model("dust3r_hf_dir/")            # config.json + model.safetensors
    model, params = load_model("converted_dir/")            # written by save_model / `dust3r-jax convert`
    model, params = load_model("CroCo_V2_ViTLarge_BaseDecoder.pth", head_type="dpt")  # pre-training

The model config is inferred from the checkpoint itself: `args.model` of a `.pth` (rewritten as the
official `load_model` does: `PatchEmbedDust3R`, `landscape_only=False`), HF `config.json`, or
CroCo's `croco_kwargs`/`args.model`. Keyword overrides change the config (e.g. `dtype="bfloat16"`, or
`landscape_only=True, patch_embed_cls="ManyAR_PatchEmbed"` for training). Unlike the official
`strict=False` load, a missing, unexpected or mis-shaped tensor is an error naming the file and key.
"""
import json
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import meta

from dust3r_jax.errors import CheckpointError, ConfigError
from dust3r_jax.model import AsymmetricCroCo3DStereo
from dust3r_jax.model_config import model_config

CONVERTED_CONFIG = "dust3r_jax_model.json"
CONVERTED_PARAMS = "params"
FORMAT_VERSION = 1


# ---- params of a model ---------------------------------------------------------------------------
def _dummy_views(config):
    side = 2 * config.patch_size  # the smallest grid every head accepts
    view = {"img": jnp.zeros((1, side, side, 3), jnp.float32), "true_shape": jnp.array([[side, side]], jnp.int32)}
    return view, view


def abstract_params(model):
    """Param shapes/dtypes of `model` (jax.ShapeDtypeStruct pytree, unboxed), without computing."""
    boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), *_dummy_views(model.config))["params"])
    return meta.unbox(boxed)


def init_params(model, rng):
    """Random params (plain pytree, logical-axis boxes removed) of `model`."""
    return meta.unbox(model.init(rng, *_dummy_views(model.config))["params"])


def _flatten(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _set(tree, path, value):
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


# ---- official state dict -> params ---------------------------------------------------------------
def state_dict_to_params(state_dict, model, source, random_init=None):
    """Maps an official state dict (numpy, torch layouts) onto the params of `model`.

    random_init: None, or a params pytree whose values fill the Flax params the state dict lacks
    (CroCo pre-training checkpoints have no heads). Otherwise every param must be present.
    """
    from convert.name_map import IGNORED_KEYS, alias_target, flax_path, official_key, to_flax

    expected = dict(_flatten(abstract_params(model)))
    param_dtype = np.dtype(model.config.param_dtype)
    params, seen = {}, set()
    for key, tensor in state_dict.items():
        if IGNORED_KEYS.match(key):
            continue
        target = alias_target(key)
        if target is not None:
            if target in state_dict and not np.array_equal(np.asarray(state_dict[target]), np.asarray(tensor)):
                raise CheckpointError(f"checkpoint {source}: alias '{key}' differs from '{target}'")
            continue
        path = flax_path(key)
        if path not in expected:
            raise CheckpointError(
                f"checkpoint {source}: unexpected key '{key}' for its config "
                f"(is the config right? e.g. head_type, depths)"
            )
        value = to_flax(key, np.asarray(tensor))
        if tuple(value.shape) != tuple(expected[path].shape):
            raise CheckpointError(
                f"checkpoint {source}: '{key}' has shape {tuple(np.asarray(tensor).shape)} but its config "
                f"implies {_torch_shape(key, expected[path].shape)}"
            )
        _set(params, path, jnp.asarray(value.astype(param_dtype, copy=False)))
        seen.add(path)
    missing = [p for p in expected if p not in seen]
    if missing and random_init is None:
        names = ", ".join(f"'{official_key(p)}'" for p in missing[:3])
        raise CheckpointError(
            f"checkpoint {source}: has no key {names}{' ...' if len(missing) > 3 else ''} "
            f"({len(missing)} missing); is it a CroCo checkpoint? load it with croco=True / --croco"
        )
    if missing:
        fill = dict(_flatten(random_init))
        for path in missing:
            _set(params, path, fill[path])
    return params


def _torch_shape(key, flax_shape):
    """The PyTorch shape of a tensor whose Flax shape is `flax_shape` (for error messages)."""
    from convert.name_map import from_flax

    return tuple(from_flax(key, np.empty(flax_shape, np.uint8)).shape)


# ---- configs from checkpoints --------------------------------------------------------------------
def config_from_model_string(model_string, source, overrides):
    """`args.model` of an official checkpoint -> our config, as the official load_model reads it."""
    from convert import official_load_model_string, parse_model_string

    class_name, kwargs = parse_model_string(official_load_model_string(model_string, source), source)
    if class_name != "AsymmetricCroCo3DStereo":
        raise CheckpointError(f"checkpoint {source}: args.model builds {class_name}, expected AsymmetricCroCo3DStereo")
    return _make_config(kwargs, source, overrides)


def _make_config(kwargs, source, overrides):
    kwargs = {**kwargs, **overrides}
    try:
        return model_config(**kwargs)
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {source}: {err}") from None


def _croco_kwargs(checkpoint, source):
    """CroCo pre-training checkpoints carry `croco_kwargs` (released v2) or `args.model='CroCoNet(...)'`."""
    if isinstance(checkpoint.get("croco_kwargs"), dict):
        return dict(checkpoint["croco_kwargs"])
    args = checkpoint.get("args")
    model_string = getattr(args, "model", None)
    if isinstance(model_string, str) and model_string.strip().startswith("CroCoNet"):
        from convert import parse_model_string

        return parse_model_string(model_string, source)[1]
    return None


def is_croco_state_dict(state_dict) -> bool:
    return not any(k.startswith("downstream_head") for k in state_dict)


def _from_croco(state_dict, kwargs, source, overrides, seed):
    """DUSt3R initialised from CroCo: the second decoder copies the first, heads are random."""
    # CroCo-only constructor arguments with no DUSt3R meaning
    kwargs = {k: v for k, v in kwargs.items() if k not in ("mask_ratio",)}
    config = _make_config(kwargs, source, overrides)
    state_dict = dict(state_dict)
    if not any(k.startswith("dec_blocks2.") for k in state_dict):
        for key in [k for k in state_dict if k.startswith("dec_blocks.")]:
            state_dict["dec_blocks2." + key[len("dec_blocks."):]] = state_dict[key]
    model = AsymmetricCroCo3DStereo(config)
    random_params = init_params(model, jax.random.key(seed))
    return model, state_dict_to_params(state_dict, model, source, random_init=random_params)


# ---- the three sources ---------------------------------------------------------------------------
def _load_pth(path, overrides, croco, seed):
    from convert import read_pth

    source = str(path)
    checkpoint = read_pth(path)
    state_dict = checkpoint.get("model")
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"checkpoint {source}: no 'model' state dict (keys: {sorted(checkpoint)[:5]})")
    croco_kwargs = _croco_kwargs(checkpoint, source)
    if croco or croco_kwargs is not None or is_croco_state_dict(state_dict):
        if croco_kwargs is None:
            croco_kwargs = {}
            model_string = getattr(checkpoint.get("args"), "model", None)
            if isinstance(model_string, str):
                from convert import parse_model_string

                croco_kwargs = parse_model_string(model_string, source)[1]
        return _from_croco(state_dict, croco_kwargs, source, overrides, seed)
    args = checkpoint.get("args")
    model_string = getattr(args, "model", None)
    if not isinstance(model_string, str):
        raise CheckpointError(f"checkpoint {source}: no args.model string to build the model from")
    config = config_from_model_string(model_string, source, overrides)
    model = AsymmetricCroCo3DStereo(config)
    return model, state_dict_to_params(state_dict, model, source)


def _load_hf(directory, overrides):
    from convert import read_safetensors

    config_path, weights_path = directory / "config.json", directory / "model.safetensors"
    source = str(weights_path)
    try:
        kwargs = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint {config_path}: invalid JSON ({err})") from None
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"checkpoint {config_path}: expected a JSON object of constructor arguments")
    config = _make_config(kwargs, str(config_path), overrides)
    tensors, metadata = read_safetensors(weights_path)
    model = AsymmetricCroCo3DStereo(config)
    return model, state_dict_to_params(tensors, model, source)


def _load_converted(directory, overrides):
    import orbax.checkpoint as ocp

    description = json.loads((directory / CONVERTED_CONFIG).read_text())
    config = _make_config(_decode_config(description["model_config"]), str(directory), overrides)
    model = AsymmetricCroCo3DStereo(config)
    target = jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, jnp.dtype(config.param_dtype)), abstract_params(model)
    )
    with ocp.StandardCheckpointer() as checkpointer:
        try:
            params = checkpointer.restore((directory / CONVERTED_PARAMS).resolve(), target)
        except (ValueError, KeyError) as err:
            message = str(err).splitlines()[0]
            raise CheckpointError(f"checkpoint {directory}: params do not fit its config ({message})") from None
    return model, params


def load_model(path, croco: bool = False, seed: int = 0, **config_overrides):
    """Returns (model, params) from an official `.pth`, an HF folder, or a converted directory.

    croco: treat the checkpoint as CroCo pre-training weights (also detected automatically);
    `seed` then seeds the random heads. `config_overrides`: model_config keys to change.
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: not found")
    if path.is_dir():
        if (path / CONVERTED_CONFIG).is_file():
            return _load_converted(path, config_overrides)
        if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
            return _load_hf(path, config_overrides)
        raise CheckpointError(
            f"checkpoint {path}: directory holds neither {CONVERTED_CONFIG} (converted) nor "
            "config.json + model.safetensors (Hugging Face)"
        )
    if path.suffix == ".safetensors":
        raise CheckpointError(f"checkpoint {path}: pass the folder holding config.json and model.safetensors")
    return _load_pth(path, config_overrides, croco, seed)


# ---- converted directories -----------------------------------------------------------------------
def _encode_config(config):
    def encode(value):
        if isinstance(value, float) and math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if isinstance(value, (tuple, list)):
            return [encode(v) for v in value]
        return value

    return {k: encode(v) for k, v in config.to_dict().items()}


def _decode_config(encoded):
    def decode(value):
        if value in ("inf", "-inf"):
            return float(value)
        if isinstance(value, list):
            return tuple(decode(v) for v in value)
        return value

    return {k: decode(v) for k, v in encoded.items()}


def save_model(out_dir, model, params, source: str | None = None):
    """Writes `params` (orbax) and the model config (JSON) to `out_dir`, which must not exist."""
    import orbax.checkpoint as ocp

    out_dir = Path(os.fspath(out_dir)).resolve()
    if out_dir.exists():
        raise FileExistsError(f"output {out_dir} already exists; choose a new directory")
    out_dir.mkdir(parents=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(out_dir / CONVERTED_PARAMS, params)
    description = {"format_version": FORMAT_VERSION, "source": source, "model_config": _encode_config(model.config)}
    (out_dir / CONVERTED_CONFIG).write_text(json.dumps(description, indent=1))
    return out_dir
