"""Load a DUSt3R model from any official checkpoint, or from our converted orbax directory.

    model, params = load_model("DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth")   # official torch.save
    model, params = load_model("dust3r_hf_dir/")            # config.json + model.safetensors
    model, params = load_model("converted_dir/")            # written by save_model / `dust3r-jax convert`
    model, params = load_model("CroCo_V2_ViTLarge_BaseDecoder.pth", head_type="dpt")  # pre-training

The model config is inferred from the checkpoint itself: `args.model` of a `.pth` (rewritten as the
official `load_model` does: `PatchEmbedDust3R`, `landscape_only=False`), HF `config.json`, or
CroCo's `croco_kwargs`/`args.model`. Keyword overrides change the config (e.g. `dtype="bfloat16"`, or
`landscape_only=True, patch_embed_cls="ManyAR_PatchEmbed"` for training). Unlike the official
`strict=False` load, a missing, unexpected or mis-shaped tensor is an error naming the file and key;
only `croco=True` lets the heads (and only they) start random. Hyper-parameters are validated
(`model_config.validate`) and every tensor is checked to be stored in full before anything is
built or converted, so a small hostile file cannot make us allocate a large model.
"""
import json
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import meta

from dust3r_jax.errors import CheckpointError, ConfigError, CrocoCheckpointError
from dust3r_jax.model import model_class
from dust3r_jax.model_config import MAST3R_DEFAULTS, is_mast3r, model_config

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
def state_dict_to_params(state_dict, model, source, may_be_missing=None, fill=None):
    """Maps an official state dict (numpy, torch layouts) onto the params of `model`.

    Every param must be present, except those for which `may_be_missing(official_key)` is true
    (CroCo pre-training checkpoints have no heads): `fill(paths)` returns {path: array} for them.
    """
    from dust3r_jax.checkpoints.name_map import IGNORED_KEYS, alias_target, flax_path, official_key, to_flax

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
    required = [p for p in missing if may_be_missing is None or not may_be_missing(official_key(p))]
    if required:
        names = ", ".join(f"'{official_key(p)}'" for p in required[:3])
        raise CheckpointError(
            f"checkpoint {source}: has no key {names}{' ...' if len(required) > 3 else ''} "
            f"({len(required)} missing)"
        )
    if missing:
        for path, value in fill(missing).items():
            _set(params, path, value)
    return params


def check_stored_in_full(state_dict, source) -> None:
    """Refuses tensors that are views of shared or expanded storage (except official aliases).

    A real checkpoint stores each parameter once; a hostile one can declare a huge model whose
    tensors all view one small buffer (the same storage, or stride 0), and converting them would
    allocate the full model. Compares the tensors' total bytes with the distinct bytes they read.
    """
    from dust3r_jax.checkpoints.name_map import IGNORED_KEYS, alias_target

    spans, total = [], 0
    for key, tensor in state_dict.items():
        if IGNORED_KEYS.match(key) or alias_target(key) is not None:
            continue
        tensor = np.asarray(tensor)
        if tensor.size == 0:
            continue
        start = tensor.__array_interface__["data"][0]
        low = start + sum(min(0, (n - 1) * s) for n, s in zip(tensor.shape, tensor.strides))
        high = start + sum(max(0, (n - 1) * s) for n, s in zip(tensor.shape, tensor.strides)) + tensor.itemsize
        spans.append((low, high))
        total += tensor.nbytes
    distinct, end = 0, None
    for low, high in sorted(spans):
        if end is None or low >= end:
            distinct += high - low
            end = high
        elif high > end:
            distinct += high - end
            end = high
    if total > distinct:
        raise CheckpointError(
            f"checkpoint {source}: its tensors declare {total} bytes but share or repeat storage "
            f"holding {distinct}; every parameter must be stored in full"
        )


def _torch_shape(key, flax_shape):
    """The PyTorch shape of a tensor whose Flax shape is `flax_shape` (for error messages)."""
    from dust3r_jax.checkpoints.name_map import from_flax

    return tuple(from_flax(key, np.empty(flax_shape, np.uint8)).shape)


# ---- configs from checkpoints --------------------------------------------------------------------
def config_from_model_string(model_string, source, overrides):
    """`args.model` of an official checkpoint -> our config, as the official load_model reads it."""
    from dust3r_jax.checkpoints import official_load_model_string, parse_model_string

    class_name, kwargs = parse_model_string(official_load_model_string(model_string, source), source)
    if class_name == "AsymmetricMASt3R":  # mast3r.model.load_model makes the same edits
        kwargs = {**MAST3R_DEFAULTS, **kwargs}
    elif class_name != "AsymmetricCroCo3DStereo" or is_mast3r(kwargs):
        raise CheckpointError(f"checkpoint {source}: args.model builds {class_name}"
                              f"{' with MASt3R arguments' if is_mast3r(kwargs) else ''}, "
                              "expected AsymmetricCroCo3DStereo or AsymmetricMASt3R")
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
        from dust3r_jax.checkpoints import parse_model_string

        return parse_model_string(model_string, source)[1]
    return None


def is_croco_state_dict(state_dict) -> bool:
    return not any(k.startswith("downstream_head") for k in state_dict)


def _is_head(key: str) -> bool:
    return key.startswith("downstream_head")


def _random_params(model, paths, seed):
    """{path: random init} of only `paths`: the unused part of the init is dead code in the jit,
    so a CroCo ViT-L does not allocate a second, random trunk."""
    def init(key):
        flat = dict(_flatten(meta.unbox(model.init(key, *_dummy_views(model.config))["params"])))
        return {path: flat[path] for path in paths}

    return jax.jit(init)(jax.random.key(seed))


def _from_croco(state_dict, kwargs, source, overrides, seed):
    """DUSt3R initialised from CroCo: the second decoder copies the first, heads are random.

    Only the heads may be missing: a file without the trunk is not CroCo pre-training."""
    # CroCo-only constructor arguments with no DUSt3R meaning
    kwargs = {k: v for k, v in kwargs.items() if k not in ("mask_ratio",)}
    config = _make_config(kwargs, source, overrides)
    state_dict = dict(state_dict)
    if not any(k.startswith("dec_blocks2.") for k in state_dict):
        for key in [k for k in state_dict if k.startswith("dec_blocks.")]:
            state_dict["dec_blocks2." + key[len("dec_blocks."):]] = state_dict[key]
    model = model_class(config)(config)
    params = state_dict_to_params(state_dict, model, source, may_be_missing=_is_head,
                                  fill=lambda paths: _random_params(model, paths, seed))
    return model, params


def _model_string_kwargs(checkpoint, source):
    model_string = getattr(checkpoint.get("args"), "model", None)
    if not isinstance(model_string, str):
        return {}
    from dust3r_jax.checkpoints import parse_model_string

    return parse_model_string(model_string, source)[1]


# ---- the three sources ---------------------------------------------------------------------------
def _load_pth(path, overrides, croco, seed):
    from dust3r_jax.checkpoints import read_pth

    source = str(path)
    checkpoint = read_pth(path)
    state_dict = checkpoint.get("model")
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"checkpoint {source}: no 'model' state dict (keys: {sorted(map(str, checkpoint))[:5]})")
    if not state_dict:
        raise CheckpointError(f"checkpoint {source}: its 'model' state dict is empty")
    check_stored_in_full(state_dict, source)
    croco_kwargs = _croco_kwargs(checkpoint, source)
    if croco:
        kwargs = croco_kwargs if croco_kwargs is not None else _model_string_kwargs(checkpoint, source)
        return _from_croco(state_dict, kwargs, source, overrides, seed)
    if croco_kwargs is not None or is_croco_state_dict(state_dict):
        # the official strict=False load would leave random heads; only an explicit request may
        raise CrocoCheckpointError(
            f"checkpoint {source}: has no downstream_head* tensors; this looks like CroCo pre-training "
            "weights: pass --croco / croco=True to start the heads from random values"
        )
    args = checkpoint.get("args")
    model_string = getattr(args, "model", None)
    if not isinstance(model_string, str):
        raise CheckpointError(f"checkpoint {source}: no args.model string to build the model from")
    config = config_from_model_string(model_string, source, overrides)
    model = model_class(config)(config)
    return model, state_dict_to_params(state_dict, model, source)


def _read_json_object(path, what):
    """A JSON object from `path`; one-line CheckpointError for bad UTF-8, bad JSON or deep nesting."""
    from dust3r_jax.checkpoints import parse_json

    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path}: cannot read ({err.strerror})") from None
    value = parse_json(raw, f"checkpoint {path}")
    if not isinstance(value, dict):
        raise CheckpointError(f"checkpoint {path}: expected a JSON object of {what}")
    return value


def _load_hf(directory, overrides):
    from dust3r_jax.checkpoints import read_safetensors

    config_path, weights_path = directory / "config.json", directory / "model.safetensors"
    source = str(weights_path)
    kwargs = _read_json_object(config_path, "constructor arguments")
    config = _make_config(kwargs, str(config_path), overrides)
    tensors, metadata = read_safetensors(weights_path)
    check_stored_in_full(tensors, source)
    model = model_class(config)(config)
    return model, state_dict_to_params(tensors, model, source)


def _load_converted(directory, overrides):
    import orbax.checkpoint as ocp

    description = _read_json_object(directory / CONVERTED_CONFIG, "the model description")
    encoded = description.get("model_config")
    if not isinstance(encoded, dict):
        raise CheckpointError(f"checkpoint {directory / CONVERTED_CONFIG}: no 'model_config' object")
    config = _make_config(_decode_config(encoded), str(directory), overrides)
    model = model_class(config)(config)
    target = jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, jnp.dtype(config.param_dtype)), abstract_params(model)
    )
    with ocp.StandardCheckpointer() as checkpointer:
        try:
            params = checkpointer.restore((directory / CONVERTED_PARAMS).resolve(), target)
        except (ValueError, KeyError, FileNotFoundError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(f"checkpoint {directory}: params do not fit its config ({message})") from None
    return model, params


def load_model(path, croco: bool = False, seed: int = 0, **config_overrides):
    """Returns (model, params) from an official `.pth`, an HF folder, a converted directory, or the
    name of a model shipped in the package (`dust3r_jax.shipped.available()`, e.g. "procedural").

    croco: the checkpoint is CroCo pre-training weights: the heads (and only they) may be missing
    and start random, seeded by `seed`. Without it, every tensor must be present; a file that looks
    like CroCo raises CrocoCheckpointError. `config_overrides`: model_config keys to change.
    """
    path = Path(os.fspath(path))
    if not path.exists():
        from dust3r_jax import shipped

        if shipped.is_model_name(str(path)):  # "procedural": a model shipped in the package
            return _load_hf(shipped.shipped_folder(str(path)), config_overrides)
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
