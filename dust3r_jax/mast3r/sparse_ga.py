"""The official entry point of MASt3R's sparse alignment, mast3r.cloud_opt.sparse_ga
sparse_global_alignment(imgs, pairs_in, cache_path, model, ...): runs the network on the pairs and
hands the predictions to `sparse_align`, which holds all the logic.

    scene = sparse_global_alignment(filelist, pairs, cache_dir, model, subsample=8, device="cpu",
                                    lr1=0.07, niter1=300, lr2=0.014, niter2=300)

Differences from the official function, none of which changes a number:
  * `cache_path` is accepted and ignored: predictions, correspondences and canonical views stay in
    memory (the scene keeps what `get_dense_pts3d` needs), so nothing is written to disk;
  * each image is encoded once for all its pairs (the official encodes it once per pair), then each
    pair is decoded both ways, as the official symmetric_inference;
  * a pair listed in both orders is run once (the official reads the second from its cache).
"""
import contextlib
import functools

import jax
import numpy as np

from dust3r_jax.devices import resolve_device
from dust3r_jax.errors import InputError
from dust3r_jax.mast3r.align import sparse_align

__all__ = ["sparse_global_alignment", "symmetric_predictions"]


def _module_params(model, params):
    if hasattr(model, "module") and hasattr(model, "params"):  # PretrainedModel (from_pretrained)
        return model.module, model.params
    if params is None:
        raise InputError("sparse_global_alignment: pass a model from AsymmetricMASt3R.from_pretrained, or "
                         "model=module with params=... from load_model")
    return model, params


def symmetric_predictions(module, params, views, pairs):
    """{(i, j): (res11, res21, res22, res12)} of `module` (a MASt3R) on `pairs` [(i, j), ...] of
    `views` (dicts of `load_images`): each image encoded once, each unordered pair decoded both
    ways; arrays (H, W, ...) without the batch axis."""
    encode = jax.jit(lambda p, img, shape: module.apply({"params": p}, {"img": img, "true_shape": shape},
                                                        method="encode_views"))

    @functools.partial(jax.jit, static_argnums=(7, 8))
    def decode(p, f1, p1, s1, f2, p2, s2, hw1, hw2):
        return module.apply({"params": p}, f1, p1, s1, f2, p2, s2, hw1, hw2, method="predict_from_tokens")

    tokens = {}
    for k in sorted({v for pair in pairs for v in pair}):
        view = views[k]
        img, shape = np.asarray(view["img"], np.float32), np.asarray(view["true_shape"], np.int32)
        if img.ndim != 4 or img.shape[0] != 1 or img.shape[-1] != 3:
            raise InputError(f"sparse_global_alignment: image {k} 'img' must be (1, H, W, 3) NHWC; found {img.shape}")
        tokens[k] = encode(params, img, shape) + (shape, img.shape[1:3])

    def run(a, b):
        (fa, pa, sa, hwa), (fb, pb, sb, hwb) = tokens[a], tokens[b]
        pred1, pred2 = decode(params, fa, pa, sa, fb, pb, sb, tuple(hwa), tuple(hwb))
        pred2 = dict(pred2, pts3d=pred2["pts3d_in_other_view"])
        return [{k: np.asarray(r[k][0]) for k in ("pts3d", "conf", "desc", "desc_conf")} for r in (pred1, pred2)]

    out = {}
    for i, j in pairs:
        if (j, i) in out:
            res22, res12, res11, res21 = out[j, i]
        else:
            res11, res21 = run(i, j)
            res22, res12 = run(j, i)
        out[i, j] = (res11, res21, res22, res12)
    return out


def sparse_global_alignment(imgs, pairs_in, cache_path, model, subsample=8, desc_conf="desc_conf",
                            kinematic_mode="hclust-ward", device=None, dtype=None, shared_intrinsics=False,
                            params=None, lr2=0.01, **kw):
    """The official signature. imgs: the image names (each view's 'instance'); pairs_in: list of
    (view1, view2) dicts of `load_images` / `make_pairs`; cache_path: ignored (see the module
    docstring); model: from `from_pretrained` (or the module, with params=); device: run there;
    dtype: float32 only. Other keywords: `sparse_align`'s, with the official function's defaults
    (lr2=0.01: sparse_scene_optimizer's own default; sparse_align's 0.014 is the official demo's).
    Returns its `SparseScene`."""
    del cache_path
    if dtype is not None and "float32" not in str(dtype):
        raise InputError(f"sparse_global_alignment: only float32 is supported; got dtype={dtype}")
    module, params = _module_params(model, params)
    device = resolve_device(device)
    if device is not None:
        params = jax.device_put(params, device)
    names = list(imgs)
    views, pairs = {}, []
    for view1, view2 in pairs_in:
        key = []
        for view in (view1, view2):
            name = view.get("instance", view.get("idx"))
            if name not in names:
                raise InputError(f"sparse_global_alignment: a pair's image {name!r} is not in imgs")
            views[names.index(name)] = view
            key.append(names.index(name))
        pairs.append(tuple(key))
    missing = [names[k] for k in range(len(names)) if k not in views]
    if missing:
        raise InputError(f"sparse_global_alignment: image(s) {missing} appear in no pair; every image needs a pair")
    with jax.default_device(device) if device is not None else contextlib.nullcontext():
        preds = symmetric_predictions(module, params, views, pairs)
    return sparse_align([views[k] for k in range(len(names))], preds, subsample=subsample,
                        kinematic_mode=kinematic_mode, shared_intrinsics=shared_intrinsics, desc_conf=desc_conf, lr2=lr2,
                        **kw)

