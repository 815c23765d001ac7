"""BlendedMVS (official preprocessing): pairs of rendered-from-mesh views of 500 scenes.

Layout under ROOT (datasets_preprocess/preprocess_blendedMVS.py):
    blendedmvs_pairs.npy        structured array, fields read BY POSITION as
                                (seq_high, seq_low, img1, img2, score); `seq_low` also by name
    <seq>/<img:08d>.jpg         RGB, 512x384
    <seq>/<img:08d>.exr         float32 depth (scene units), 0 = invalid
    <seq>/<img:08d>.npz         intrinsics (3, 3) OpenCV, R_cam2world (3, 3), t_cam2world (3,)
with `<seq>` = seq_high as 8 lowercase hex digits then seq_low as 16 (24 characters).

Pair `idx` is row `idx` of the selected pairs; view 0 is `img1`. Split: 'train' keeps the rows with
`seq_low % 10 > 0`, 'val' those with `seq_low % 10 == 0`, None all of them. No random draws besides
the crop's. (The official class applies the split but leaves `self.split` None, visible only in its
repr; here `split` keeps the value given.)
"""
import numpy as np

from dust3r_jax.data.base import ViewDataset
from dust3r_jax.data.files import read_npy
from dust3r_jax.data.sources.rgbd_frames import (camera_arrays, check_depth, check_pose,
                                                 pose_from_rotation_translation, read_image_and_depth,
                                                 stats_repr)
from dust3r_jax.errors import ConfigError, InputError

PAIRS_FILE = "blendedmvs_pairs.npy"
_CAMERA_SHAPES = {"intrinsics": (3, 3), "R_cam2world": (3, 3), "t_cam2world": (3,)}


def load_pairs(store, split):
    """Rows of the pair table kept by `split` as an int array (M, 4): seq_high, seq_low, img1, img2."""
    if split not in (None, "train", "val"):
        raise ConfigError(f"BlendedMVS: split {split!r}, expected 'train', 'val' or None")
    table = read_npy(store, PAIRS_FILE)
    names = table.dtype.names
    if names is None or len(names) < 4 or "seq_low" not in names:
        raise InputError(f"{store.describe(PAIRS_FILE)}: expected a structured array with fields "
                         f"(seq_high, seq_low, img1, img2, score), found dtype {table.dtype}")
    if split == "train":
        table = table[table["seq_low"] % 10 > 0]
    elif split == "val":
        table = table[table["seq_low"] % 10 == 0]
    # uint64 seq_low does not fit int64 for every value: keep Python ints per column
    return [tuple(int(row[k]) for k in range(4)) for row in table.tolist()]


def sequence_name(seq_high, seq_low):
    return f"{seq_high:08x}{seq_low:016x}"


def frame_paths(sequence, image_id):
    """Relative (image, depth, camera) paths of one view."""
    stem = f"{sequence}/{image_id:08d}"
    return f"{stem}.jpg", f"{stem}.exr", f"{stem}.npz"


class BlendedMVS(ViewDataset):
    """`BlendedMVS(split=None, ROOT, resolution, aug_crop, transform, seed)`."""

    dataset_name = "BlendedMVS"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pairs = load_pairs(self.store, self.split)
        self.scenes = sorted({row[1] for row in self.pairs})  # seq_low identifies a scene

    @classmethod
    def files_to_pack(cls, store, split):
        """The pair table and the three files of every view a dataset of this split reads."""
        paths = [PAIRS_FILE]
        views = sorted({(sequence_name(h, l), img) for h, l, *images in load_pairs(store, split) for img in images})
        for sequence, image_id in views:
            paths.extend(frame_paths(sequence, image_id))
        return paths

    def __len__(self):
        return len(self.pairs)

    def _get_views(self, idx, resolution, rng):
        seq_high, seq_low, img1, img2 = self.pairs[idx]
        sequence = sequence_name(seq_high, seq_low)
        views = []
        for image_id in (img1, img2):
            image_path, depth_path, camera_path = frame_paths(sequence, image_id)
            image, depth = read_image_and_depth(self.store, image_path, depth_path)
            camera = camera_arrays(self.store, camera_path, _CAMERA_SHAPES)
            pose = check_pose(self.store, camera_path,
                              pose_from_rotation_translation(camera["R_cam2world"], camera["t_cam2world"]))
            image, depth, intrinsics = self._crop_resize_if_necessary(
                image, depth, np.float32(camera["intrinsics"]), resolution, rng)
            views.append(dict(img=image, depthmap=check_depth(self.store, depth_path, depth), camera_pose=pose,
                              camera_intrinsics=intrinsics, dataset=self.dataset_name, label=sequence,
                              instance=f"{image_id:08d}"))
        return views

    def __repr__(self):
        return stats_repr(self, f"{len(self)} pairs from {len(self.scenes)} scenes")
