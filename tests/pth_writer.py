"""Test-only writer of `torch.save`-format checkpoints, without PyTorch.

Lets tests make `.pth` files (CroCo- or DUSt3R-style checkpoints, bfloat16 tensors, aliased
tensors, big-endian storages, hostile pickles) that `dust3r_jax.checkpoints.read_pth` must read.
The layout is the one torch >= 1.6 writes (see dust3r_jax/checkpoints/torch_pickle.py): a zip with
`<archive>/data.pkl` (pickle protocol 2, tensors as `torch._utils._rebuild_tensor_v2` calls over
persistent storage ids), `<archive>/data/<key>` raw storages, `byteorder`, `version`.

Arrays that share memory (the same object twice, or numpy views of one base array with the
same dtype) are written as views of one storage, exactly as torch writes aliased tensors.
"""
import argparse
import collections
import io
import pickle
import zipfile

import ml_dtypes
import numpy as np

# numpy dtype -> torch storage class name
_STORAGE_NAMES = {
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(ml_dtypes.bfloat16): "BFloat16Storage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
    np.dtype(np.complex64): "ComplexFloatStorage",
    np.dtype(np.complex128): "ComplexDoubleStorage",
}


class GlobalRef:
    """A `module.name` global written as a GLOBAL opcode (torch itself is never imported)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle requires reduce callables to be callable
        raise RuntimeError("GlobalRef is only a pickling placeholder")


class StorageRef:
    def __init__(self, key: str, elements: np.ndarray):
        self.key, self.elements = key, elements  # elements: (numel,) C-contiguous


class TensorRef:
    def __init__(self, storage: StorageRef, offset: int, shape, strides):
        self.storage, self.offset, self.shape, self.strides = storage, offset, shape, strides

    def __reduce__(self):
        hooks = collections.OrderedDict()
        return (GlobalRef("torch._utils", "_rebuild_tensor_v2"),
                (self.storage, self.offset, tuple(self.shape), tuple(self.strides), False, hooks))


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


class _TorchStylePickler(pickle._Pickler):  # the pure-Python pickler lets us emit GLOBALs by hand
    def __init__(self, file):
        super().__init__(file, protocol=2)
        self.storages = {}  # id(root array) -> StorageRef

    def _new_key(self) -> str:
        used = {storage.key for storage in self.storages.values()}
        return next(str(i) for i in range(len(used) + 1) if str(i) not in used)

    def _tensor(self, array: np.ndarray) -> TensorRef:
        if array.dtype not in _STORAGE_NAMES:
            raise TypeError(f"no torch storage type for dtype {array.dtype}")
        root = _root(array)
        if root.dtype == array.dtype and root.flags.c_contiguous and root.size:
            # share one storage among all views of `root`
            storage = self.storages.get(id(root))
            if storage is None:
                storage = self.storages[id(root)] = StorageRef(self._new_key(), root.reshape(-1))
            itemsize = array.dtype.itemsize
            start = array.__array_interface__["data"][0] - root.__array_interface__["data"][0]
            return TensorRef(storage, start // itemsize, array.shape, [s // itemsize for s in array.strides])
        own = np.ascontiguousarray(array)
        storage = StorageRef(self._new_key(), own.reshape(-1))
        self.storages[id(own)] = storage
        strides = [int(np.prod(own.shape[i + 1:])) for i in range(own.ndim)]
        return TensorRef(storage, 0, own.shape, strides)

    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            self.storages.setdefault(("ref", obj.key), obj)  # hand-made TensorRefs bring their own
            name = _STORAGE_NAMES[obj.elements.dtype]
            return ("storage", GlobalRef("torch", name), obj.key, "cpu", int(obj.elements.size))
        return None

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, GlobalRef):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
            return
        if isinstance(obj, np.ndarray):
            obj = self._tensor(obj)
        super().save(obj, save_persistent_id)


def pickle_torch_style(obj) -> tuple[bytes, dict]:
    """(data.pkl bytes, {key: (numel,) array}) for `obj` (dicts/lists/Namespace of arrays)."""
    buffer = io.BytesIO()
    pickler = _TorchStylePickler(buffer)
    pickler.dump(obj)
    return buffer.getvalue(), {s.key: s.elements for s in pickler.storages.values()}


def write_zip_checkpoint(path, data_pkl: bytes, storages: dict, *, archive_name="archive",
                         compress=False, byteorder="little"):
    """Write the torch zip layout around a given data.pkl and {key: (numel,) array} storages."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr(f"{archive_name}/data.pkl", data_pkl)
        archive.writestr(f"{archive_name}/.format_version", "1")
        archive.writestr(f"{archive_name}/byteorder", byteorder)
        for key, elements in storages.items():
            elements = np.ascontiguousarray(elements)
            if byteorder != ("little" if np.little_endian else "big") and elements.dtype.itemsize > 1:
                width = elements.dtype.itemsize // 2 if elements.dtype.kind == "c" else elements.dtype.itemsize
                elements = elements.view(f"u{width}").byteswap().view(elements.dtype)
            archive.writestr(f"{archive_name}/data/{key}", elements.tobytes())
        archive.writestr(f"{archive_name}/version", "3\n")


def write_pth(path, obj, **zip_options):
    """torch.save(obj, path) for `obj` made of dicts, lists, tuples, scalars, Namespace, arrays."""
    data_pkl, storages = pickle_torch_style(obj)
    write_zip_checkpoint(path, data_pkl, storages, **zip_options)


def write_dust3r_checkpoint(path, state_dict: dict, model_string: str, epoch: int = 100, **zip_options):
    """A checkpoint shaped like dust3r's `checkpoint-final.pth`: {'args', 'model', 'epoch'}."""
    args = argparse.Namespace(model=model_string, pretrained=None, seed=0, lr=1e-4)
    write_pth(path, {"args": args, "model": collections.OrderedDict(state_dict), "epoch": epoch}, **zip_options)


def reduce_call_pickle(module: str, name: str, argument: str) -> bytes:
    """Protocol-2 pickle of the call `module.name(argument)` - what a hostile data.pkl holds."""
    encoded = argument.encode("utf-8")
    return (b"\x80\x02" + pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii")
            + pickle.BINUNICODE + len(encoded).to_bytes(4, "little") + encoded
            + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP)
