"""Read `torch.save` checkpoints (`.pth`) without PyTorch, and without trusting them.

A torch checkpoint (torch >= 1.6, the format of every released DUSt3R/CroCo file) is a zip
archive with one top-level folder `<archive>/`:

    <archive>/data.pkl          pickle (protocol 2) of the saved object; tensors are
                                `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`
                                calls, storages are persistent ids
                                `('storage', torch.FloatStorage, '<key>', 'cpu', numel)`
    <archive>/data/<key>        raw bytes of storage <key> (numel elements)
    <archive>/byteorder         'little' or 'big' (absent in old files: little)
    <archive>/version           serialization version

Members may be stored or deflate-compressed (`zipfile` reads both).

Unpickling a checkpoint with plain `pickle` runs whatever callable the file names, so the
unpickler here resolves only an allow-list of globals (tensor rebuild functions, storage
types, `collections.OrderedDict`, `argparse.Namespace`, a few inert builtins) to our own
stand-ins; any other global is refused before anything is called.

Tensors come back as numpy arrays. A contiguous tensor is a view into its storage buffer, so
tensors saved as views of one storage (e.g. DPT's `scratch.layer_rn.{k}` and
`scratch.layer{k+1}_rn`) share memory here as they did in torch; a non-contiguous tensor is
copied to C order, except an expanded one (more elements than its storage, e.g. stride 0),
which stays a read-only strided view. bfloat16 uses `ml_dtypes.bfloat16`.

Not supported (each raises a one-line `CheckpointError`): the legacy pre-1.6 non-zip format,
plain pickles that are not torch zips (refused, never unpickled), TorchScript archives
(`constants.pkl`, code/), tensor subclasses (`torch._tensor._rebuild_from_type_v2`), numpy
objects inside the pickle.
"""
import _compat_pickle
import argparse
import collections
import io
import math
import os
import pickle
import typing
import zipfile
import zlib

import ml_dtypes
import numpy as np

from dust3r_jax.errors import CheckpointError

# `torch.<Name>Storage` -> numpy dtype of one element. The element counts in persistent ids
# and the offsets/strides in `_rebuild_tensor_v2` are in units of this dtype.
STORAGE_DTYPES = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
    # untyped storages count bytes
    "UntypedStorage": np.dtype(np.uint8),
}

# First bytes of a legacy (pre-zip) torch file: pickle protocol 2 of the magic number
# 0x1950a86a20f9469cfc6c as a LONG1 opcode.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_REFUSED_HINT = "only tensors, dicts and argparse.Namespace are allowed"

# Deflate expands at most ~1032x, and real weights barely compress (~1.1x), so a zip whose
# deflated members declare far more than their compressed size is a bomb: refused before any
# byte is inflated. Small archives (test files of zeros, a few MB) stay below the floor.
MAX_DEFLATE_EXPANSION = 64
DEFLATE_FLOOR_BYTES = 256 << 20
# data.pkl holds names, shapes and args only (~100 kB for a ViT-L); tensors are separate records
MAX_PICKLE_BYTES = 64 << 20
# nesting of the unpickled object (a DUSt3R checkpoint: dict -> state dict -> tensor, 3 levels)
MAX_NESTING = 64


# The stand-ins below are tuples: pickle's BUILD opcode can set attributes on any object the
# file has made, and a tuple has none to set.
class StorageType(typing.NamedTuple):
    """Stand-in for a `torch.<Name>Storage` class named by a checkpoint: just its dtype."""
    name: str
    dtype: np.dtype

    def __repr__(self):
        return f"torch.{self.name}"


class Storage(typing.NamedTuple):
    """One storage record: `elements` is a 1-D numpy array (numel,) of the storage dtype."""
    key: str
    elements: np.ndarray


class _LoadedNamespace(argparse.Namespace):
    """What `argparse.Namespace` resolves to while unpickling.

    A BUILD opcode applied to the class object itself would set attributes on it; handing out
    this throwaway subclass (one per load) keeps the real `argparse.Namespace` untouched.
    Instances are turned into plain `argparse.Namespace` after loading (`_to_plain`).
    """


def _tensor_from_storage(storage, storage_offset, size, stride, source):
    """numpy array (size) viewing `storage` at element offset/strides, bounds-checked."""
    if not isinstance(storage, Storage):
        raise CheckpointError(f"checkpoint {source}: tensor built from {type(storage).__name__}, expected a storage")
    try:
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
        offset = int(storage_offset)
    except (TypeError, ValueError):
        raise CheckpointError(f"checkpoint {source}: malformed tensor size/stride/offset in storage "
                              f"'{storage.key}'") from None
    elements = storage.elements
    numel_storage = elements.shape[0]
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"checkpoint {source}: malformed tensor (size {size}, stride {stride}, "
                              f"offset {offset}) in storage '{storage.key}'")
    if 0 in size:
        return np.zeros(size, elements.dtype)
    # the last element the view touches must lie inside the storage (as_strided does not check)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= numel_storage:
        raise CheckpointError(f"checkpoint {source}: tensor of size {size} at offset {offset} reads element "
                              f"{last} of storage '{storage.key}', which holds {numel_storage}")
    contiguous_stride = tuple(math.prod(size[i + 1:]) for i in range(len(size)))
    numel = math.prod(size)
    if all(n == 1 or s == c for n, s, c in zip(size, stride, contiguous_stride)):
        return elements[offset:offset + numel].reshape(size)
    itemsize = elements.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(elements[offset:], shape=size,
                                           strides=tuple(s * itemsize for s in stride), writeable=False)
    if numel > numel_storage:
        # an expanded (stride-0) tensor: a copy could be far larger than the file, keep the view
        return view
    return np.ascontiguousarray(view)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler of `<archive>/data.pkl` that resolves only allow-listed globals."""

    def __init__(self, file, archive, prefix, byteorder, source):
        super().__init__(file, encoding="utf-8")
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._source = source
        self._storages = {}  # key -> Storage, so aliased tensors share one buffer

    # --- globals -------------------------------------------------------------------------
    def find_class(self, module, name):
        qualified = f"{module}.{name}"
        # Python-2 era pickles spell builtins `__builtin__`; map names as pickle itself would.
        module_py3, name_py3 = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module_py3 = _compat_pickle.IMPORT_MAPPING.get(module_py3, module_py3)
        resolved = self._allowed(module_py3, name_py3)
        if resolved is None:
            raise CheckpointError(f"checkpoint {self._source}: refuses to load global '{qualified}' "
                                  f"({_REFUSED_HINT})")
        return resolved

    def _allowed(self, module, name):
        source = self._source
        if module == "torch._utils":
            if name == "_rebuild_tensor_v2":
                def rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                                      backward_hooks=None, metadata=None):
                    return _tensor_from_storage(storage, storage_offset, size, stride, source)
                return rebuild_tensor_v2
            if name == "_rebuild_tensor":
                def rebuild_tensor(storage, storage_offset, size, stride):
                    return _tensor_from_storage(storage, storage_offset, size, stride, source)
                return rebuild_tensor
            if name == "_rebuild_parameter":
                # nn.Parameter saved whole (e.g. `torch.save(model)` leftovers): keep the data
                def rebuild_parameter(data, requires_grad=True, backward_hooks=None):
                    return data
                return rebuild_parameter
            if name == "_rebuild_parameter_with_state":
                def rebuild_parameter_with_state(data, requires_grad=True, backward_hooks=None, state=None):
                    return data
                return rebuild_parameter_with_state
            return None
        if module in ("torch", "torch.storage") and name in STORAGE_DTYPES:
            return StorageType(name, STORAGE_DTYPES[name])
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("argparse", "Namespace"):
            # inert: NEWOBJ makes an empty Namespace, BUILD fills its __dict__
            return type("Namespace", (_LoadedNamespace,), {})
        if module == "builtins" and name in ("set", "frozenset", "complex", "slice"):
            return {"set": set, "frozenset": frozenset, "complex": complex, "slice": slice}[name]
        if (module, name) == ("_codecs", "encode"):
            # protocol-2 pickles store `bytes` as _codecs.encode(text, 'latin1')
            def encode_latin1(text, encoding="latin1"):
                if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
                    raise CheckpointError(f"checkpoint {source}: refuses _codecs.encode with encoding "
                                          f"{encoding!r} ({_REFUSED_HINT})")
                return text.encode("latin1")
            return encode_latin1
        return None

    # --- storages ------------------------------------------------------------------------
    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"checkpoint {self._source}: unsupported persistent id {str(pid)[:80]!r} "
                                  f"(expected ('storage', type, key, location, numel))")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, StorageType):
            raise CheckpointError(f"checkpoint {self._source}: storage '{key}' has unsupported type "
                                  f"{storage_type!r}")
        key = str(key)
        storage = self._storages.get(key)
        if storage is None:
            storage = Storage(key, self._read_storage(key, storage_type.dtype, numel))
            self._storages[key] = storage
        return storage

    def _read_storage(self, key, dtype, numel):
        """(numel,) array of `dtype` from member `<archive>/data/<key>`, native byte order."""
        member = f"{self._prefix}data/{key}"
        try:
            info = self._archive.getinfo(member)
        except KeyError:
            raise CheckpointError(f"checkpoint {self._source}: storage record '{member}' is missing") from None
        if not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"checkpoint {self._source}: storage '{key}' has invalid size {numel!r}")
        nbytes = numel * dtype.itemsize
        if info.file_size < nbytes:
            raise CheckpointError(f"checkpoint {self._source}: storage record '{member}' has "
                                  f"{info.file_size} bytes, expected {nbytes} ({numel} x {dtype.name})")
        buffer = np.empty(nbytes, np.uint8)
        view = memoryview(buffer)
        filled = 0
        try:
            with self._archive.open(info) as stream:
                while filled < nbytes:
                    count = stream.readinto(view[filled:])
                    if not count:
                        break
                    filled += count
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise CheckpointError(f"checkpoint {self._source}: storage record '{member}' is corrupt "
                                  f"({err})") from None
        if filled < nbytes:
            raise CheckpointError(f"checkpoint {self._source}: storage record '{member}' is too short "
                                  f"({filled} of {nbytes} bytes)")
        elements = buffer.view(dtype)
        if self._byteorder != _native_byteorder() and dtype.itemsize > 1:
            # swap each scalar (both halves of a complex) in place via an unsigned view
            width = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
            buffer.view(f"u{width}").byteswap(inplace=True)
        return elements


def _to_plain(obj, source, seen=None, depth=0):
    """Replace loaded `_LoadedNamespace` instances by plain `argparse.Namespace`, in place.

    The pickle machine builds nested containers without recursion, but this walk (and any
    later one) recurses: nesting beyond MAX_NESTING is refused with one line."""
    if depth > MAX_NESTING:
        raise CheckpointError(f"checkpoint {source}: data.pkl nests containers more than {MAX_NESTING} "
                              "levels deep (not a checkpoint)")
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return obj
    seen.add(id(obj))
    if isinstance(obj, _LoadedNamespace):
        return argparse.Namespace(**{k: _to_plain(v, source, seen, depth + 1) for k, v in vars(obj).items()})
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _to_plain(value, source, seen, depth + 1)
    elif isinstance(obj, list):
        obj[:] = [_to_plain(value, source, seen, depth + 1) for value in obj]
    elif isinstance(obj, tuple) and not isinstance(obj, (StorageType, Storage)):
        if type(obj) is tuple:
            return tuple(_to_plain(value, source, seen, depth + 1) for value in obj)
    return obj


def _check_declared_sizes(archive, source, file_size):
    """Every member's declared sizes must fit the file, and inflating must not amplify: checked
    on the central directory, before any member is read or any buffer allocated."""
    deflated, compressed = 0, 0
    for info in archive.infolist():
        if info.header_offset + info.compress_size > file_size:
            raise CheckpointError(f"checkpoint {source}: member '{info.filename}' declares {info.compress_size} "
                                  f"bytes past the end of the file ({file_size} bytes); truncated or corrupt")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise CheckpointError(f"checkpoint {source}: stored member '{info.filename}' declares "
                                      f"{info.file_size} bytes but holds {info.compress_size}; corrupt")
        else:
            deflated += info.file_size
            compressed += info.compress_size
    if deflated > max(DEFLATE_FLOOR_BYTES, MAX_DEFLATE_EXPANSION * compressed):
        raise CheckpointError(f"checkpoint {source}: compressed members would inflate {compressed} bytes to "
                              f"{deflated} (more than {MAX_DEFLATE_EXPANSION}x); refused as a zip bomb")


def _native_byteorder():
    return "little" if np.little_endian else "big"


def _describe_non_zip(head: bytes) -> str:
    """Why a file that is not a zip cannot be a torch checkpoint, from its first bytes."""
    if head.startswith(b"PK"):
        return "truncated or corrupt zip archive (is the download complete?)"
    if head.startswith(_LEGACY_MAGIC):
        return ("legacy (pre-torch-1.6) serialization format, not supported; re-save it with "
                "torch.save(obj, path) in torch >= 1.6")
    if head[:1] == b"\x80":
        return "a plain pickle, not a torch zip checkpoint (refused: pickles are not loaded)"
    if head.startswith(b"\x89PNG"):
        return "a PNG image, not a torch checkpoint"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image, not a torch checkpoint"
    if len(head) >= 9 and head[8:9] == b"{":
        return "looks like a safetensors file; read it with dust3r_jax.checkpoints.read_safetensors"
    if not head:
        return "empty file, not a torch checkpoint"
    return f"not a torch checkpoint (expected a zip archive written by torch.save; starts with {head[:8]!r})"


def _data_pkl_member(archive, source):
    """Name of the `<archive>/data.pkl` member (top-level folder name varies)."""
    names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if not names:
        if "data.pkl" in archive.namelist():
            return "data.pkl"
        if any(n.endswith("constants.pkl") for n in archive.namelist()):
            raise CheckpointError(f"checkpoint {source}: a TorchScript archive, not a torch.save checkpoint")
        raise CheckpointError(f"checkpoint {source}: zip archive without data.pkl (not a torch checkpoint)")
    return names[0]


def _read_text_member(archive, name, default):
    try:
        return archive.read(name).decode("ascii", "replace").strip()
    except KeyError:
        return default


def read_pth(path) -> dict:
    """Load a `torch.save` zip checkpoint as nested dicts/lists of numpy arrays.

    Args:
      path: `.pth`/`.pt`/`.bin` file written by `torch.save` (torch >= 1.6 zip format).
    Returns:
      the saved object; for DUSt3R `{'args': argparse.Namespace, 'model': {name: np.ndarray},
      'epoch': int}`. Tensors keep torch's dtype, shape and layout (NCHW conv kernels, (out, in)
      linear weights).
    Raises:
      CheckpointError (one line naming the file): missing/unreadable file, not a zip, truncated or
      corrupt archive, missing data.pkl or storage record, a global outside the allow-list.
    """
    source = os.fspath(path)
    if not os.path.exists(source):
        raise CheckpointError(f"checkpoint {source}: file not found")
    if os.path.isdir(source):
        raise CheckpointError(f"checkpoint {source}: is a directory, expected a .pth file")
    try:
        with open(source, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise CheckpointError(f"checkpoint {source}: cannot read ({err.strerror})") from None
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError):
        raise CheckpointError(f"checkpoint {source}: {_describe_non_zip(head)}") from None
    with archive:
        _check_declared_sizes(archive, source, os.path.getsize(source))
        pkl_name = _data_pkl_member(archive, source)
        prefix = pkl_name[: -len("data.pkl")]
        byteorder = _read_text_member(archive, f"{prefix}byteorder", "little")
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"checkpoint {source}: unknown byteorder {byteorder!r}")
        if archive.getinfo(pkl_name).file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(f"checkpoint {source}: member '{pkl_name}' declares "
                                  f"{archive.getinfo(pkl_name).file_size} bytes, more than a checkpoint's "
                                  f"data.pkl ({MAX_PICKLE_BYTES} allowed)")
        try:
            pickled = archive.read(pkl_name)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise CheckpointError(f"checkpoint {source}: member '{pkl_name}' is corrupt ({err})") from None
        unpickler = _RestrictedUnpickler(io.BytesIO(pickled), archive, prefix, byteorder, source)
        try:
            obj = unpickler.load()
        except CheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
                AttributeError, MemoryError, OverflowError, RecursionError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(f"checkpoint {source}: corrupt data.pkl ({message})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {source}: holds a {type(obj).__name__}, expected a dict")
    return _to_plain(obj, source)
