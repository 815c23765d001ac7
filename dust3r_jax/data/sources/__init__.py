"""The nine official training datasets and our procedural scenes by name, each imported only when asked for.

    from dust3r_jax.data.sources import get_source
    Co3d = get_source("Co3d")
    ds = Co3d(split="train", ROOT="/data/co3d_processed", resolution=224, aug_crop=16)

Names are the official class names (what dataset strings use). Every source is a
`dust3r_jax.data.base.ViewDataset` subclass with a `files_to_pack(store, split)` classmethod (the
files its TFDS builder packs) and takes `store=` to read from a TFDS build instead of `ROOT`.
"""
import importlib

from dust3r_jax.errors import ConfigError

# class name -> module under dust3r_jax.data.sources
SOURCE_MODULES = {
    "Co3d": "co3d",
    "WildRGBD": "wildrgbd",
    "ARKitScenes": "arkitscenes",
    "ScanNetpp": "scannetpp",
    "BlendedMVS": "blendedmvs",
    "MegaDepth": "megadepth",
    "StaticThings3D": "staticthings3d",
    "Waymo": "waymo",
    "Habitat": "habitat",
    "Procedural": "procedural",  # ours: rendered scenes with exact geometry (not an official dataset)
}

SOURCE_NAMES = tuple(SOURCE_MODULES)


def get_source(name):
    """The dataset class called `name` (one of SOURCE_NAMES)."""
    if name not in SOURCE_MODULES:
        raise ConfigError(f"dataset {name!r}: unknown, expected one of {sorted(SOURCE_MODULES)}")
    module = importlib.import_module(f"dust3r_jax.data.sources.{SOURCE_MODULES[name]}")
    return getattr(module, name)


def __getattr__(name):
    if name in SOURCE_MODULES:
        return get_source(name)
    raise AttributeError(f"module 'dust3r_jax.data.sources' has no attribute {name!r}")
