"""The per-view geometry of the official training pipeline, in numpy and PIL.

Everything here reproduces the official loader bit for bit (dust3r/datasets/base/
base_stereo_view_dataset.py and dust3r/datasets/utils/cropping.py), so the small numeric choices are deliberate:

- intrinsics are float32 matrices in the OpenCV convention (top-left pixel centre at (0, 0));
  every update is computed in float64 from the float32 values and stored back to float32, the
  same rounding the official code gets from numpy 2;
- rounding is numpy's half-to-even (`np.round`), done on float32 values;
- depth maps are resized with OpenCV's floor-based nearest neighbour (not pixel-centre nearest);
- images are resized with Pillow (LANCZOS to shrink, BICUBIC to enlarge).

Shapes: images are PIL images of size `W x H` until `img_norm` turns them into `(H, W, 3)`
float32 arrays (NHWC once batched); depth maps are `(H, W)` float32; intrinsics `K` are (3, 3).
"""
import numpy as np
import PIL.Image

_BICUBIC = PIL.Image.Resampling.BICUBIC
_LANCZOS = PIL.Image.Resampling.LANCZOS


def crop_image_depth(image, depthmap, intrinsics, box):
    """Crop image, depth and intrinsics to a PIL box `(l, t, r, b)` (columns l..r-1, rows t..b-1).

    image: PIL `W x H`; depthmap: (H, W); intrinsics: (3, 3) float32 OpenCV.
    Returns the cropped image, depth `(b - t, r - l)` and intrinsics with the principal point moved.
    """
    l, t, r, b = (int(v) for v in box)
    image = image.crop((l, t, r, b))
    depthmap = depthmap[t:b, l:r]
    intrinsics = np.array(intrinsics, dtype=np.float32, copy=True)
    intrinsics[0, 2] -= l
    intrinsics[1, 2] -= t
    return image, depthmap, intrinsics


def resize_depth_nearest(depthmap, out_w, out_h):
    """OpenCV `INTER_NEAREST` resize of a (H, W) map to (out_h, out_w), in numpy.

    OpenCV picks source column `min(floor(i * (1 / (out_w / W))), W - 1)` for output column i,
    in float64 (likewise rows). This is not pixel-centre sampling, hence not PIL NEAREST nor
    `jax.image.resize(method='nearest')`.
    """
    in_h, in_w = depthmap.shape[:2]
    inv_x = 1.0 / (float(out_w) / float(in_w))
    inv_y = 1.0 / (float(out_h) / float(in_h))
    cols = np.minimum(np.floor(np.arange(out_w, dtype=np.float64) * inv_x).astype(np.int64), in_w - 1)
    rows = np.minimum(np.floor(np.arange(out_h, dtype=np.float64) * inv_y).astype(np.int64), in_h - 1)
    return depthmap[rows[:, None], cols[None, :]]


def _shift_principal_point(intrinsics, offset_xy):
    """K with (cx, cy) -= offset_xy, computed in float64 and stored to float32."""
    intrinsics = intrinsics.copy()
    intrinsics[:2, 2] = (intrinsics[:2, 2].astype(np.float64) - np.asarray(offset_xy, np.float64)).astype(np.float32)
    return intrinsics


def scale_intrinsics(intrinsics, in_size, out_size, scale):
    """Intrinsics of an image of size `in_size` (W, H) resized by `scale` then cropped to `out_size`.

    The image is resized to `in_size * scale` and centre-cropped to `out_size`; in the COLMAP
    convention (pixel centre + 0.5) that is a multiplication of the first two rows by `scale`
    and a shift of the principal point by half the margin. Float32 between steps.
    """
    margins = np.asarray(in_size, np.float64) * scale - np.asarray(out_size, np.float64)
    k = np.array(intrinsics, dtype=np.float32, copy=True)
    k[:2, 2] += np.float32(0.5)  # OpenCV -> COLMAP convention
    if scale != 1:
        k[:2, :] = (k[:2, :].astype(np.float64) * scale).astype(np.float32)
    k = _shift_principal_point(k, 0.5 * margins)
    k[:2, 2] -= np.float32(0.5)  # back to OpenCV
    return k


def rescale_to_cover(image, depthmap, intrinsics, target_wh):
    """Resize so that the image covers `target_wh` (W, H), keeping the aspect ratio.

    Returns the resized image `W' x H'` with `(W', H') = floor((W, H) * s)`,
    `s = max(target / size) + 1e-8`, the depth (H', W') resized the OpenCV-nearest way, and K.
    """
    in_w, in_h = image.size
    scale = max(target_wh[0] / in_w, target_wh[1] / in_h) + 1e-8
    out_w, out_h = int(np.floor(in_w * scale)), int(np.floor(in_h * scale))
    resample = _LANCZOS if scale < 1 else _BICUBIC
    image = image.resize((out_w, out_h), resample=resample)
    depthmap = resize_depth_nearest(depthmap, out_w, out_h)
    intrinsics = scale_intrinsics(intrinsics, (in_w, in_h), (out_w, out_h), scale)
    return image, depthmap, intrinsics


def centre_crop_box(intrinsics, image_wh, crop_wh):
    """PIL box of the centred `crop_wh` window of an image of size `image_wh` (both (W, H)).

    Computed as the official code does, from the float32 difference between K and the
    intrinsics of the centred crop: when `W' - w` is odd the float32 value lands a hair off
    x.5 and half-to-even rounding can go either way, so the float32 steps are kept.
    """
    k_crop = scale_intrinsics(intrinsics, image_wh, crop_wh, 1)
    l, t = np.round(intrinsics[:2, 2] - k_crop[:2, 2]).astype(np.int32)
    return int(l), int(t), int(l) + int(crop_wh[0]), int(t) + int(crop_wh[1])


def principal_point_box(intrinsics, image_wh):
    """Largest PIL box centred on the (half-to-even rounded) principal point."""
    width, height = image_wh
    cx, cy = np.round(np.asarray(intrinsics, np.float32)[:2, 2]).astype(int)
    margin_x, margin_y = min(cx, width - cx), min(cy, height - cy)
    return cx - margin_x, cy - margin_y, cx + margin_x, cy + margin_y


def crop_resize_view(image, depthmap, intrinsics, resolution, rng, aug_crop=0, info=None):
    """The official `_crop_resize_if_necessary` (dust3r/datasets/base/base_stereo_view_dataset.py).

    image: PIL RGB `W x H`; depthmap: (H, W) float32; intrinsics: (3, 3) float32 OpenCV;
    resolution: target (w, h) with w >= h; rng: the dataset's `np.random.Generator` (draws an
    orientation coin for nearly square crops with a non-square target, then the crop augmentation).
    Returns image `w x h` (or `h x w` for portrait), depth of the same shape and K. `info` names
    the frame in errors (a principal point outside the image).
    """
    if not isinstance(image, PIL.Image.Image):
        image = PIL.Image.fromarray(image)
    box = principal_point_box(intrinsics, image.size)
    if box[2] <= box[0] or box[3] <= box[1]:  # the official code would go on with an empty crop
        from dust3r_jax.errors import InputError

        where = f"{info}: " if info else ""
        raise InputError(f"{where}principal point ({intrinsics[0, 2]}, {intrinsics[1, 2]}) is not inside the "
                         f"{image.size[0]}x{image.size[1]} image")
    image, depthmap, intrinsics = crop_image_depth(image, depthmap, intrinsics, box)

    width, height = image.size
    target = tuple(int(v) for v in resolution)
    if height > 1.1 * width:  # portrait
        target = target[::-1]
    elif 0.9 < height / width < 1.1 and target[0] != target[1]:
        if rng.integers(2):  # nearly square: orientation at random
            target = target[::-1]

    covered = np.array(target)
    if aug_crop > 1:  # one random zoom, the same on both sides
        covered = covered + rng.integers(0, aug_crop)
    image, depthmap, intrinsics = rescale_to_cover(image, depthmap, intrinsics, covered)
    box = centre_crop_box(intrinsics, image.size, target)
    return crop_image_depth(image, depthmap, intrinsics, box)


def depth_to_world_points(depthmap, intrinsics, cam2world):
    """World points and validity of every pixel (`depthmap_to_absolute_camera_coordinates`, dust3r/utils/geometry.py).

    depthmap: (H, W) float32 z-depth; intrinsics: (3, 3) float32 OpenCV, zero skew;
    cam2world: (4, 4) float32. Returns `pts3d (H, W, 3)` float32 in world coordinates (invalid
    pixels land on the camera centre) and `valid_mask (H, W)` bool: depth > 0 and finite points.
    The camera-frame points are computed in float64 then cast, the rotation in float32.
    """
    k = np.asarray(intrinsics, np.float32)
    if k[0, 1] != 0 or k[1, 0] != 0:
        raise ValueError(f"intrinsics with skew are not supported: {k.tolist()}")
    height, width = depthmap.shape
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    x = (u - k[0, 2]) * depthmap / k[0, 0]
    y = (v - k[1, 2]) * depthmap / k[1, 1]
    pts_cam = np.stack((x, y, depthmap), axis=-1).astype(np.float32)
    rotation, translation = cam2world[:3, :3], cam2world[:3, 3]
    pts_world = np.einsum("ik,vuk->vui", rotation, pts_cam) + translation[None, None, :]
    valid_mask = (depthmap > 0.0) & np.isfinite(pts_world).all(axis=-1)
    return pts_world, valid_mask


def transpose_to_landscape(view):
    """Turn a portrait view (true_shape H > W) to landscape in place (`transpose_to_landscape`, dust3r/datasets/base/base_stereo_view_dataset.py).

    img (H, W, 3) -> (W, H, 3), depthmap/valid_mask (H, W) -> (W, H), pts3d -> (W, H, 3);
    intrinsics get their first two ROWS swapped (as the official code does); pose and true_shape
    are kept, true_shape is how the model knows to transpose back.
    """
    height, width = view["true_shape"]
    if width < height:
        view["img"] = view["img"].swapaxes(0, 1)
        view["valid_mask"] = view["valid_mask"].swapaxes(0, 1)
        view["depthmap"] = view["depthmap"].swapaxes(0, 1)
        view["pts3d"] = view["pts3d"].swapaxes(0, 1)
        view["camera_intrinsics"] = view["camera_intrinsics"][[1, 0, 2]]
    return view


def img_norm(image):
    """ImgNorm: PIL RGB `W x H` -> (H, W, 3) float32 in [-1, 1], each op in float32."""
    pixels = np.asarray(image.convert("RGB") if image.mode != "RGB" else image, dtype=np.uint8)
    return (pixels.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)


class ImgNorm:
    """The default transform: `img_norm`. A class so that `transform='ImgNorm'` can name it."""

    def __call__(self, image):
        return img_norm(image)

    def __repr__(self):
        return "ImgNorm"


class ColorJitter:
    """torchvision `ColorJitter(0.5, 0.5, 0.5, 0.1)` then ImgNorm, on PIL images, per view.

    The official transform draws from torch's global RNG, which cannot be reproduced here; this
    one draws from its own numpy generator (`seed`, or fresh entropy) or from the generator the
    caller passes (the base dataset passes one per (seed, idx, view) when views are seeded, so
    jittered views are reproducible and thread-safe too), with the same distributions:
    a random order of the four ops, factors U[0.5, 1.5] for brightness/contrast/saturation and a
    hue shift U[-0.1, 0.1] of a turn, applied as PIL does (ImageEnhance, HSV uint8 wrap-around).
    """

    def __init__(self, brightness=0.5, contrast=0.5, saturation=0.5, hue=0.1, seed=None):
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed):
        self.rng = np.random.default_rng(seed)

    def jitter(self, image):
        """PIL RGB image -> jittered PIL RGB image."""
        import PIL.ImageEnhance as enhance

        order = self.rng.permutation(4)
        factors = (
            self.rng.uniform(1 - self.brightness, 1 + self.brightness),
            self.rng.uniform(1 - self.contrast, 1 + self.contrast),
            self.rng.uniform(1 - self.saturation, 1 + self.saturation),
            self.rng.uniform(-self.hue, self.hue),
        )
        # as torchvision: an op whose range is zero is skipped (its PIL round trip is not exact)
        enabled = (self.brightness > 0, self.contrast > 0, self.saturation > 0, self.hue > 0)
        order = [op for op in order if enabled[op]]
        for op in order:
            if op == 0:
                image = enhance.Brightness(image).enhance(factors[0])
            elif op == 1:
                image = enhance.Contrast(image).enhance(factors[1])
            elif op == 2:
                image = enhance.Color(image).enhance(factors[2])
            else:
                hue, sat, val = image.convert("HSV").split()
                shift = np.int64(factors[3] * 255) % 256  # truncation then uint8 wrap-around
                hue = PIL.Image.fromarray(((np.asarray(hue, np.int64) + shift) % 256).astype(np.uint8), "L")
                image = PIL.Image.merge("HSV", (hue, sat, val)).convert("RGB")
        return image

    takes_rng = True  # the base dataset may hand it a per-view generator (reproducible jitter)

    def __call__(self, image, rng=None):
        if rng is None:
            return img_norm(self.jitter(image.convert("RGB")))
        own, self.rng = self.rng, rng
        try:
            return img_norm(self.jitter(image.convert("RGB")))
        finally:
            self.rng = own

    def __repr__(self):
        return "ColorJitter"


TRANSFORMS = {"ImgNorm": ImgNorm, "ColorJitter": ColorJitter}


def make_transform(transform):
    """A transform from a callable, a class in TRANSFORMS or its name (what dataset strings use)."""
    from dust3r_jax.errors import ConfigError

    if isinstance(transform, str):
        if transform not in TRANSFORMS:
            raise ConfigError(f"transform {transform!r}: unknown, expected one of {sorted(TRANSFORMS)}")
        transform = TRANSFORMS[transform]
    if isinstance(transform, type):
        transform = transform()
    if not callable(transform):
        raise ConfigError(f"transform {transform!r}: not callable")
    return transform
