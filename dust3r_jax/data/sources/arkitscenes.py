"""ARKitScenes (official preprocessing): pairs of iPhone frames listed in one metadata file.

Layout under ROOT (datasets_preprocess/preprocess_arkitscenes.py), `<Split>` = `Training` (split='train') or `Test` (split='test'):
    <Split>/all_metadata.npz          scenes (video ids), sceneids (per image), images (basenames
                                      '<video>_<timestamp>.png'), intrinsics (N,3,3) OpenCV,
                                      trajectories (N,4,4) cam2world, pairs (M, >=2) image indices
    <Split>/<video>/vga_wide/<basename .jpg>      RGB (already rotated so that the sky is up)
    <Split>/<video>/lowres_depth/<basename>       uint16 millimetres, 0 = invalid

Pair `idx` is row `idx` of `pairs`; view 0 is its first image. No random draws besides the crop's.
"""
import numpy as np

from dust3r_jax.data.base import ViewDataset
from dust3r_jax.data.files import read_image, read_npz, read_png_array
from dust3r_jax.errors import ConfigError, InputError

_METADATA_KEYS = ("scenes", "sceneids", "images", "intrinsics", "trajectories", "pairs")


class PairListDataset(ViewDataset):
    """Datasets whose `all_metadata.npz` lists images, cameras and pairs (ARKitScenes, ScanNet++)."""

    @classmethod
    def metadata_path(cls, split):
        raise NotImplementedError

    @classmethod
    def load_metadata(cls, store, split):
        path = cls.metadata_path(split)
        data = read_npz(store, path)
        missing = [key for key in _METADATA_KEYS if key not in data]
        if missing:
            raise InputError(f"{store.describe(path)}: missing arrays {missing}")
        pairs = np.asarray(data["pairs"])
        if pairs.ndim != 2 or pairs.shape[1] < 2:
            raise InputError(f"{store.describe(path)}: 'pairs' has shape {pairs.shape}, expected (M, >=2)")
        return dict(scenes=data["scenes"], sceneids=data["sceneids"], images=data["images"],
                    intrinsics=data["intrinsics"].astype(np.float32),
                    trajectories=data["trajectories"].astype(np.float32),
                    pairs=pairs[:, :2].astype(int))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.check_split(self.split)
        meta = self.load_metadata(self.store, self.split)
        self.scenes, self.sceneids, self.images = meta["scenes"], meta["sceneids"], meta["images"]
        self.intrinsics, self.trajectories, self.pairs = meta["intrinsics"], meta["trajectories"], meta["pairs"]

    @classmethod
    def check_split(cls, split):
        raise NotImplementedError

    @classmethod
    def image_paths(cls, split, scene, basename):
        """Relative (rgb, depth) paths of one image."""
        raise NotImplementedError

    @classmethod
    def files_to_pack(cls, store, split):
        cls.check_split(split)
        meta = cls.load_metadata(store, split)
        paths = [cls.metadata_path(split)]
        for image_idx in sorted(set(meta["pairs"].ravel().tolist())):
            scene = str(meta["scenes"][meta["sceneids"][image_idx]])
            paths.extend(cls.image_paths(split, scene, str(meta["images"][image_idx])))
        return paths

    def __len__(self):
        return len(self.pairs)

    def _get_views(self, idx, resolution, rng):
        views = []
        for image_idx in self.pairs[idx]:
            scene = str(self.scenes[self.sceneids[image_idx]])
            basename = str(self.images[image_idx])
            rgb_path, depth_path = self.image_paths(self.split, scene, basename)
            image = read_image(self.store, rgb_path)
            depth = read_png_array(self.store, depth_path).astype(np.float32) / 1000
            if depth.shape != (image.size[1], image.size[0]):
                raise InputError(f"{self.store.describe(depth_path)}: depth {depth.shape} does not match the "
                                 f"image {image.size[1]}x{image.size[0]}")
            image, depth, intrinsics = self._crop_resize_if_necessary(
                image, depth, self.intrinsics[image_idx], resolution, rng, info=self.store.describe(rgb_path))
            views.append(dict(img=image, depthmap=depth.astype(np.float32),
                              camera_pose=self.trajectories[image_idx].astype(np.float32),
                              camera_intrinsics=intrinsics.astype(np.float32), dataset=self.dataset_name,
                              label=f"{scene}_{basename}", instance=f"{idx}_{image_idx}"))
        return views


class ARKitScenes(PairListDataset):
    """`ARKitScenes(split, ROOT, ...)` with split 'train' (ROOT/Training) or 'test' (ROOT/Test)."""

    dataset_name = "arkitscenes"
    splits = ("train", "test")  # what a TFDS build packs by default
    _split_dirs = {"train": "Training", "test": "Test"}

    @classmethod
    def check_split(cls, split):
        if split not in cls._split_dirs:
            raise ConfigError(f"ARKitScenes: split {split!r}, expected 'train' or 'test'")

    @classmethod
    def metadata_path(cls, split):
        return f"{cls._split_dirs[split]}/all_metadata.npz"

    @classmethod
    def image_paths(cls, split, scene, basename):
        base = f"{cls._split_dirs[split]}/{scene}"
        return f"{base}/vga_wide/{basename.replace('.png', '.jpg')}", f"{base}/lowres_depth/{basename}"
