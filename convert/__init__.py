"""Importers of official DUSt3R/CroCo checkpoints, without PyTorch.

Readers return plain numpy state dicts; the name map onto Flax params lives with the model.

    from convert import read_pth, read_safetensors, parse_model_string, official_load_model_string
    ckpt = read_pth("DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth")   # {'args', 'model', 'epoch'}
    tensors, metadata = read_safetensors("model.safetensors")
    name, kwargs = parse_model_string(official_load_model_string(ckpt["args"].model))
"""
from convert.json_text import parse_json
from convert.model_string import official_load_model_string, parse_model_string
from convert.safetensors_file import read_safetensors
from convert.torch_pickle import read_pth

__all__ = ["official_load_model_string", "parse_json", "parse_model_string", "read_pth", "read_safetensors"]
