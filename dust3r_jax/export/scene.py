"""The arrays every exporter reads, gathered once from an aligned scene.

`SceneArrays` is a plain bundle of numpy arrays (no JAX, no model): exporters are pure functions of
it, and tests build one synthetically. `from_aligned_scene` reads the global aligner's scene (its
attributes `cam2world`, `intrinsics`, `depthmaps`, `pts3d`, `conf`, `imgs`, method `masks`).

Frames: world = the aligner's world frame; cameras use OpenCV axes (x right, y down, z forward);
`cam2world[i]` maps camera-i coordinates to world. Pixel coordinates (u, v) = (column, row) have
integer values at pixel centres (DUSt3R's convention; COLMAP's differs by 0.5, see colmap.py).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from dust3r_jax.images import processed_to_original


@dataclasses.dataclass
class SceneArrays:
    names: list[str]                 # unique output stem per image ("IMG_0001")
    files: list[str]                 # source file name per image ("IMG_0001.jpg")
    imgs: list[np.ndarray]           # (H, W, 3) float32 colours in [0, 1] at the processed resolution
    depths: list[np.ndarray]         # (H, W) float32 depth along the camera z axis
    confs: list[np.ndarray]          # (H, W) float32 confidence (>= 1)
    pts3d: list[np.ndarray]          # (H, W, 3) float32 points in the world frame
    masks: list[np.ndarray]          # (H, W) bool, pixels kept in point clouds (confident)
    cam2world: np.ndarray            # (N, 4, 4) float64 camera-to-world, OpenCV axes
    intrinsics: np.ndarray           # (N, 3, 3) float64 K at the processed resolution
    to_original: list[np.ndarray]    # (3, 3) affine: processed pixel -> original-image pixel
    original_shapes: list[tuple[int, int]]  # (H, W) of each original (EXIF-rotated) image
    paths: list[str] = dataclasses.field(default_factory=list)  # source path as given, if known

    @property
    def num_images(self) -> int:
        return len(self.imgs)

    def original_intrinsics(self) -> np.ndarray:
        """(N, 3, 3) K for the original images: K_orig = A @ K, A = processed -> original pixels."""
        return np.stack([a @ k for a, k in zip(self.to_original, self.intrinsics)])

    def colmap_names(self) -> list[str]:
        """Image names for COLMAP's images.txt: the unique output name plus the file's extension
        ('img_2.jpg'), so never two alike and never a space (COLMAP splits fields on spaces)."""
        return [name + safe_stem(Path(file).suffix) for name, file in zip(self.names, self.files)]

    def confident_points(self) -> tuple[np.ndarray, np.ndarray]:
        """All masked points and their colours: (P, 3) float32 world points, (P, 3) uint8 RGB."""
        points = np.concatenate([p[m] for p, m in zip(self.pts3d, self.masks)]).astype(np.float32)
        colours = np.concatenate([img[m] for img, m in zip(self.imgs, self.masks)])
        return points.reshape(-1, 3), to_uint8(colours).reshape(-1, 3)


def to_uint8(colours: np.ndarray) -> np.ndarray:
    """Float colours in [0, 1] -> uint8 (rounded, clipped)."""
    return np.clip(np.round(np.asarray(colours, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def safe_stem(text: str) -> str:
    """`text` with every character a file name or a COLMAP field cannot carry replaced by '_':
    whitespace, control characters, path separators, and the lone surrogates by which Python
    spells the bytes of a non-UTF-8 file name."""
    return "".join(c if c.isprintable() and not c.isspace() and c not in "/\\" and not "\ud800" <= c <= "\udfff"
                   else "_" for c in text)


def printable(text: str) -> str:
    """A path as text that any UTF-8 writer accepts (non-UTF-8 bytes shown as \\xNN)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def unique_stems(paths: list[str]) -> list[str]:
    """Output names from file stems (see `safe_stem`), unique and stable: the first file keeps its
    stem, a later one with the same stem gets the first free 'stem_2', 'stem_3', ... that no other
    file's stem already is. Compared case-insensitively (case-insensitive file systems)."""
    # (a leading dot would hide depth/NAME.npy)
    stems = [safe_stem(Path(path).stem).lstrip(".") or "image" for path in paths]
    reserved = {stem.casefold() for stem in stems}
    used: set[str] = set()
    names = []
    for stem in stems:
        name, k = stem, 2
        # a suffixed name may not be another file's own stem: that file keeps it
        while name.casefold() in used or (name != stem and name.casefold() in reserved):
            name, k = f"{stem}_{k}", k + 1
        used.add(name.casefold())
        names.append(name)
    return names


def from_sparse_scene(scene, images: list[dict], min_conf_thr: float, subsample: int = 8) -> SceneArrays:
    """`from_aligned_scene` for a sparse (MASt3R) alignment's `SparseScene`: every pixel's point
    from its anchor's optimised depth (`get_dense_pts3d(clean_depth=True)`), masked by the
    canonical confidence."""
    pts3d, depths, confs = scene.get_dense_pts3d(clean_depth=True, subsample=subsample)
    dense = SimpleNamespace(cam2world=scene.get_im_poses(), intrinsics=scene.get_intrinsics(), pts3d=pts3d,
                            depthmaps=depths, conf=confs, imgs=scene.imgs,
                            masks=lambda threshold: [np.asarray(c) > threshold for c in confs])
    return from_aligned_scene(dense, images, min_conf_thr)


def _value(scene, name: str):
    """A scene attribute that may be an array or a zero-argument method returning one."""
    value = getattr(scene, name)
    return value() if callable(value) else value


def from_aligned_scene(scene, images: list[dict], min_conf_thr: float) -> SceneArrays:
    """Collects the arrays of an aligned scene for the images of `load_images`.

    Args:
      scene: the global aligner's result (see module docstring).
      images: the `load_images` dicts, in the scene's image order (their `source` gives files
        and the resize/crop to map intrinsics back to the original images).
      min_conf_thr: confidence threshold for the masks (`scene.masks(min_conf_thr)`).
    """
    def per_image(name):
        return [np.asarray(x, dtype=np.float32) for x in _value(scene, name)]

    # the aligner may not carry colours (views without images): take them from the loader
    scene_imgs = list(_value(scene, "imgs") or [None] * len(images))
    imgs = [np.asarray(img if img is not None else np.asarray(image["img"][0]) * 0.5 + 0.5, dtype=np.float32)
            for img, image in zip(scene_imgs, images)]
    depths = [d.reshape(img.shape[:2]) for d, img in zip(per_image("depthmaps"), imgs)]
    pts3d = [p.reshape(img.shape[:2] + (3,)) for p, img in zip(per_image("pts3d"), imgs)]
    confs = [c.reshape(img.shape[:2]) for c, img in zip(per_image("conf"), imgs)]
    # a degenerate alignment (e.g. a zero focal) can leave NaN/inf points: never export those
    masks = [np.asarray(m, dtype=bool).reshape(img.shape[:2]) & np.all(np.isfinite(p), axis=-1)
             for m, img, p in zip(scene.masks(min_conf_thr), imgs, pts3d)]
    files = [image["source"]["path"] for image in images]
    return SceneArrays(
        names=unique_stems(files),
        files=[Path(f).name for f in files],
        imgs=imgs, depths=depths, confs=confs, pts3d=pts3d, masks=masks,
        cam2world=np.asarray(_value(scene, "cam2world"), dtype=np.float64).reshape(-1, 4, 4),
        intrinsics=np.asarray(_value(scene, "intrinsics"), dtype=np.float64).reshape(-1, 3, 3),
        to_original=[processed_to_original(image["source"]) for image in images],
        original_shapes=[tuple(image["source"]["original_shape"]) for image in images],
        paths=[str(f) for f in files],
    )
