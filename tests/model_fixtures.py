"""Reading the forward fixtures (`forward/{model}__{case}.npz`) as our NHWC view dicts."""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np

import dust3r_jax
from dust3r_jax.model import AsymmetricCroCo3DStereo, model_config


def forward_cases(reference_dir):
    """[(name, manifest entry)] of every forward fixture, discovered from manifest.json."""
    manifest = json.loads((reference_dir / "manifest.json").read_text())
    return sorted(manifest["forward"].items())


def views_from_npz(data):
    """The fixture's NCHW inputs as our NHWC view dicts."""
    views = []
    for k in (1, 2):
        views.append({
            "img": jnp.asarray(data[f"view{k}_img"].transpose(0, 2, 3, 1)),
            "true_shape": jnp.asarray(data[f"view{k}_true_shape"]),
        })
    return views


@functools.lru_cache(maxsize=None)
def load_fixture_model(path: str, training_mode: bool):
    """(model, params) of a fixture checkpoint; training_mode = the `raw_args` construction
    (ManyAR_PatchEmbed, landscape_only=True), else what the official load_model builds."""
    model, params = dust3r_jax.load_model(path)
    if training_mode:
        model = AsymmetricCroCo3DStereo(model_config(**{
            **model.config.to_dict(), "landscape_only": True, "patch_embed_cls": "ManyAR_PatchEmbed"}))
    return model, params


def run_model(model, params, view1, view2, symmetrized=False, intermediates=False):
    """jit(model.apply) with true_shape as a traced argument."""
    def apply(params, view1, view2):
        if intermediates:
            return model.apply({"params": params}, view1, view2, symmetrized=symmetrized, mutable=["intermediates"])
        return model.apply({"params": params}, view1, view2, symmetrized=symmetrized), {}

    return jax.jit(apply)(params, view1, view2)


def nchw(x):
    return np.asarray(x).transpose(0, 3, 1, 2)
