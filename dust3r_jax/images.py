"""Image loading: files -> the official DUSt3R input dicts, NHWC.

`load_images` reproduces `dust3r.utils.image.load_images` of the official code exactly (same Pillow
calls, in the same order, so the pixels are bitwise equal with the same Pillow version):

1. open, apply the EXIF orientation, convert to RGB;
2. resize with Pillow so that the long side equals the target (512: 512; 224: round(224 * aspect),
   i.e. the short side becomes ~224), LANCZOS when shrinking, BICUBIC when enlarging, new size
   `round(side * target / long_side)` per side (Python round);
3. centre crop: a square for 224; otherwise both sides down to a multiple of 16, and a square
   image becomes 4:3 landscape unless `square_ok`;
4. normalise: float32 `(u8 / 255 - 0.5) / 0.5`, in [-1, 1].

Deliberate differences from the official loader (it would produce garbage or crash):
* 16-bit and 32-bit greyscale images (`I;16`, `I`) are scaled to 8 bits (value / 257) before the RGB
  conversion; Pillow's own conversion clips them at 255, turning most photos white.
* Floating-point images (`F`) are read as [0, 1] when their maximum is <= 1, else clipped to 0..255.
* Bad input raises a one-line `ImageError` (empty folder, undecodable or truncated file, an image
  too small to hold one 16x16 patch) instead of an assertion or a Pillow traceback.

Each result also carries `source`: where the pixels came from and how they were resized and
cropped, so that intrinsics can be mapped back to the original image (`processed_to_original`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import PIL.Image
from PIL.ImageOps import exif_transpose

from dust3r_jax.errors import ImageError, InputError

IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png"]
try:  # HEIC/HEIF photos (iPhones) when pillow-heif is installed, as the official loader does
    from pillow_heif import register_heif_opener

    register_heif_opener()
    IMAGE_EXTENSIONS += [".heic", ".heif"]
except ImportError:
    pass

# An image whose original sides are smaller than one patch carries no usable content; upscaling it
# to 512 (what the official loader does) only hides the problem.
MIN_ORIGINAL_SIDE = 16
PATCH_SIZE = 16


def list_image_files(paths_or_folder: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The image files to load, in the official order.

    A folder: its files with an image extension, sorted by name (other files are skipped, as the
    official loader does). A list: every entry, in the given order; an entry that is a folder is
    expanded the same way; an entry that is not a supported image file is an error.
    """
    if isinstance(paths_or_folder, (str, os.PathLike)):
        entries = [Path(paths_or_folder)]
    else:
        entries = [Path(p) for p in paths_or_folder]
    if not entries:
        raise InputError("no images given (an empty list)")
    files = []
    for entry in entries:
        if entry.is_dir():
            found = [entry / name for name in sorted(os.listdir(entry)) if _is_image_name(name)]
            if not found:
                raise ImageError(f"folder {entry}: no images found (looked for {'/'.join(IMAGE_EXTENSIONS)})")
            files.extend(found)
        elif not entry.exists():
            raise ImageError(f"image {entry}: no such file or folder")
        elif not _is_image_name(entry.name):
            raise ImageError(f"image {entry}: unsupported file type (expected {'/'.join(IMAGE_EXTENSIONS)})")
        else:
            files.append(entry)
    return files


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(tuple(IMAGE_EXTENSIONS))


def open_rgb(path: Path) -> PIL.Image.Image:
    """Decode `path` fully, upright (EXIF orientation applied), as an 8-bit RGB Pillow image."""
    try:
        with PIL.Image.open(path) as opened:
            img = exif_transpose(opened)
            img = _to_8bit(img).convert("RGB")  # convert() forces the full decode inside the try
    except PIL.Image.DecompressionBombError as err:
        raise ImageError(f"image {path}: refused by Pillow as too large ({err})") from None
    except PIL.UnidentifiedImageError:
        raise ImageError(f"image {path}: not an image Pillow can read (corrupt file or wrong extension)") from None
    except (OSError, ValueError, SyntaxError) as err:  # truncated data, bad chunks, ...
        raise ImageError(f"image {path}: cannot be decoded ({err}); is the file complete?") from None
    return img


def _to_8bit(img: PIL.Image.Image) -> PIL.Image.Image:
    """High-bit-depth greyscale -> 8-bit 'L' by scaling (Pillow's convert('RGB') would clip)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(img, dtype=np.float64)
        if img.mode == "I" and values.max(initial=0) <= 255:  # an 8-bit image stored as int32
            return PIL.Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
        return PIL.Image.fromarray(np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8))
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if np.nanmax(values, initial=0) <= 1.0:
            values = values * 255.0
        return PIL.Image.fromarray(np.clip(np.round(np.nan_to_num(values)), 0, 255).astype(np.uint8))
    return img


def resize_long_edge(img: PIL.Image.Image, long_edge: int) -> PIL.Image.Image:
    """Official `_resize_pil_image`: long side -> `long_edge`, LANCZOS down / BICUBIC up."""
    longest = max(img.size)
    interp = PIL.Image.LANCZOS if longest > long_edge else PIL.Image.BICUBIC
    new_size = tuple(int(round(side * long_edge / longest)) for side in img.size)
    return img.resize(new_size, interp)


def crop_box(resized_wh: tuple[int, int], size: int, square_ok: bool) -> tuple[float, float, float, float]:
    """Official centre crop box (left, top, right, bottom) in resized-image pixels.

    Pillow rounds a fractional box (the 4:3 crop of a square image can give x.5 values).
    """
    width, height = resized_wh
    cx, cy = width // 2, height // 2
    if size == 224:
        half = min(cx, cy)
        return (cx - half, cy - half, cx + half, cy + half)
    halfw, halfh = ((2 * cx) // 16) * 8, ((2 * cy) // 16) * 8
    if not square_ok and width == height:
        halfh = 3 * halfw / 4
    return (cx - halfw, cy - halfh, cx + halfw, cy + halfh)


def normalize(img: PIL.Image.Image) -> np.ndarray:
    """8-bit RGB image -> float32 (H, W, 3) in [-1, 1] with the official float32 arithmetic."""
    u8 = np.asarray(img, dtype=np.uint8)
    x = u8.astype(np.float32) / np.float32(255.0)
    return (x - np.float32(0.5)) / np.float32(0.5)


def load_image(path: Path, size: int = 512, square_ok: bool = False) -> tuple[np.ndarray, dict]:
    """One file -> (img (H, W, 3) float32 in [-1, 1], source info). See module docstring."""
    if not isinstance(size, int) or size < PATCH_SIZE:
        # any long side works as in the official loader; the released models use 224 and 512
        raise InputError(f"image size {size!r}: expected an integer >= {PATCH_SIZE} (224 or 512 for the released models)")
    img = open_rgb(path)
    width1, height1 = img.size
    if min(width1, height1) < MIN_ORIGINAL_SIDE:
        raise ImageError(
            f"image {path}: {width1}x{height1} pixels is too small (need at least "
            f"{MIN_ORIGINAL_SIDE} pixels per side)")
    long_edge = round(size * max(width1 / height1, height1 / width1)) if size == 224 else size
    resized = resize_long_edge(img, long_edge)
    box = crop_box(resized.size, size, square_ok)
    cropped = resized.crop(box)
    width2, height2 = cropped.size
    if width2 < PATCH_SIZE or height2 < PATCH_SIZE:
        raise ImageError(
            f"image {path}: aspect ratio {width1}x{height1} is too extreme (resized and cropped to "
            f"{width2}x{height2}, need at least {PATCH_SIZE} pixels per side)")
    # Pillow's crop rounds the box; record the integer box it really used
    left, top = int(round(box[0])), int(round(box[1]))
    source = {
        "path": str(path),
        "original_shape": (height1, width1),
        "resized_shape": (resized.size[1], resized.size[0]),
        "crop_offset": (top, left),
    }
    return normalize(cropped), source


def load_images(paths_or_folder, size: int = 512, square_ok: bool = False, verbose: bool = False) -> list[dict]:
    """Load images as DUSt3R inputs.

    Args:
      paths_or_folder: a folder (its .jpg/.jpeg/.png files, sorted by name), or a list of files.
      size: 224 (224x224 centre square) or another long side, e.g. 512 (sides cropped to
        multiples of 16), as the official loader.
      square_ok: at 512, keep square images square instead of cropping them to 512x384.
    Returns:
      one dict per image: `img` float32 (1, H, W, 3) in [-1, 1] (NHWC), `true_shape` int32 (1, 2) =
      [[H, W]], `idx` (running index), `instance` (str(idx)), and `source` (see `load_image`).
    """
    files = list_image_files(paths_or_folder)
    images = []
    for path in files:
        img, source = load_image(path, size=size, square_ok=square_ok)
        if verbose:
            oh, ow = source["original_shape"]
            print(f" - adding {path} with resolution {ow}x{oh} --> {img.shape[1]}x{img.shape[0]}")
        index = len(images)
        images.append({
            "img": img[None],
            "true_shape": np.array([img.shape[:2]], dtype=np.int32),
            "idx": index,
            "instance": str(index),
            "source": source,
        })
    return images


def processed_to_original(source: dict) -> np.ndarray:
    """3x3 affine A mapping processed-image pixels to original-image pixels: p_orig = A @ p_proc.

    Pixel coordinates have integer values at pixel centres (DUSt3R's convention). The resize maps
    the continuous image extent [0, W1] onto [0, Wr] per axis (sx = Wr / W1), so a pixel centre
    u_orig + 0.5 lands at sx * (u_orig + 0.5); the crop then subtracts its offset. For intrinsics:
    K_orig = A @ K_proc.
    """
    height1, width1 = source["original_shape"]
    height_r, width_r = source["resized_shape"]
    top, left = source["crop_offset"]
    sx, sy = width_r / width1, height_r / height1
    return np.array([
        [1.0 / sx, 0.0, (left + 0.5) / sx - 0.5],
        [0.0, 1.0 / sy, (top + 0.5) / sy - 0.5],
        [0.0, 0.0, 1.0],
    ])
