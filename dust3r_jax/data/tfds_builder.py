"""TFDS builders that pack a preprocessed dataset folder into array_record, and the store that
reads it back (with `tfds.data_source`; TensorFlow is never imported).

What is stored: every file the source's loader reads, byte for byte (JPEG/PNG images, 16-bit PNG
or EXR depth, .npz cameras, index files), one record per file:

    {'path': relative path in the preprocessed folder, 'data': the file's bytes}

so the views read from a build are identical to the views read from the folder (the same
decoders run on the same bytes). Records are sorted by a 64-bit hash of their path and the sorted
hashes are saved next to the records (`path_hashes.npy`, 8 bytes per file, memory-mapped when
read): a file lookup is a binary search plus one random access, whatever the size of the
dataset (Habitat-1M packs 15M files), and each read checks the record's path.

    build_source_dataset('Co3d', root='/data/co3d', splits=('train', 'test'), data_dir='/data/tfds')
    store = RecordStore('Co3d', data_dir='/data/tfds')
    ds = Co3d(split='train', store=store, resolution=224)      # same views as ROOT='/data/co3d'

One builder class per official dataset (`Dust3rCo3d`, ..., TFDS names `dust3r_co3d`,
`dust3r_scannetpp`, ...), all
made by `_make_builder` from the source registry: a source only has to provide
`files_to_pack(store, split)`.
"""
import hashlib

import numpy as np
import tensorflow_datasets as tfds

from dust3r_jax.data.files import FolderStore
from dust3r_jax.data.sources import SOURCE_NAMES, get_source
from dust3r_jax.errors import ConfigError, InputError

SPLIT = "files"  # the one TFDS split: all packed files
INDEX_FILE = "path_hashes.npy"  # sorted path hashes; record i holds the file of the i-th hash


def path_hash(relpath):
    """64-bit hash of a relative path (blake2b: stable across processes and machines)."""
    return int.from_bytes(hashlib.blake2b(relpath.encode("utf-8"), digest_size=8).digest(), "little")


class SourceFilesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Packs the files of some splits of one source folder (subclassed per dataset below)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Files of the official preprocessed layout, byte for byte."}
    source_name = None  # a name of dust3r_jax.data.sources.SOURCE_NAMES
    # Nothing is downloaded, so no checksums file; TFDS would otherwise look for one next to this
    # module through `importlib_resources`, which is not a declared dependency of tfds.
    url_infos = None

    def __init__(self, *, root=None, splits=None, **kwargs):
        self.source_root = root
        self.source_splits = tuple(splits) if splits is not None else None
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.source_name} files in the official DUSt3R preprocessed layout.",
            features=tfds.features.FeaturesDict({
                "path": tfds.features.Text(),
                "data": tfds.features.Tensor(shape=(), dtype=np.object_),
            }),
            disable_shuffling=True,  # records stay in `paths` order
            metadata=tfds.core.MetadataDict(),
        )

    def _packed_paths(self):
        if self.source_root is None:
            raise ConfigError(f"{self.name}: building needs root= (the preprocessed {self.source_name} folder)")
        store = FolderStore(self.source_root)
        source = get_source(self.source_name)
        splits = self.source_splits if self.source_splits is not None else getattr(source, "splits", (None,))
        paths = []
        for split in splits:
            paths.extend(source.files_to_pack(store, split))
        return store, list(dict.fromkeys(paths))  # unique, first-seen order

    def _split_generators(self, dl_manager):
        store, paths = self._packed_paths()
        hashes = np.array([path_hash(path) for path in paths], dtype=np.uint64)
        order = np.argsort(hashes, kind="stable")
        sorted_hashes = hashes[order]
        clash = np.flatnonzero(sorted_hashes[1:] == sorted_hashes[:-1])
        if clash.size:  # about 1e-5 for 15M files; never silently serve the wrong file
            first, second = paths[order[clash[0]]], paths[order[clash[0] + 1]]
            raise InputError(f"{self.name}: paths {first!r} and {second!r} have the same 64-bit hash; rename one")
        # self.data_dir is TFDS's temporary build folder here: the index moves with the records
        with (self.data_path / INDEX_FILE).open("wb") as handle:
            np.save(handle, sorted_hashes)
        self.info.metadata.update(source=self.source_name, splits=list(self.source_splits or ()),
                                  num_files=len(paths), index=INDEX_FILE)
        return {SPLIT: self._generate_examples(store, [paths[i] for i in order])}

    def _generate_examples(self, store, paths):
        for i, path in enumerate(paths):
            # zero-padded keys: key order = generation order = hash order
            yield f"{i:012d}", {"path": path, "data": store.read_bytes(path)}


def _builder_name(source_name):
    return f"Dust3r{source_name}"


def _make_builder(source_name):
    cls = type(_builder_name(source_name), (SourceFilesBuilder,), {
        "source_name": source_name,
        "name": f"dust3r_{source_name.lower()}",
        "__doc__": f"Array_record files of a preprocessed {source_name} folder (see module docstring).",
        "__module__": __name__,
    })
    return cls


# one registered builder per official dataset: Dust3rCo3d -> TFDS name 'dust3r_co3d', ...
BUILDERS = {name: _make_builder(name) for name in SOURCE_NAMES}
globals().update({cls.__name__: cls for cls in BUILDERS.values()})


def build_source_dataset(source_name, root, data_dir, splits=None):
    """Pack the `splits` of the `source_name` folder `root` into `data_dir`; returns the builder."""
    if source_name not in BUILDERS:
        raise ConfigError(f"dataset {source_name!r}: unknown, expected one of {sorted(BUILDERS)}")
    builder = BUILDERS[source_name](root=root, splits=splits, data_dir=str(data_dir))
    builder.download_and_prepare()
    return builder


class RecordStore:
    """The files of a TFDS build, served like a `FolderStore` (paths relative to the source root)."""

    def __init__(self, source_name, data_dir):
        if source_name not in BUILDERS:
            raise ConfigError(f"dataset {source_name!r}: unknown, expected one of {sorted(BUILDERS)}")
        name = BUILDERS[source_name].name
        self.name = f"{data_dir}/{name}"
        try:
            builder = tfds.builder(name, data_dir=str(data_dir))
            self.records = tfds.data_source(name, data_dir=str(data_dir), split=SPLIT)
        except Exception as err:  # missing/partial build: TFDS raises several types
            raise InputError(f"TFDS dataset {self.name}: cannot be opened ({type(err).__name__}: {err}); "
                             f"build it with build_source_dataset") from None
        index_path = builder.data_path / INDEX_FILE
        try:
            self.hashes = np.load(str(index_path), mmap_mode="r")
        except (OSError, ValueError) as err:
            raise InputError(f"{index_path}: missing or unreadable ({err}); rebuild the TFDS dataset") from None
        if len(self.hashes) != len(self.records):
            raise InputError(f"{index_path}: {len(self.hashes)} paths for {len(self.records)} records "
                             f"(incomplete build?)")
        self.root = None

    def __len__(self):
        """Number of packed files."""
        return len(self.hashes)

    def describe(self, relpath):
        return f"{self.name}:{relpath}"

    def _record_index(self, relpath):
        key = np.uint64(path_hash(relpath))
        position = int(np.searchsorted(self.hashes, key))
        return position if position < len(self.hashes) and self.hashes[position] == key else None

    def exists(self, relpath):
        return self._record_index(relpath) is not None

    def read_bytes(self, relpath):
        position = self._record_index(relpath)
        if position is None:
            raise InputError(f"{self.describe(relpath)}: file not in the TFDS build (built from an incomplete "
                             f"folder or for other splits?)")
        record = self.records[position]
        path = record["path"].decode() if isinstance(record["path"], bytes) else str(record["path"])
        if path != relpath:
            raise InputError(f"{self.describe(relpath)}: record {position} holds {path!r} "
                             f"({INDEX_FILE} does not match the records)")
        return bytes(record["data"])

    def __repr__(self):
        return f"RecordStore({self.name!r})"


def tfds_stores(data_dir, skip=()):
    """A callable name -> RecordStore of the build in `data_dir` (opened once; None for `skip`)."""
    opened = {}

    def store_of(name):
        if name in skip:
            return None
        if name not in opened:
            opened[name] = RecordStore(name, data_dir)
        return opened[name]

    return store_of
