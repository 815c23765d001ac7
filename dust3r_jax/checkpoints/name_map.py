"""Official state-dict names <-> Flax param paths, and the per-tensor layout transforms.

The Flax model mirrors the official attribute names, so the map is mechanical:
  'enc_blocks.3.attn.qkv.weight'                 -> ('enc_blocks_3', 'attn', 'qkv', 'kernel')      (Linear: W.T)
  'enc_norm.weight'                              -> ('enc_norm', 'scale')                          (LayerNorm)
  'patch_embed.proj.weight'                      -> ('patch_embed', 'proj', 'kernel')              (Conv2d: OIHW -> HWIO)
  'downstream_head1.dpt.act_postprocess.0.1.weight'
                                                 -> (..., 'act_postprocess_0', 'layers_1', 'kernel') (ConvTranspose2d: IOHW -> HWIO)
  'downstream_head1.dpt.head.4.bias'             -> (..., 'head', 'layers_4', 'bias')
Keys that the official model holds but never uses or holds twice are listed in IGNORED_KEYS and
ALIAS_KEYS (the aliases are checked to be identical to the tensors they alias).
"""
import re

import numpy as np

# numbered containers whose index joins the name (`enc_blocks.3` -> `enc_blocks_3`); any other
# number is an nn.Sequential index (`head.4` -> `head/layers_4`).
_INDEXED = ("enc_blocks", "dec_blocks", "dec_blocks2", "act_postprocess")
_TRANSPOSED_CONV = re.compile(r"act_postprocess\.[01]\.1\.weight$")
# 'scratch.layer_rn.{k}' are the same tensors as 'scratch.layer{k+1}_rn' in the official module.
_ALIAS = re.compile(r"^(.*\.scratch\.)layer_rn\.(\d)\.weight$")

# present in official checkpoints, unused by DUSt3R's forward (CroCo's pre-training leftovers)
IGNORED_KEYS = re.compile(r"^(mask_token|prediction_head\..*|enc_pos_embed|dec_pos_embed)$")


def alias_target(key: str) -> str | None:
    """'...scratch.layer_rn.0.weight' -> '...scratch.layer1_rn.weight'; None for other keys."""
    match = _ALIAS.match(key)
    return f"{match.group(1)}layer{int(match.group(2)) + 1}_rn.weight" if match else None


def flax_path(key: str) -> tuple[str, ...]:
    """The Flax param path of an official state-dict key (see the module docstring)."""
    parts = key.split(".")
    path: list[str] = []
    for part in parts[:-1]:
        if part.isdigit():
            if path and path[-1] in _INDEXED:
                path[-1] = f"{path[-1]}_{part}"
            else:
                path.append(f"layers_{part}")
        else:
            path.append(part)
    leaf = parts[-1]
    if leaf == "weight":
        leaf = "scale" if "norm" in path[-1] else "kernel"
    return tuple(path) + (leaf,)


def to_flax(key: str, tensor: np.ndarray) -> np.ndarray:
    """PyTorch layout -> Flax layout of one tensor."""
    if tensor.ndim == 2:  # Linear (out, in) -> (in, out)
        return tensor.T
    if tensor.ndim == 4:
        if _TRANSPOSED_CONV.search(key):  # ConvTranspose2d (in, out, kh, kw) -> (kh, kw, in, out)
            return tensor.transpose(2, 3, 0, 1)
        return tensor.transpose(2, 3, 1, 0)  # Conv2d (out, in, kh, kw) -> (kh, kw, in, out)
    return tensor


def official_key(path: tuple[str, ...]) -> str:
    """Inverse of `flax_path` (for messages and export)."""
    parts: list[str] = []
    for name in path[:-1]:
        match = re.fullmatch(r"(.*)_(\d+)", name)
        if name.startswith("layers_"):
            parts.append(name[len("layers_"):])
        elif match and match.group(1) in _INDEXED:
            parts += [match.group(1), match.group(2)]
        else:
            parts.append(name)
    leaf = path[-1]
    parts.append("weight" if leaf in ("kernel", "scale") else leaf)
    return ".".join(parts)


def from_flax(key: str, array: np.ndarray) -> np.ndarray:
    """Flax layout -> PyTorch layout (inverse of `to_flax`)."""
    if array.ndim == 2:
        return array.T
    if array.ndim == 4:
        if _TRANSPOSED_CONV.search(key):
            return array.transpose(2, 3, 0, 1)
        return array.transpose(3, 2, 0, 1)
    return array
