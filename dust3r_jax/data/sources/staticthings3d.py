"""StaticThings3D (official preprocessing): static FlyingThings3D scenes, stereo cameras, two renders.

Layout under ROOT (datasets_preprocess/preprocess_staticthings3d.py):
    staticthings_pairs.npy                      structured array, fields read BY POSITION as
                                                (scene b'A'|b'B'|b'C', seq, cam1 b'l'|b'r', im1,
                                                cam2, im2)
    TRAIN/<scene>/<seq:04d>/<left|right>/<nnnn>_clean.jpg, <nnnn>_final.jpg   the two render passes
    TRAIN/<scene>/<seq:04d>/<left|right>/<nnnn>.exr    float32 depth
    TRAIN/<scene>/<seq:04d>/<left|right>/<nnnn>.npz    intrinsics (3, 3), cam2world (4, 4), float32

Pair `idx` is row `idx`; view 0 is (cam1, im1). Draws per call, in order: `mask_bg` ('rand' ->
`integers(2)`, 1 = on), then per view one `integers(2)` for the pass (1 -> clean, 0 -> final)
before that view's crop draws. With mask_bg on, depth above 200 (the far background of the
synthetic scenes) becomes 0 (invalid).

The official loader uses the stored camera arrays without a cast, so a float64 file makes it fail
its dtype check; here they are cast to float32 (identical for the float32 files of the official
preprocessing). `split` must be None (there is only a training set).
"""
import numpy as np

from dust3r_jax.data.base import ViewDataset
from dust3r_jax.data.files import read_npy
from dust3r_jax.data.sources.co3d import parse_mask_bg
from dust3r_jax.data.sources.rgbd_frames import (camera_arrays, check_depth, check_pose, read_image_and_depth,
                                                 stats_repr)
from dust3r_jax.errors import ConfigError, InputError

PAIRS_FILE = "staticthings_pairs.npy"
CAMERAS = {"l": "left", "r": "right"}
PASSES = ("final", "clean")  # indexed by the coin: 1 -> clean
MAX_FOREGROUND_DEPTH = 200  # mask_bg: depth beyond this is the far background
_CAMERA_SHAPES = {"intrinsics": (3, 3), "cam2world": (4, 4)}


def _text(value):
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def load_pairs(store):
    """[(scene_dir 'TRAIN/<A|B|C>/<seq:04d>', (camera, frame) of view 0, (camera, frame) of view 1)]."""
    table = read_npy(store, PAIRS_FILE)
    if table.dtype.names is None or len(table.dtype.names) < 6:
        raise InputError(f"{store.describe(PAIRS_FILE)}: expected a structured array with fields "
                         f"(scene, seq, cam1, im1, cam2, im2), found dtype {table.dtype}")
    pairs = []
    for row in table.tolist():
        scene, seq, cam1, im1, cam2, im2 = row[:6]
        cams = (_text(cam1), _text(cam2))
        if not all(cam in CAMERAS for cam in cams):
            raise InputError(f"{store.describe(PAIRS_FILE)}: camera {cams} is not 'l' or 'r' in row {row}")
        pairs.append((f"TRAIN/{_text(scene)}/{int(seq):04d}",
                      (CAMERAS[cams[0]], int(im1)), (CAMERAS[cams[1]], int(im2))))
    return pairs


def frame_paths(scene_dir, camera, frame, render_pass):
    """Relative (image, depth, camera) paths of one view."""
    stem = f"{scene_dir}/{camera}/{frame:04d}"
    return f"{stem}_{render_pass}.jpg", f"{stem}.exr", f"{stem}.npz"


class StaticThings3D(ViewDataset):
    """`StaticThings3D(ROOT, mask_bg='rand', resolution, aug_crop, transform, seed)`; ROOT may be positional."""

    dataset_name = "StaticThings3D"

    def __init__(self, ROOT=None, *, mask_bg="rand", **kwargs):
        super().__init__(ROOT=ROOT, **kwargs)
        if self.split is not None:
            raise ConfigError(f"StaticThings3D: split {self.split!r}, expected None (there is one training set)")
        self.mask_bg = parse_mask_bg(mask_bg)
        self.pairs = load_pairs(self.store)

    @classmethod
    def files_to_pack(cls, store, split=None):
        paths = [PAIRS_FILE]
        views = sorted({view for scene_dir, *pair in load_pairs(store) for view in ((scene_dir,) + v for v in pair)})
        for scene_dir, camera, frame in views:
            clean, depth, cam = frame_paths(scene_dir, camera, frame, "clean")
            paths.extend((clean, frame_paths(scene_dir, camera, frame, "final")[0], depth, cam))
        return paths

    def __len__(self):
        return len(self.pairs)

    def _get_views(self, idx, resolution, rng):
        scene_dir, *pair = self.pairs[idx]
        mask_bg = self.mask_bg == True or (self.mask_bg == "rand" and bool(rng.integers(2)))  # noqa: E712 (1 counts)
        views = []
        for camera, frame in pair:
            render_pass = PASSES[int(rng.integers(2))]
            image_path, depth_path, camera_path = frame_paths(scene_dir, camera, frame, render_pass)
            image, depth = read_image_and_depth(self.store, image_path, depth_path)
            arrays = camera_arrays(self.store, camera_path, _CAMERA_SHAPES)
            pose = check_pose(self.store, camera_path, np.float32(arrays["cam2world"]))
            if mask_bg:
                depth[depth > MAX_FOREGROUND_DEPTH] = 0
            image, depth, intrinsics = self._crop_resize_if_necessary(
                image, depth, np.float32(arrays["intrinsics"]), resolution, rng)
            views.append(dict(img=image, depthmap=check_depth(self.store, depth_path, depth), camera_pose=pose,
                              camera_intrinsics=intrinsics, dataset=self.dataset_name, label=scene_dir,
                              instance=f"{camera}_{image_path.rsplit('/', 1)[-1]}"))
        return views

    def __repr__(self):
        return stats_repr(self, f"{len(self)} pairs")
