"""Surface textures of the procedural scenes: real photographs and procedural patterns.

The photographs are the ones scikit-image ships (no download): colour pictures as they are,
grey ones (brick, grass, gravel, ...) tinted per use. Patterns (checkers, stripes, smooth noise,
tiles, dots) are drawn from the scene's generator, so a scene is a function of its seed alone.
A texture is a (S, S, 3) float32 array in [0, 1], tiled over a surface at some texels per metre.
"""
import functools

import numpy as np
import PIL.Image

TEXTURE_SIZE = 128

COLOUR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "colorwheel", "retina", "cat")
GREY_PHOTOS = ("brick", "grass", "gravel", "camera", "moon", "coins", "page", "text", "clock", "cell")
PATTERNS = ("checker", "stripes", "noise", "tiles", "dots")


@functools.lru_cache(maxsize=None)
def photo_bank():
    """{name: (S, S, 3) float32} of the scikit-image photographs, centre-cropped square and resized."""
    try:
        import skimage.data
    except ImportError as err:  # a dependency of the package: only a broken install gets here
        raise ImportError("procedural scenes need scikit-image (pip install scikit-image)") from err
    bank = {}
    for name in COLOUR_PHOTOS + GREY_PHOTOS:
        array = np.asarray(getattr(skimage.data, name)())
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        array = array[..., :3].astype(np.uint8)
        height, width = array.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = PIL.Image.fromarray(array[top:top + side, left:left + side])
        image = image.resize((TEXTURE_SIZE, TEXTURE_SIZE), PIL.Image.BILINEAR)
        bank[name] = np.asarray(image, np.float32) / 255.0
    return bank


def _smooth_noise(rng, size, cells):
    """Value noise: a random (cells x cells) grid, bilinearly upsampled with wrap-around."""
    grid = rng.random((cells, cells))
    coords = np.arange(size) * cells / size
    i0 = np.floor(coords).astype(int)
    frac = coords - i0
    i1 = (i0 + 1) % cells
    rows = grid[i0][:, i0] * (1 - frac)[None, :] + grid[i0][:, i1] * frac[None, :]
    rows_next = grid[i1][:, i0] * (1 - frac)[None, :] + grid[i1][:, i1] * frac[None, :]
    return rows * (1 - frac)[:, None] + rows_next * frac[:, None]


def random_colour(rng, low=0.15, high=0.95):
    return rng.uniform(low, high, size=3)


def pattern(kind, rng, size=TEXTURE_SIZE):
    """One procedural pattern (S, S, 3) float32 drawn from `rng`."""
    a, b = random_colour(rng), random_colour(rng)
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == "checker":
        n = int(rng.choice([2, 4, 8]))
        mask = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(np.float64)
    elif kind == "stripes":
        n = int(rng.choice([2, 4, 8, 16]))
        mask = (np.sin(2 * np.pi * n * (xx if rng.integers(2) else yy)) > 0).astype(np.float64)
    elif kind == "noise":
        mask = 0.6 * _smooth_noise(rng, size, 4) + 0.4 * _smooth_noise(rng, size, 16)
    elif kind == "tiles":
        n = int(rng.choice([2, 4]))
        grout = (np.abs((xx * n) % 1 - 0.5) > 0.45) | (np.abs((yy * n) % 1 - 0.5) > 0.45)
        mask = np.where(grout, 1.0, 0.15 * _smooth_noise(rng, size, 8))
    elif kind == "dots":
        n = int(rng.choice([4, 8]))
        fx, fy = (xx * n) % 1 - 0.5, (yy * n) % 1 - 0.5
        mask = (fx ** 2 + fy ** 2 < 0.09).astype(np.float64)
    else:
        raise ValueError(f"unknown pattern {kind!r}, expected one of {PATTERNS}")
    # a little grain everywhere, so that no surface is perfectly flat in colour
    grain = 0.08 * (_smooth_noise(rng, size, 32) - 0.5)
    image = a[None, None] * (1 - mask[..., None]) + b[None, None] * mask[..., None] + grain[..., None]
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def draw_texture(rng):
    """A texture for one surface: a photograph (tinted if grey) or a pattern, half and half."""
    bank = photo_bank()
    if rng.random() < 0.5:
        name = str(rng.choice(COLOUR_PHOTOS + GREY_PHOTOS))
        image = bank[name]
        if name in GREY_PHOTOS:
            image = np.clip(image * (0.4 + 0.8 * random_colour(rng, 0.3, 1.0))[None, None], 0, 1)
        return image.astype(np.float32)
    return pattern(str(rng.choice(PATTERNS)), rng)


def sample(texture, uv, texels_per_metre, offset):
    """Bilinear lookup with wrap-around. texture: (S, S, 3); uv: (R, 2) metres -> (R, 3)."""
    size = texture.shape[0]
    coords = uv * texels_per_metre + offset
    base = np.floor(coords)
    frac = coords - base
    x0 = base[:, 0].astype(np.int64) % size
    y0 = base[:, 1].astype(np.int64) % size
    x1, y1 = (x0 + 1) % size, (y0 + 1) % size
    fx, fy = frac[:, :1], frac[:, 1:]
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
