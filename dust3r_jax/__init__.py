"""dust3r-jax: DUSt3R (Dense Unconstrained Stereo 3D Reconstruction) in JAX/Flax.

The public API. Names are resolved lazily so that `import dust3r_jax` stays cheap and each
capability (model, loading, alignment, training) imports only what it needs:

    model, params = dust3r_jax.load_model(path)          # .pth, HF folder, or converted dir
    pred1, pred2 = model.apply({"params": params}, view1, view2)
    images = dust3r_jax.load_images(folder, size=512)
    pairs = dust3r_jax.make_pairs(images, scene_graph="complete")
    output = dust3r_jax.inference(pairs, model, params)
    scene = dust3r_jax.global_align(output)

and the official release's API on top of it (see README.md):

    model = AsymmetricCroCo3DStereo.from_pretrained("naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt")
    output = inference(pairs, model, "cpu", batch_size=1)
    scene = global_aligner(output, device="cpu", mode=GlobalAlignerMode.PointCloudOptimizer)
    loss = scene.compute_global_alignment(init="mst", niter=300, schedule="cosine", lr=0.01)
"""
import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "AsymmetricCroCo3DStereo": "dust3r_jax.model",
    "load_model": "dust3r_jax.loading",
    "save_model": "dust3r_jax.loading",
    "load_images": "dust3r_jax.images",
    "make_pairs": "dust3r_jax.pairs",
    "inference": "dust3r_jax.inference",
    "global_align": "dust3r_jax.alignment",
    # the official release's names, as thin wrappers (code written against naver/dust3r runs
    # with its imports changed): AsymmetricCroCo3DStereo.from_pretrained, inference(pairs, model, device)
    "global_aligner": "dust3r_jax.alignment.global_aligner",
    "GlobalAlignerMode": "dust3r_jax.alignment.global_aligner",
    "find_reciprocal_matches": "dust3r_jax.matching",
    "xy_grid": "dust3r_jax.geometry",
    # MASt3R: its network (the catmlp+dpt head, loaded by load_model) and dense matching
    "AsymmetricMASt3R": "dust3r_jax.model",
    "fast_reciprocal_NNs": "dust3r_jax.mast3r.matching",
    "extract_correspondences": "dust3r_jax.mast3r.matching",
    "sparse_align": "dust3r_jax.mast3r.align",
    "sparse_global_alignment": "dust3r_jax.mast3r.sparse_ga",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dust3r_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)


# `inference` is both a submodule and the public function. Python binds a package attribute to
# its submodule whenever that submodule is first imported (by any code), which would silently turn
# `from dust3r_jax import inference` into the module. Importing it here, once, and binding the
# function afterwards keeps the public name the function; the module stays reachable as
# `from dust3r_jax.inference import ...` or `importlib.import_module("dust3r_jax.inference")`.
# This is the one eager import of the package.
from dust3r_jax.inference import inference  # noqa: E402
