"""ScanNet++ (official preprocessing): DSLR and iPhone frames with depth rendered from the scan.

Layout under ROOT (datasets_preprocess/preprocess_scannetpp.py):
    all_metadata.npz              as ARKitScenes' (`images` are names without extension)
    <scene>/images/<name>.jpg     RGB, undistorted, covering 920x690
    <scene>/depth/<name>.png      uint16 millimetres, 0 = no surface / anonymised

Quirk reproduced on purpose: the stored intrinsics are in the COLMAP convention (principal point
0.5 px larger than OpenCV's) and the official loader uses them as OpenCV ones, unchanged.
"""
from dust3r_jax.data.sources.arkitscenes import PairListDataset
from dust3r_jax.errors import ConfigError


class ScanNetpp(PairListDataset):
    """`ScanNetpp(split='train', ROOT, ...)`: only the train split exists."""

    dataset_name = "ScanNet++"
    splits = ("train",)

    @classmethod
    def check_split(cls, split):
        if split != "train":
            raise ConfigError(f"ScanNetpp: split {split!r}, only 'train' exists")

    @classmethod
    def metadata_path(cls, split):
        return "all_metadata.npz"

    @classmethod
    def image_paths(cls, split, scene, basename):
        return f"{scene}/images/{basename}.jpg", f"{scene}/depth/{basename}.png"
