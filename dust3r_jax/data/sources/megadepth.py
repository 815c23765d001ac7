"""MegaDepth (official preprocessing): internet photos of landmarks with SfM depth.

Layout under ROOT (datasets_preprocess/preprocess_megadepth.py):
    all_metadata.npz                 scenes (str '<scene> <subscene>'), images (str names ending
                                     in '.jpg'), pairs (structured: scene_id, im1_id, im2_id, score)
    <scene>/<subscene>/<name>.jpg    RGB (the name already ends in .jpg: '...jpg.jpg')
    <scene>/<subscene>/<name>.exr    float32 depth (SfM units), 0 = invalid / sky
    <scene>/<subscene>/<name>.npz    intrinsics (3, 3) OpenCV, cam2world (4, 4), float64

Pair `idx` is row `idx` of `pairs`; view 0 is `im1_id`. No random draws besides the crop's.

Split: the official class is meant to drop scenes 0015 and 0022 for 'train' and keep only them for
'val', but the split never reaches the selection, so BOTH splits are all pairs (the official `MegaDepth` class, the
fixtures show it). That is the default here, for parity with the published training and test
sets; `apply_split=True` applies the intended selection instead.
"""
import numpy as np

from dust3r_jax.data.base import ViewDataset
from dust3r_jax.data.files import read_npz
from dust3r_jax.data.sources.rgbd_frames import npz_camera_view, stats_repr
from dust3r_jax.errors import ConfigError, InputError

METADATA_FILE = "all_metadata.npz"
VAL_SCENES = ("0015", "0022")  # scenes held out for validation by the official class


def load_metadata(store, split, apply_split=False):
    """(scenes, images, pairs) with pairs an int array (M, 3): scene_id, im1_id, im2_id."""
    data = read_npz(store, METADATA_FILE)
    missing = [key for key in ("scenes", "images", "pairs") if key not in data]
    if missing:
        raise InputError(f"{store.describe(METADATA_FILE)}: missing arrays {missing}")
    scenes, images, table = data["scenes"], data["images"], data["pairs"]
    # read by position, as the official unpacking does: a structured array (the preprocessing's)
    # or a plain (M, >=3) numeric array
    if table.dtype.names is not None and len(table.dtype.names) >= 3:
        pairs = np.stack([np.asarray(table[name]) for name in table.dtype.names[:3]], axis=-1)
    elif table.dtype.names is None and table.ndim == 2 and table.shape[1] >= 3 and np.issubdtype(table.dtype, np.number):
        pairs = table[:, :3]
    else:
        raise InputError(f"{store.describe(METADATA_FILE)}: 'pairs' should be a structured array "
                         f"(scene_id, im1_id, im2_id, score), found {table.dtype} {table.shape}")
    pairs = pairs.astype(np.int64)
    if apply_split:
        if split not in ("train", "val"):
            raise ConfigError(f"MegaDepth: split {split!r}, expected 'train' or 'val' with apply_split=True")
        is_val_scene = np.array([str(scene).startswith(VAL_SCENES) for scene in scenes], dtype=bool)
        keep = is_val_scene[pairs[:, 0]] if split == "val" else ~is_val_scene[pairs[:, 0]]
        pairs = pairs[keep]
        if not len(pairs):
            raise InputError(f"{store.describe(METADATA_FILE)}: no pair left for split {split!r}")
    if len(pairs) and (pairs.min() < 0 or pairs[:, 0].max() >= len(scenes) or pairs[:, 1:].max() >= len(images)):
        raise InputError(f"{store.describe(METADATA_FILE)}: 'pairs' refers to scenes/images that do not exist")
    return scenes, images, pairs


def frame_paths(scene_entry, image_name):
    """Relative (image, depth, camera) paths of one view, and its label '<scene>/<subscene>'."""
    parts = str(scene_entry).split()
    if len(parts) != 2:
        raise InputError(f"MegaDepth {METADATA_FILE}: scene entry {str(scene_entry)!r} is not '<scene> <subscene>'")
    label = "/".join(parts)
    stem = f"{label}/{image_name}"
    return (f"{stem}.jpg", f"{stem}.exr", f"{stem}.npz"), label


class MegaDepth(ViewDataset):
    """`MegaDepth(split, ROOT, resolution, aug_crop, transform, seed, apply_split=False)`."""

    dataset_name = "MegaDepth"

    def __init__(self, *, apply_split=False, **kwargs):
        super().__init__(**kwargs)
        self.apply_split = apply_split
        self.scenes, self.images, self.pairs = load_metadata(self.store, self.split, apply_split)

    @classmethod
    def files_to_pack(cls, store, split, apply_split=False):
        paths = [METADATA_FILE]
        scenes, images, pairs = load_metadata(store, split, apply_split)
        views = sorted({(int(row[0]), int(image_id)) for row in pairs for image_id in row[1:]})
        for scene_id, image_id in views:
            paths.extend(frame_paths(scenes[scene_id], str(images[image_id]))[0])
        return paths

    def __len__(self):
        return len(self.pairs)

    def _get_views(self, idx, resolution, rng):
        scene_id, im1_id, im2_id = (int(v) for v in self.pairs[idx])
        views = []
        for image_id in (im1_id, im2_id):
            name = str(self.images[image_id])
            (image_path, depth_path, camera_path), label = frame_paths(self.scenes[scene_id], name)
            views.append(npz_camera_view(self, image_path, depth_path, camera_path, resolution, rng, label, name))
        return views

    def __repr__(self):
        return stats_repr(self, f"{len(self)} pairs from {len(self.scenes)} scenes")
