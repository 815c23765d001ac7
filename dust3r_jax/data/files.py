"""Where a dataset's files come from, and how each stored encoding is decoded.

A dataset source never opens files itself: it asks a *store* for the bytes of a path relative to
the dataset root, then decodes them here. Two stores exist with the same three methods:

- `FolderStore(root)`: the user's preprocessed folder on disk;
- `dust3r_jax.data.tfds_builder.RecordStore`: the same files packed by a TFDS builder into
  array_record (read with `tfds.data_source`, no TensorFlow).

Because both hand back the same bytes, the views built from either are identical. Every decoder
raises a one-line `InputError` naming the file when it is missing or cannot be decoded.
"""
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image

from dust3r_jax.errors import ImageError, InputError


class FolderStore:
    """Files of a dataset folder on disk; paths are relative to `root`, with '/' separators."""

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"dataset folder {self.root}: not found (is ROOT right?)")

    def describe(self, relpath):
        """The name of a file for error messages."""
        return str(self.root / relpath)

    def exists(self, relpath):
        return (self.root / relpath).is_file()

    def read_bytes(self, relpath):
        path = self.root / relpath
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path}: file not found") from None
        except OSError as err:
            raise InputError(f"{path}: cannot be read ({err.strerror or err})") from None

    def local_path(self, relpath):
        """A path on disk holding the file (decoders that need a real file use it)."""
        return self.root / relpath

    def __repr__(self):
        return f"FolderStore({str(self.root)!r})"


def read_image(store, relpath):
    """An RGB PIL image (JPEG/PNG decoded by Pillow; its libjpeg-turbo gives OpenCV's pixels)."""
    data = store.read_bytes(relpath)
    try:
        image = PIL.Image.open(io.BytesIO(data))
        image.load()
    except Exception as err:  # Pillow raises several types for truncated/corrupt files
        raise ImageError(f"{store.describe(relpath)}: not a readable image ({err})") from None
    return image.convert("RGB") if image.mode != "RGB" else image


def read_png_array(store, relpath, dtype=None):
    """A single-channel PNG (8- or 16-bit) as a (H, W) integer array, values unchanged."""
    data = store.read_bytes(relpath)
    try:
        image = PIL.Image.open(io.BytesIO(data))
        image.load()
        array = np.asarray(image)
    except Exception as err:
        raise ImageError(f"{store.describe(relpath)}: not a readable PNG ({err})") from None
    if array.ndim != 2:
        raise ImageError(f"{store.describe(relpath)}: expected a single-channel PNG, found shape {array.shape}")
    if image.mode.startswith("I;16"):
        array = array.astype(np.uint16)
    return array if dtype is None else array.astype(dtype)


def read_npz(store, relpath):
    """A dict of the arrays of an .npz file (no pickles)."""
    data = store.read_bytes(relpath)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception as err:
        raise InputError(f"{store.describe(relpath)}: not a readable .npz file ({err})") from None


def read_npy(store, relpath):
    """The array of an .npy file (structured dtypes allowed, no pickles)."""
    data = store.read_bytes(relpath)
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:
        raise InputError(f"{store.describe(relpath)}: not a readable .npy file ({err})") from None


def read_json(store, relpath):
    data = store.read_bytes(relpath)
    try:
        return json.loads(data.decode("utf-8"))
    except Exception as err:
        raise InputError(f"{store.describe(relpath)}: not valid JSON ({err})") from None


def read_text_lines(store, relpath):
    """Non-empty stripped lines of a text file."""
    data = store.read_bytes(relpath)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{store.describe(relpath)}: not UTF-8 text ({err})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_exr_depth(store, relpath):
    """A single-channel OpenEXR depth map (float32 or half) as (H, W) float32.

    Uses the `OpenEXR` package (what OpenCV 4.x returns, checked on the fixtures); the package
    reads files, so bytes that do not live on disk go through a temporary file.
    """
    import OpenEXR

    local = getattr(store, "local_path", None)
    path = local(relpath) if local is not None else None
    tmp = None
    try:
        if path is None or not Path(path).is_file():
            data = store.read_bytes(relpath)
            fd, tmp = tempfile.mkstemp(suffix=".exr")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            path = tmp
        try:
            with OpenEXR.File(str(path)) as exr:
                channels = exr.channels()
                name = "Y" if "Y" in channels else sorted(channels)[0]
                depth = np.asarray(channels[name].pixels)
        except FileNotFoundError:
            raise InputError(f"{store.describe(relpath)}: file not found") from None
        except Exception as err:
            raise InputError(f"{store.describe(relpath)}: not a readable EXR file ({err})") from None
    finally:
        if tmp is not None:
            os.unlink(tmp)
    if depth.ndim != 2:
        raise InputError(f"{store.describe(relpath)}: expected a single-channel EXR, found shape {depth.shape}")
    return depth.astype(np.float32)
