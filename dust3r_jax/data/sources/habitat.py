"""Habitat (official preprocessing): five rendered views per sub-scene of indoor scans.

Layout under ROOT (datasets_preprocess/habitat/):
    Habitat_{size}_scenes_{split}.txt         one '<dir>/<key>' per line; pair idx = line idx
    <dir>/<key>_<i>.jpeg                       RGB 512x512, i = 1..5
    <dir>/<key>_<i>_depth.exr                  HALF-float z-depth in metres (read as float32)
    <dir>/<key>_<i>_camera_params.json         camera_intrinsics (3x3, OpenCV), size (unused),
                                               R_cam2world (3x3), t_cam2world (3)

Views: draw `c = choice([1, 2, 3, 4])`; the pair is view index 0 (file _1, which overlaps all the
others) and view index c (file _{c+1}). A view whose camera pose is not finite is replaced by the
next file (_{(k mod 5) + 1} for k = index, index + 1, ...): every attempt runs the whole load and
crop, with its random draws, and the `instance` keeps naming the view index asked for, not the file
used (as the official `Habitat` class does). The images are square, so a non-square resolution draws each view's orientation.
"""
import numpy as np

from dust3r_jax.data.base import ViewDataset
from dust3r_jax.data.files import read_json, read_text_lines
from dust3r_jax.data.sources.rgbd_frames import (camera_arrays, check_depth, pose_from_rotation_translation,
                                                 read_image_and_depth, stats_repr)
from dust3r_jax.errors import ConfigError, InputError

VIEWS_PER_SCENE = 5
_CAMERA_SHAPES = {"camera_intrinsics": (3, 3), "R_cam2world": (3, 3), "t_cam2world": (3,)}


def scene_list_path(size, split):
    return f"Habitat_{size}_scenes_{split}.txt"


def load_scenes(store, size, split):
    """The '<dir>/<key>' lines of the scene list (one pair each)."""
    if split is None:
        raise ConfigError("Habitat: split is required ('train' or 'val')")
    return read_text_lines(store, scene_list_path(size, split))


def view_paths(scene, file_index):
    """Relative (image, depth, camera) paths of file `_<file_index>` (1..5) of a '<dir>/<key>' scene."""
    stem = f"{scene}_{file_index}"
    return f"{stem}.jpeg", f"{stem}_depth.exr", f"{stem}_camera_params.json"


def split_scene(scene):
    """'<dir>/<key>' -> (label '<dir>', key); the label of a scene at the root is '.' as officially."""
    directory, _, key = scene.rpartition("/")
    return directory or ".", key


class Habitat(ViewDataset):
    """`Habitat(size, split, ROOT, resolution, aug_crop, transform, seed)`; `size` names the scene list."""

    dataset_name = "Habitat"

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.scenes = load_scenes(self.store, size, self.split)

    @classmethod
    def files_to_pack(cls, store, split=None, size=None):
        """The scene list(s) and the 15 files of each listed scene.

        `size` None packs every `Habitat_<size>_scenes_<split>.txt` of the folder, and `split` None
        every split's (what a TFDS build does by default: the build then serves all sizes and
        splits; a scene listed several times is packed once). Listing needs a folder store.
        """
        if size is None or split is None:
            pattern = scene_list_path("*" if size is None else size, "*" if split is None else split)
            lists = sorted(path.name for path in store.root.glob(pattern))
            if not lists:
                raise InputError(f"{store.describe(pattern)}: no Habitat scene list matches")
            size_split = [name[len("Habitat_"):-len(".txt")].split("_scenes_") for name in lists]
        else:
            size_split = [(size, split)]
        paths = []
        for list_size, list_split in size_split:
            paths.append(scene_list_path(list_size, list_split))
            for scene in load_scenes(store, list_size, list_split):
                for file_index in range(1, VIEWS_PER_SCENE + 1):
                    paths.extend(view_paths(scene, file_index))
        return list(dict.fromkeys(paths))

    def __len__(self):
        return len(self.scenes)

    def _load_one_view(self, scene, view_index, resolution, rng):
        """Load and crop file `_<view_index + 1>`; returns the view fields and the depth file path."""
        image_path, depth_path, camera_path = view_paths(scene, view_index + 1)
        image, depth = read_image_and_depth(self.store, image_path, depth_path)
        camera = camera_arrays(self.store, camera_path, _CAMERA_SHAPES, data=read_json(self.store, camera_path))
        pose = pose_from_rotation_translation(camera["R_cam2world"], camera["t_cam2world"])
        image, depth, intrinsics = self._crop_resize_if_necessary(
            image, depth, np.float32(camera["camera_intrinsics"]), resolution, rng)
        return image, depth, intrinsics, pose, depth_path

    def _get_views(self, idx, resolution, rng):
        scene = self.scenes[idx]
        label, key = split_scene(scene)
        views = []
        for view_index in (0, int(rng.choice([1, 2, 3, 4]))):
            for attempt in range(view_index, view_index + VIEWS_PER_SCENE):  # next file on a broken pose
                image, depth, intrinsics, pose, depth_path = self._load_one_view(
                    scene, attempt % VIEWS_PER_SCENE, resolution, rng)
                if np.isfinite(pose).all():
                    break
            else:
                raise InputError(f"{self.store.describe(scene)}: the camera poses of all {VIEWS_PER_SCENE} views "
                                 f"(_1 .. _{VIEWS_PER_SCENE}_camera_params.json) have NaN or infinite values")
            views.append(dict(img=image, depthmap=check_depth(self.store, depth_path, depth), camera_pose=pose,
                              camera_intrinsics=intrinsics, dataset=self.dataset_name, label=label,
                              instance=f"{key}_{view_index}"))
        return views

    def __repr__(self):
        return stats_repr(self, f"{len(self)} pairs")
