"""WildRGB-D (official preprocessing): the Co3d pair logic on other file names (datasets_preprocess/preprocess_wildrgbd.py).

Layout under ROOT:
    selected_seqs_{split}.json                      {category: {'scenes/scene_NNN': [frame ids]}}
    <cat>/<seq>/rgb/NNNNN.jpg                       RGB
    <cat>/<seq>/depth/NNNNN.png                     uint16 millimetres
    <cat>/<seq>/masks/NNNNN.png                     uint8 object mask
    <cat>/<seq>/metadata/NNNNN.npz                  camera_intrinsics (3,3), camera_pose (4,4), float64
"""
import numpy as np

from dust3r_jax.data.files import read_png_array
from dust3r_jax.data.sources.co3d import Co3d


class WildRGBD(Co3d):
    """`WildRGBD(mask_bg=True, split, ROOT, ...)`: same draws and invalidation as Co3d."""

    dataset_name = "WildRGBD"

    def frame_paths(self, category, sequence, frame):
        base = f"{category}/{sequence}"
        return (f"{base}/rgb/{frame:05d}.jpg", f"{base}/metadata/{frame:05d}.npz",
                f"{base}/depth/{frame:05d}.png", f"{base}/masks/{frame:05d}.png")

    def read_depth(self, depth_path, metadata):
        return read_png_array(self.store, depth_path).astype(np.float32) / 1000.0
