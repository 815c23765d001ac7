"""The base class of every training dataset: seeding, crop/resize, the fields of a view.

A dataset is a list of PAIRS. `ds[idx]` (one resolution) or `ds[(idx, ar_idx)]` returns two view
dicts built exactly as the official `BaseStereoViewDataset` builds them (dust3r/datasets/base/base_stereo_view_dataset.py):

    img               (H, W, 3) float32 in [-1, 1] (NHWC once batched; the official one is CHW)
    depthmap          (H, W) float32, finite, 0 = invalid
    camera_pose       (4, 4) float32 cam2world (OpenCV camera axes)
    camera_intrinsics (3, 3) float32 OpenCV convention (pixel centres at integers)
    pts3d             (H, W, 3) float32 world points; valid_mask (H, W) bool
    true_shape        (2,) int32 (H, W) of the image before the landscape transposition
    idx               (idx, ar_idx, v) with idx the index this (leaf) dataset received
    dataset, label, instance  str;  rng  int (4 bytes of the generator, drawn last)

Portrait views are transposed to landscape (`transpose_to_landscape`, dust3r/datasets/base/base_stereo_view_dataset.py). A subclass implements `__len__`,
`_get_views(idx, resolution, rng)` returning per view `img` (PIL), `depthmap`, `camera_pose`,
`camera_intrinsics`, `dataset`, `label`, `instance`, and reads files through `self.store`
(a `FolderStore` on `ROOT`, or the `RecordStore` of a TFDS build: same bytes, same views).

Random numbers (`BaseStereoViewDataset.__getitem__`): with a truthy `seed` the generator is `default_rng(seed + idx)` at
every call, so a view is a function of its index. Without one, the dataset owns one stream,
created at its first call from `stream_seed` (the loader sets it per worker and epoch; the
official code uses `torch.initial_seed()`), and every call continues it. A third mode, not in the
official code, is `set_index_seed(s)`: unseeded datasets then draw from `default_rng((s, idx))`,
so views are a function of (s, idx) even with parallel readers; the loader uses it (with `s`
derived from a run seed and the epoch) when asked for deterministic, resumable data.
"""
import numpy as np

from dust3r_jax.data import views as view_ops
from dust3r_jax.data.files import FolderStore
from dust3r_jax.data.mixture import DatasetArithmetic
from dust3r_jax.errors import ConfigError, InputError

# dtypes a view's array fields may have (anything else, e.g. a float64 pose, is a bug)
_ALLOWED_DTYPES = (np.float32, np.bool_, np.int32, np.int64, np.uint8)
# last word of the seed of a view's colour-jitter generator (keeps it apart from the view stream)
_JITTER_STREAM = 0xC011


def parse_resolutions(resolution, name="resolution"):
    """`S`, `(W, H)` or a list of those -> list of (W, H) int tuples, W >= H; index = ar_idx."""
    if resolution is None:
        raise ConfigError(f"{name}: missing (an int S, a (W, H) pair or a list of pairs)")
    entries = resolution if isinstance(resolution, list) else [resolution]
    parsed = []
    for entry in entries:
        if isinstance(entry, (int, np.integer)) and not isinstance(entry, bool):
            width = height = int(entry)
        else:
            try:
                width, height = entry
            except (TypeError, ValueError):
                raise ConfigError(f"{name}: {entry!r} is not an int or a (W, H) pair") from None
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (width, height)):
            raise ConfigError(f"{name}: {entry!r} must have integer entries")
        if width < height or height <= 0:
            raise ConfigError(f"{name}: {entry!r} must be (W, H) with W >= H > 0 (landscape)")
        parsed.append((int(width), int(height)))
    if not parsed:
        raise ConfigError(f"{name}: empty list")
    return parsed


class ViewDataset(DatasetArithmetic):
    """Base of the nine sources. Subclasses set `dataset_name` and implement the pair logic."""

    dataset_name = None  # the `dataset` field of the views, e.g. 'Co3d_v2'
    num_views = 2

    def __init__(self, *, split=None, resolution=None, transform="ImgNorm", aug_crop=False, seed=None,
                 ROOT=None, store=None):
        self.split = split
        self.resolutions = parse_resolutions(resolution)
        self.transform = view_ops.make_transform(transform)
        self.aug_crop = aug_crop
        self.seed = seed
        if store is None:
            if ROOT is None:
                raise ConfigError(f"{type(self).__name__}: ROOT (the preprocessed dataset folder) is required")
            store = FolderStore(ROOT)
        self.store = store
        self.ROOT = str(ROOT) if ROOT is not None else getattr(store, "root", None)
        self.stream_seed = None
        self.index_seed = None
        self._rng = None

    # -- what subclasses implement ----------------------------------------------------------
    def __len__(self):
        raise NotImplementedError

    def _get_views(self, idx, resolution, rng):
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------------
    def set_stream_seed(self, seed):
        """Restart the unseeded stream from `default_rng(seed)` at the next call."""
        self.stream_seed = seed
        self._rng = None
        if hasattr(self.transform, "reseed"):
            self.transform.reseed(None if seed is None else (int(seed), _JITTER_STREAM))

    def set_index_seed(self, seed):
        """Unseeded datasets draw from `default_rng((seed, idx))` per call (None: back to the stream)."""
        self.index_seed = seed

    def _crop_resize_if_necessary(self, image, depthmap, intrinsics, resolution, rng, info=None):
        """`_crop_resize_if_necessary` of the official base dataset; `info` names the frame in errors."""
        return view_ops.crop_resize_view(image, depthmap, intrinsics, resolution, rng, self.aug_crop, info=info)

    def _generator(self, idx):
        if self.seed:
            self._rng = np.random.default_rng(self.seed + idx)
        elif self.index_seed is not None:
            return np.random.default_rng((int(self.index_seed), idx))
        elif self._rng is None:
            self._rng = np.random.default_rng(self.stream_seed)
        return self._rng

    def __getitem__(self, index):
        if isinstance(index, (tuple, list)):
            idx, ar_idx = (int(v) for v in index)
        else:
            if len(self.resolutions) != 1:
                raise InputError(f"{self!r}: index {index!r} needs an aspect-ratio index (idx, ar_idx): "
                                 f"{len(self.resolutions)} resolutions")
            idx, ar_idx = int(index), 0
        rng = self._generator(idx)
        views = self._get_views(idx, self.resolutions[ar_idx], rng)
        if len(views) != self.num_views:
            raise AssertionError(f"{type(self).__name__}._get_views returned {len(views)} views")
        views = [self._finish_view(view, (idx, ar_idx, v)) for v, view in enumerate(views)]
        for view in views:  # drawn last: fingerprints the generator state
            view["rng"] = int.from_bytes(rng.bytes(4), "big")
        for view in views:
            view_ops.transpose_to_landscape(view)
        return views

    def _finish_view(self, view, idx_tuple):
        """Add idx, true_shape, transformed img, pts3d and valid_mask; check the fields (1.4)."""
        name = f"{view.get('dataset')} {view.get('label')}/{view.get('instance')}"
        if "pts3d" in view or "valid_mask" in view:
            raise AssertionError(f"{name}: _get_views must not set pts3d/valid_mask")
        if not np.isfinite(view["depthmap"]).all():
            raise InputError(f"{name}: depth map has NaN or infinite values")
        view["idx"] = idx_tuple
        width, height = view["img"].size
        view["true_shape"] = np.int32((height, width))
        view["img"] = self._transform_image(view["img"], idx_tuple)
        if "camera_intrinsics" not in view:
            raise AssertionError(f"{name}: no camera_intrinsics")
        if "camera_pose" not in view:
            view["camera_pose"] = np.full((4, 4), np.nan, dtype=np.float32)
        elif not np.isfinite(view["camera_pose"]).all():
            raise InputError(f"{name}: camera pose has NaN or infinite values")
        view["pts3d"], view["valid_mask"] = view_ops.depth_to_world_points(
            view["depthmap"], view["camera_intrinsics"], view["camera_pose"])
        for key, value in view.items():
            if isinstance(value, np.ndarray) and value.dtype.type not in _ALLOWED_DTYPES:
                raise AssertionError(f"{name}: field {key} has dtype {value.dtype}")
        return view

    def _transform_image(self, image, idx_tuple):
        """Apply the transform; a random one (ColorJitter) gets a generator of (seed, idx, v) when
        views are seeded (its official counterpart draws from torch's RNG: not reproducible)."""
        if not getattr(self.transform, "takes_rng", False):
            return self.transform(image)
        base = self.seed if self.seed else self.index_seed
        if base is None:
            return self.transform(image)  # its own stream (reseeded by set_stream_seed)
        idx, _, v = idx_tuple
        return self.transform(image, rng=np.random.default_rng((int(base), int(idx), int(v), _JITTER_STREAM)))

    def _resolution_str(self):
        return "[" + ";".join(f"{w}x{h}" for w, h in self.resolutions) + "]"

    def __repr__(self):
        return (f"{type(self).__name__}({len(self)} pairs,split={self.split!r},seed={self.seed},"
                f"resolutions={self._resolution_str()},transform={self.transform!r})")
