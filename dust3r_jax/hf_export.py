"""Params -> a folder in the official Hugging Face format (`config.json` + `model.safetensors`).

The inverse of the HF reader in `dust3r_jax.loading`: tensors get their official names and PyTorch
layouts (`dust3r_jax.checkpoints.name_map.official_key` / `from_flax`), so the folder loads with our
`load_model` and with the official `AsymmetricCroCo3DStereo.from_pretrained` alike. The shipped
model (`dust3r_jax.shipped`) is written this way.
"""
import json
from pathlib import Path

import jax
import numpy as np

# config fields that describe how we compute, not the model (the official constructor has none)
_COMPUTE_ONLY = ("dtype", "head_dtype", "param_dtype", "matmul_precision", "attention")


def official_config(config):
    """The constructor arguments of a model config, as the official HF config.json holds them."""
    values = {k: v for k, v in config.to_dict().items() if k not in _COMPUTE_ONLY}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(values.items())}


def official_state_dict(params, dtype=np.float32):
    """{official key: numpy array in the PyTorch layout} of a params pytree."""
    from dust3r_jax.checkpoints.name_map import from_flax, official_key

    state = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        names = tuple(getattr(entry, "key", str(entry)) for entry in path)
        key = official_key(names)
        state[key] = np.ascontiguousarray(from_flax(key, np.asarray(leaf)).astype(dtype))
    return state


def write_hf_folder(out_dir, config, params, dtype="float32", metadata=None):
    """Writes `out_dir/config.json` and `out_dir/model.safetensors`; returns the two paths."""
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path, weights_path = out_dir / "config.json", out_dir / "model.safetensors"
    # json writes inf as Infinity, as the official HF configs do (conf_mode's upper bound)
    config_path.write_text(json.dumps(official_config(config), indent=2) + "\n")
    save_file(official_state_dict(params, np.dtype(dtype)), str(weights_path),
              # one metadata entry: safetensors writes several in a random order (a Rust HashMap),
              # which would give the same weights a different file checksum at every export
              metadata={"dust3r_jax": json.dumps(metadata, sort_keys=True)} if metadata else None)
    return config_path, weights_path
