"""`AsymmetricCroCo3DStereo.from_pretrained(name)`: the official way to get a model, as a
`PretrainedModel` that carries its params, for code written against the official release.

    model = AsymmetricCroCo3DStereo.from_pretrained("naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt")
    output = inference(pairs, model, "cuda", batch_size=8)       # the official call
    pred1, pred2 = model(view1, view2)                          # the official forward (NHWC images)
    model.apply({"params": model.params}, view1, view2)         # the Flax module underneath

A thin layer over `dust3r_jax.hub.resolve_weights` (Hub ids) and `dust3r_jax.load_model` (every
checkpoint format); JAX code keeps using `module, params = load_model(...)`.
"""
import dataclasses
import functools

import jax

from dust3r_jax.devices import resolve_device


@dataclasses.dataclass(frozen=True)
class PretrainedModel:
    """A Flax `AsymmetricCroCo3DStereo` module with its params (a plain pytree)."""
    module: object
    params: dict

    @property
    def config(self):
        return self.module.config

    def apply(self, *args, **kwargs):
        """`module.apply`, for JAX code handed this object."""
        return self.module.apply(*args, **kwargs)

    def __call__(self, view1, view2):
        """The official `model(view1, view2)` -> (pred1, pred2), jitted; views as in `model.apply`."""
        return _jitted_apply(self.module)(self.params, view1, view2)

    def to(self, device):
        """The params placed on `device` ("cpu", "cuda", "gpu", "tpu" or a jax.Device), as torch's `.to`."""
        return dataclasses.replace(self, params=jax.device_put(self.params, resolve_device(device)))

    def eval(self):
        """No-op (the network has no training-only layers at inference), for ported code."""
        return self


@functools.lru_cache(maxsize=8)
def _jitted_apply(module):
    return jax.jit(lambda params, view1, view2: module.apply({"params": params}, view1, view2))


def from_pretrained(name_or_path, *, revision=None, cache_dir=None, token=None, local_files_only=False,
                    force_download=False, **config_overrides) -> PretrainedModel:
    """A `PretrainedModel` from an official `.pth`, a Hugging Face folder, a converted folder, a
    Hugging Face Hub id ("naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt": downloaded once into the
    Hugging Face cache, read from it with HF_HUB_OFFLINE=1) or a name `load_model` knows.

    revision, cache_dir, token, local_files_only, force_download: as the official `from_pretrained`
    (Hub ids only). config_overrides: model_config keys, as `load_model` takes them (e.g. dtype).
    """
    from dust3r_jax.hub import resolve_weights
    from dust3r_jax.loading import load_model

    path = resolve_weights(name_or_path, revision=revision, cache_dir=cache_dir, token=token,
                           local_files_only=local_files_only, force_download=force_download)
    module, params = load_model(path, **config_overrides)
    return PretrainedModel(module, params)
