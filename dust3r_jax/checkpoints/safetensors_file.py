"""Read `.safetensors` files into numpy, bfloat16 included.

Format (https://github.com/huggingface/safetensors):

    8 bytes      little-endian uint64 N = length of the header
    N bytes      UTF-8 JSON: {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
                              "__metadata__": {str: str}}   (metadata optional)
    rest         byte buffer; tensor `name` is buffer[begin:end], C order, little-endian

The tensors are read by the safetensors library (`safe_open(..., framework="numpy")`). In front of
it, our own check of the header turns a hostile file into one line naming it before anything is
allocated: header length against the file, JSON nesting depth (`json_text`), known dtypes, shape
products in exact integers (numpy's int64 product wraps around) and every tensor inside the file.
Tensors of the dtypes numpy lacks (bfloat16, float8; the Hugging Face copies of many models are
bf16), which the library's numpy reader does not return in every version, are the bytes the
header points at, viewed as the `ml_dtypes` dtype.
"""
import math
import os
import struct

import ml_dtypes
import numpy as np
import safetensors

from dust3r_jax.checkpoints.json_text import parse_json
from dust3r_jax.errors import CheckpointError

# safetensors dtype tag -> numpy dtype (little-endian)
SAFETENSORS_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}
# dtypes numpy lacks (ml_dtypes supplies them): read from the bytes the header points at
_ML_DTYPES = {SAFETENSORS_DTYPES[tag] for tag in ("BF16", "F8_E4M3", "F8_E5M2")}

# a header larger than this is not a real checkpoint (the reference library caps it at 100 MB)
MAX_HEADER_BYTES = 100_000_000
# numpy's limit on dimensions, and a side no real tensor reaches (numpy refuses arrays past 2**63 bytes)
MAX_RANK = 64
MAX_DIM = 2 ** 40


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _parse_header(raw: bytes, buffer_size: int, source: str) -> tuple[dict, dict]:
    """({name: (dtype, shape, begin, end)}, metadata) from the JSON header, validated."""
    header = parse_json(raw, f"safetensors {source}: header")
    if not isinstance(header, dict):
        raise CheckpointError(f"safetensors {source}: header is a {type(header).__name__}, expected an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"safetensors {source}: __metadata__ is not an object of strings")
    entries = {}
    for name, info in header.items():
        where = f"safetensors {source}: tensor '{name}'"
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise CheckpointError(f"{where} lacks dtype/shape/data_offsets")
        dtype = SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise CheckpointError(f"{where} has unsupported dtype {info['dtype']!r} "
                                  f"(supported: {', '.join(SAFETENSORS_DTYPES)})")
        shape, offsets = info["shape"], info["data_offsets"]
        if (not isinstance(shape, list) or len(shape) > MAX_RANK
                or not all(type(s) is int and 0 <= s <= MAX_DIM for s in shape)
                or not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int and o >= 0 for o in offsets)):
            raise CheckpointError(f"{where} has malformed shape {_short(shape)} or data_offsets {_short(offsets)}")
        begin, end = offsets
        # exact integers: numpy's int64 product wraps around for shapes like [2**40, 2**40]
        expected = math.prod(shape) * dtype.itemsize
        if end - begin != expected:
            raise CheckpointError(f"{where}: data_offsets [{begin}, {end}] span {end - begin} bytes, shape "
                                  f"{shape} x {info['dtype']} needs {expected}")
        if end > buffer_size:
            raise CheckpointError(f"safetensors {source}: truncated file: tensor '{name}' ends at byte "
                                  f"{end} of the data buffer, which holds {buffer_size} bytes")
        entries[name] = (dtype, tuple(shape), begin, end)
    return entries, metadata


def read_safetensors(path) -> tuple[dict, dict]:
    """Read every tensor of a safetensors file.

    Args:
      path: `.safetensors` file.
    Returns:
      (tensors, metadata): tensors maps name -> np.ndarray (shape and dtype as stored, in header
      order); metadata is the header's `__metadata__` dict of strings (empty if none). For
      DUSt3R's Hugging Face copy the metadata maps alias names (`...scratch.layer_rn.{k}.weight`)
      to the stored tensor they share.
    Raises:
      CheckpointError (one line naming the file): missing file, truncated file, malformed header.
    """
    source = os.fspath(path)
    if not os.path.exists(source):
        raise CheckpointError(f"safetensors {source}: file not found")
    if not os.path.isfile(source):
        raise CheckpointError(f"safetensors {source}: not a regular file")
    if not np.little_endian:
        raise CheckpointError(f"safetensors {source}: reading on a big-endian host is not supported")
    file_size = os.path.getsize(source)
    with open(source, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"safetensors {source}: truncated file ({file_size} bytes, no header length)")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > min(MAX_HEADER_BYTES, file_size - 8):
            raise CheckpointError(f"safetensors {source}: header length {header_size} exceeds the file "
                                  f"({file_size} bytes); truncated or not a safetensors file")
        raw_header = f.read(header_size)
    entries, metadata = _parse_header(raw_header, file_size - 8 - header_size, source)
    data_start = 8 + header_size
    tensors = {}
    try:
        with safetensors.safe_open(source, framework="numpy") as library:
            for name, (dtype, shape, begin, _) in entries.items():
                if dtype in _ML_DTYPES:
                    tensors[name] = np.fromfile(source, dtype, math.prod(shape), offset=data_start + begin).reshape(shape)
                else:
                    tensors[name] = library.get_tensor(name)
    except safetensors.SafetensorError as err:
        raise CheckpointError(f"safetensors {source}: {err}") from None
    return tensors, {str(k): str(v) for k, v in metadata.items()}
