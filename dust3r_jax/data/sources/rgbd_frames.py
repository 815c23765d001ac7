"""Reading one posed RGB-D frame (image + EXR depth + camera file), with checks that name the file.

BlendedMVS, MegaDepth, StaticThings3D, Waymo and Habitat store a frame as three files next to
each other: an 8-bit RGB image (JPEG), a single-channel OpenEXR depth map (float32, or half for
Habitat) and the camera (an .npz, or a .json for Habitat). The official loaders read them with
OpenCV / numpy and fail with an assertion deep in the pipeline on bad data; here every problem
is a one-line `InputError` naming the file, raised where the official code would have failed:

- a missing or undecodable file, a camera file without the expected arrays or with the wrong
  shapes, a depth map whose size differs from the image's;
- non-finite depth (checked on the cropped depth, where the official base class checks it, so a
  NaN outside the crop passes as it does officially) or a non-finite pose.

Arrays: image PIL RGB `W x H`; depth (H, W) float32, 0 = invalid; intrinsics (3, 3) float32
OpenCV convention; cam2world (4, 4) float32.
"""
import numpy as np

from dust3r_jax.data.files import read_exr_depth, read_image, read_npz
from dust3r_jax.errors import InputError


def read_image_and_depth(store, image_path, depth_path):
    """The RGB image and its EXR depth, checked to have the same size."""
    image = read_image(store, image_path)
    depth = read_exr_depth(store, depth_path)
    if depth.shape != (image.size[1], image.size[0]):
        raise InputError(f"{store.describe(depth_path)}: depth of shape {depth.shape} does not match the image "
                         f"{store.describe(image_path)} of {image.size[1]}x{image.size[0]} (H x W)")
    return image, depth


def camera_arrays(store, path, shapes, data=None):
    """The arrays named in `shapes` ({key: shape}) of the camera file `path` (.npz unless `data`).

    The values are returned with their stored dtype; callers cast where the official loader does.
    """
    if data is None:
        data = read_npz(store, path)
    arrays = {}
    for key, shape in shapes.items():
        if key not in data:
            raise InputError(f"{store.describe(path)}: no entry {key!r} (found {sorted(data)})")
        try:
            value = np.asarray(data[key])
            if not np.issubdtype(value.dtype, np.number):
                raise ValueError(f"dtype {value.dtype}")
        except (TypeError, ValueError) as err:
            raise InputError(f"{store.describe(path)}: entry {key!r} is not numeric ({err})") from None
        if value.shape != tuple(shape):
            raise InputError(f"{store.describe(path)}: entry {key!r} has shape {value.shape}, expected {tuple(shape)}")
        arrays[key] = value
    return arrays


def pose_from_rotation_translation(rotation, translation):
    """cam2world (4, 4) float32 from R (3, 3) and t (3,), as the official `np.eye(4)` fill."""
    cam2world = np.eye(4, dtype=np.float32)
    cam2world[:3, :3] = rotation
    cam2world[:3, 3] = translation
    return cam2world


def check_pose(store, path, cam2world):
    """Refuse a non-finite cam2world read from `path` (the official base class asserts)."""
    if not np.isfinite(cam2world).all():
        raise InputError(f"{store.describe(path)}: camera pose has NaN or infinite values")
    return cam2world


def check_depth(store, path, depthmap):
    """Refuse a cropped depth map with NaN/inf values, naming the depth file `path`."""
    if not np.isfinite(depthmap).all():
        bad = int(np.size(depthmap) - np.count_nonzero(np.isfinite(depthmap)))
        raise InputError(f"{store.describe(path)}: depth map has {bad} NaN or infinite values in the crop")
    return depthmap


# an .npz camera file holding K and the cam2world pose (MegaDepth, Waymo)
NPZ_CAMERA_SHAPES = {"intrinsics": (3, 3), "cam2world": (4, 4)}


def npz_camera_view(dataset, image_path, depth_path, camera_path, resolution, rng, label, instance):
    """One view dict from an image, an EXR depth and an .npz camera (`intrinsics`, `cam2world`),
    cropped and resized by the dataset's official pipeline."""
    store = dataset.store
    image, depth = read_image_and_depth(store, image_path, depth_path)
    camera = camera_arrays(store, camera_path, NPZ_CAMERA_SHAPES)
    pose = check_pose(store, camera_path, np.float32(camera["cam2world"]))
    image, depth, intrinsics = dataset._crop_resize_if_necessary(
        image, depth, np.float32(camera["intrinsics"]), resolution, rng)
    return dict(img=image, depthmap=check_depth(store, depth_path, depth), camera_pose=pose,
                camera_intrinsics=intrinsics, dataset=dataset.dataset_name, label=label, instance=instance)


def stats_repr(dataset, stats):
    """The official repr: `Name(<stats>,split=...,seed=...,resolutions=[WxH;...],transform=...)`."""
    return (f"{type(dataset).__name__}({stats},split={dataset.split!r},seed={dataset.seed},"
            f"resolutions={dataset._resolution_str()},transform={dataset.transform!r})")
