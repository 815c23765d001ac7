"""Readers of official DUSt3R/CroCo checkpoints, without PyTorch, and the name map onto our params.

One module per job:
- `torch_pickle`: `.pth` files (torch zip archives) through a restricted unpickler: no PyTorch,
  nothing in the file is ever called;
- `safetensors_file`: `.safetensors` files (the safetensors library, bfloat16 through ml_dtypes);
- `json_text`: JSON of checkpoint folders, with a nesting limit;
- `model_string`: the constructor string a checkpoint carries (`args.model`), read without `eval`;
- `name_map`: official state-dict names and layouts <-> Flax param paths and layouts.

Readers return plain numpy state dicts; `dust3r_jax.loading` builds the model from them.

    from dust3r_jax.checkpoints import read_pth, read_safetensors, parse_model_string, official_load_model_string
    ckpt = read_pth("DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth")   # {'args', 'model', 'epoch'}
    tensors, metadata = read_safetensors("model.safetensors")
    name, kwargs = parse_model_string(official_load_model_string(ckpt["args"].model))
"""
from dust3r_jax.checkpoints.json_text import parse_json
from dust3r_jax.checkpoints.model_string import official_load_model_string, parse_model_string
from dust3r_jax.checkpoints.safetensors_file import read_safetensors
from dust3r_jax.checkpoints.torch_pickle import read_pth

__all__ = ["official_load_model_string", "parse_json", "parse_model_string", "read_pth", "read_safetensors"]
