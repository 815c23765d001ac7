"""Waymo Open Dataset (official preprocessing): driving scenes with sparse LiDAR depth.

Layout under ROOT (datasets_preprocess/preprocess_waymo.py):
    waymo_pairs.npz             scenes (str: the '.tfrecord' segment names, suffix kept),
                                frames (str '<frame:05d>_<camera 1..5>'), pairs (P, 3) int:
                                scene index, frame index of view 0, frame index of view 1
    <scene>/<frame>.jpg         RGB, long side 512
    <scene>/<frame>.exr         float32 SPARSE depth in metres (projected LiDAR points, 0 elsewhere)
    <scene>/<frame>.npz         intrinsics (3, 3), cam2world (4, 4) float64, distortion (5,) unused

Pair `idx` is row `idx` of `pairs`. No random draws besides the crop's; `split` is accepted and
ignored, as officially. Not part of the published training mixes.
"""
import numpy as np

from dust3r_jax.data.base import ViewDataset
from dust3r_jax.data.files import read_npz
from dust3r_jax.data.sources.rgbd_frames import npz_camera_view, stats_repr
from dust3r_jax.errors import InputError

PAIRS_FILE = "waymo_pairs.npz"


def load_pairs(store):
    """(scenes, frames, pairs) with pairs an int array (P, 3): scene, frame of view 0, frame of view 1."""
    data = read_npz(store, PAIRS_FILE)
    missing = [key for key in ("scenes", "frames", "pairs") if key not in data]
    if missing:
        raise InputError(f"{store.describe(PAIRS_FILE)}: missing arrays {missing}")
    scenes, frames, pairs = data["scenes"], data["frames"], np.asarray(data["pairs"])
    if pairs.ndim != 2 or pairs.shape[1] != 3 or not np.issubdtype(pairs.dtype, np.integer):
        raise InputError(f"{store.describe(PAIRS_FILE)}: 'pairs' should be (P, 3) integers, found "
                         f"{pairs.dtype} {pairs.shape}")
    # the official loader asserts that the pairs use every scene index up to the last one
    if not len(pairs) or pairs[:, 0].max() != len(scenes) - 1 or pairs.min() < 0 or pairs[:, 1:].max() >= len(frames):
        raise InputError(f"{store.describe(PAIRS_FILE)}: 'pairs' does not match {len(scenes)} scenes and "
                         f"{len(frames)} frames (the largest scene index must be {len(scenes) - 1})")
    return scenes, frames, pairs.astype(np.int64)


def frame_paths(scene, frame):
    """Relative (image, depth, camera) paths of one view."""
    stem = f"{scene}/{frame}"
    return f"{stem}.jpg", f"{stem}.exr", f"{stem}.npz"


class Waymo(ViewDataset):
    """`Waymo(ROOT, resolution, aug_crop, transform, seed)`; `split` is ignored."""

    dataset_name = "Waymo"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scenes, self.frames, self.pairs = load_pairs(self.store)

    @classmethod
    def files_to_pack(cls, store, split=None):
        scenes, frames, pairs = load_pairs(store)
        paths = [PAIRS_FILE]
        for scene_id, frame_id in sorted({(int(row[0]), int(f)) for row in pairs for f in row[1:]}):
            paths.extend(frame_paths(str(scenes[scene_id]), str(frames[frame_id])))
        return paths

    def __len__(self):
        return len(self.pairs)

    def _get_views(self, idx, resolution, rng):
        scene_id, frame1, frame2 = (int(v) for v in self.pairs[idx])
        scene = str(self.scenes[scene_id])
        views = []
        for frame_id in (frame1, frame2):
            frame = str(self.frames[frame_id])
            image_path, depth_path, camera_path = frame_paths(scene, frame)
            views.append(npz_camera_view(self, image_path, depth_path, camera_path, resolution, rng, scene, frame))
        return views

    def __repr__(self):
        return stats_repr(self, f"{len(self)} pairs from {len(self.scenes)} scenes")
