"""Dataset arithmetic and dataset strings (dust3r/datasets/base/easy_dataset.py).

    N @ D   ResizedDataset: N pairs per epoch drawn from D by a permutation seeded `epoch + 777`
            (repeated end to end when N > len(D)); `set_epoch` must be called before use.
    k * D   MulDataset: every pair of D repeated k times (item i is D[i // k]); does NOT forward
            `set_epoch` (as the official class).
    A + B   CatDataset: concatenation; `set_epoch` forwarded; all members share one resolution list.

A tuple index `(i, ar_idx)` passes through every wrapper with `ar_idx` unchanged. The operators
are those of `DatasetArithmetic`, the base of every dataset (`dust3r_jax.data.base.ViewDataset`
derives from it) and of the wrappers, so base imports this module and not the other way round.

`parse_dataset(string, roots=..., defaults=...)` builds a mixture from the official syntax, e.g.
`"100_000 @ Co3d(split='train', aug_crop=16, mask_bg='rand', resolution=224, transform=ColorJitter)
 + 100_000 @ ARKitScenes(aug_crop=256, resolution=224)"`. It parses with `dust3r_jax.literal`, never
`eval`: only the dataset classes, `+`, `*`, `@`, unary `+` and literal arguments are accepted (the
names `ImgNorm` / `ColorJitter` are accepted as transform values). `ROOT` may be omitted when `roots`
maps the class name to a folder (the published strings omit it); `defaults` supplies per-class
keyword defaults (e.g. `{'ARKitScenes': {'split': 'train'}}` for the published strings).
"""
import ast

import numpy as np

from dust3r_jax import literal
from dust3r_jax.data.sources import SOURCE_NAMES, get_source
from dust3r_jax.data.views import TRANSFORMS
from dust3r_jax.errors import ConfigError, InputError

# the permutation seed of `N @ D` and of the batched sampler is epoch + EPOCH_SEED_OFFSET
EPOCH_SEED_OFFSET = 777


class DatasetArithmetic:
    """`N @ D`, `k * D` and `A + B` on datasets (EasyDataset, dust3r/datasets/base/easy_dataset.py):
    the base of every dataset (`ViewDataset`) and of the wrappers below."""

    def __add__(self, other):
        return CatDataset([self, other])

    def __rmul__(self, factor):
        return MulDataset(factor, self)

    def __rmatmul__(self, size):
        return ResizedDataset(size, self)

    def set_epoch(self, epoch):
        """Nothing to do for a leaf dataset (`N @ D` draws its pairs per epoch)."""

    def set_stream_seed(self, seed):
        """Seed of the unseeded generators, applied at their next first call (see `ViewDataset`)."""

    def set_index_seed(self, seed):
        """Make unseeded generators a function of (seed, idx) (see `ViewDataset`)."""


class _Wrapper(DatasetArithmetic):
    """Shared forwarding of the wrappers."""

    @property
    def resolutions(self):
        return self.dataset.resolutions

    def set_stream_seed(self, seed):
        self.dataset.set_stream_seed(seed)

    def set_index_seed(self, seed):
        self.dataset.set_index_seed(seed)

    def leaves(self):
        return leaves_of(self.dataset)


class ResizedDataset(_Wrapper):
    """`N @ D`: N pairs per epoch, a fresh permutation of D per epoch."""

    def __init__(self, new_size, dataset):
        if not isinstance(new_size, (int, np.integer)) or isinstance(new_size, bool) or new_size <= 0:
            raise ConfigError(f"'N @ dataset': N must be a positive int, found {new_size!r}")
        self.new_size = int(new_size)
        self.dataset = dataset
        self.index_map = None

    def __len__(self):
        return self.new_size

    def set_epoch(self, epoch):
        """Draw this epoch's pairs: a permutation seeded `epoch + 777`, repeated, cut to N."""
        perm = np.random.default_rng(epoch + EPOCH_SEED_OFFSET).permutation(len(self.dataset))
        repeats = 1 + (self.new_size - 1) // len(self.dataset)
        self.index_map = np.concatenate([perm] * repeats)[: self.new_size]

    def __getitem__(self, index):
        if self.index_map is None:
            raise RuntimeError(f"{self!r}: call set_epoch(epoch) before indexing an 'N @ dataset'")
        if isinstance(index, tuple):
            idx, ar_idx = index
            return self.dataset[int(self.index_map[idx]), ar_idx]
        return self.dataset[int(self.index_map[index])]

    def __repr__(self):
        return f"{self.new_size:_} @ {self.dataset!r}"


class MulDataset(_Wrapper):
    """`k * D`: each pair of D repeated k times."""

    def __init__(self, factor, dataset):
        if not isinstance(factor, (int, np.integer)) or isinstance(factor, bool) or factor <= 0:
            raise ConfigError(f"'k * dataset': k must be a positive int, found {factor!r}")
        self.factor = int(factor)
        self.dataset = dataset

    def __len__(self):
        return self.factor * len(self.dataset)

    def __getitem__(self, index):
        if isinstance(index, tuple):
            idx, ar_idx = index
            return self.dataset[idx // self.factor, ar_idx]
        return self.dataset[index // self.factor]

    def __repr__(self):
        return f"{self.factor}*{self.dataset!r}"


class CatDataset(DatasetArithmetic):
    """`A + B`: concatenation of datasets sharing one resolution list."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        first = tuple(self.datasets[0].resolutions)
        for dataset in self.datasets[1:]:
            if tuple(dataset.resolutions) != first:
                raise ConfigError(f"'A + B': resolutions differ: {list(first)} vs {list(dataset.resolutions)} "
                                  f"({dataset!r})")
        self.cum_sizes = np.cumsum([len(dataset) for dataset in self.datasets])

    @property
    def resolutions(self):
        return self.datasets[0].resolutions

    def __len__(self):
        return int(self.cum_sizes[-1])

    def set_epoch(self, epoch):
        for dataset in self.datasets:
            dataset.set_epoch(epoch)

    def set_stream_seed(self, seed):
        for dataset in self.datasets:
            dataset.set_stream_seed(seed)

    def set_index_seed(self, seed):
        for dataset in self.datasets:
            dataset.set_index_seed(seed)

    def leaves(self):
        return [leaf for dataset in self.datasets for leaf in leaves_of(dataset)]

    def __getitem__(self, index):
        idx, ar_idx = index if isinstance(index, tuple) else (index, None)
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for a dataset of {len(self)} pairs")
        member = int(np.searchsorted(self.cum_sizes, idx, "right"))
        local = idx - (int(self.cum_sizes[member - 1]) if member > 0 else 0)
        return self.datasets[member][local if ar_idx is None else (local, ar_idx)]

    def __repr__(self):
        return " + ".join(repr(dataset) for dataset in self.datasets)


def leaves_of(dataset):
    """The leaf datasets (sources) of a mixture, left to right."""
    return dataset.leaves() if hasattr(dataset, "leaves") else [dataset]


# ------------------------------------------------------------------------------------------------
# dataset strings


def _build(node, roots, defaults, stores):
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Add):
            return _build(node.left, roots, defaults, stores) + _build(node.right, roots, defaults, stores)
        if isinstance(node.op, (ast.Mult, ast.MatMult)):
            count = literal.literal(node.left, "dataset string: left of '*' / '@'")
            dataset = _build(node.right, roots, defaults, stores)
            return count * dataset if isinstance(node.op, ast.Mult) else count @ dataset
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):  # '+ D' is D
        return _build(node.operand, roots, defaults, stores)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name, arg_nodes, written = literal.call(node, "dataset string", names=TRANSFORMS)
        if name not in SOURCE_NAMES:
            raise ConfigError(f"dataset string: unknown dataset {name!r}, expected one of {sorted(SOURCE_NAMES)}")
        kwargs = {**(defaults or {}).get(name, {}), **written}
        args = [literal.literal(arg, f"dataset string: {name}(...)", names=TRANSFORMS) for arg in arg_nodes]
        if "ROOT" not in kwargs and name in (roots or {}):
            kwargs["ROOT"] = roots[name]
        if stores is not None and "ROOT" not in kwargs:
            store = stores(name) if callable(stores) else stores.get(name)
            if store is not None:
                kwargs["store"] = store
        cls = get_source(name)
        try:
            return cls(*args, **kwargs)
        except TypeError as err:
            raise ConfigError(f"dataset string: {name}(...): {err}") from None
    raise ConfigError(f"dataset string: {ast.unparse(node)!r} is not a dataset, 'N @ D', 'k * D' or 'A + B'")


# keyword defaults that make the published (the official README's training section) training strings runnable: they write
# `ARKitScenes(...)` without its required split
PUBLISHED_DEFAULTS = {"ARKitScenes": {"split": "train"}}


def parse_dataset(text, roots=None, defaults=None, stores=None, tfds_data_dir=None):
    """Build the dataset a string describes (official syntax, no eval).

    text: e.g. "1000 @ Co3d(split='train', ROOT='/data/co3d', resolution=224) + ...";
    roots: {class name: folder} used when a call has no ROOT; stores: {class name: store} or a
    callable name -> store (e.g. a TFDS `RecordStore`) used when a call has no ROOT;
    tfds_data_dir: read every dataset without ROOT/roots entry from the TFDS builds in this
    folder; defaults: {class name: {kwarg: value}} (see PUBLISHED_DEFAULTS).
    """
    if tfds_data_dir is not None and stores is None:
        from dust3r_jax.data.tfds_builder import tfds_stores

        stores = tfds_stores(tfds_data_dir, skip=set(roots or ()))
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"dataset string: empty or not a string: {text!r}")
    tree = literal.parse(text, f"dataset string {literal.shorten(text.strip(), 80)!r}")
    try:
        return _build(tree, roots, defaults, stores)
    except InputError:
        raise
    except Exception as err:
        raise ConfigError(f"dataset string {text.strip()[:80]!r}: {type(err).__name__}: {err}") from None
