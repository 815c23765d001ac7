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

import jax
import numpy as np

from dust3r_jax.devices import resolve_device
from dust3r_jax.errors import InputError
from dust3r_jax.inference import run_pairs
from dust3r_jax.mast3r.align import sparse_align

__all__ = ["sparse_global_alignment", "symmetric_predictions"]


def _module_params(model, params):
    if hasattr(model, "module") and hasattr(model, "params"):  # PretrainedModel (from_pretrained)
        return model.module, model.params
    if params is None:
        raise InputError("sparse_global_alignment: pass a model from AsymmetricMASt3R.from_pretrained, or "
                         "model=module with params=... from load_model")
    return model, params


def symmetric_predictions(module, params, views, pairs, batch_size=8, mesh=None):
    """{(i, j): (res11, res21, res22, res12)} of `module` (a MASt3R) on `pairs` [(i, j), ...] of
    `views` (dicts of `load_images`): each unordered pair decoded both ways, as the official
    symmetric_inference; arrays (H, W, ...) without the batch axis. The network runs through
    `inference.run_pairs` (batches by shape, each image encoded once, compiled programs shared,
    `mesh` as `inference`'s)."""
    for k in sorted({v for pair in pairs for v in pair}):
        img = np.shape(views[k]["img"])
        if len(img) != 4 or img[0] != 1 or img[-1] != 3:
            raise InputError(f"sparse_global_alignment: image {k} 'img' must be (1, H, W, 3) NHWC; found {img}")
    unordered, seen = [], set()
    for i, j in pairs:  # a pair listed in both orders runs once
        if (i, j) not in seen:
            unordered.append((i, j))
            seen.update(((i, j), (j, i)))
    directed = [d for i, j in unordered for d in ((i, j), (j, i))]
    results = run_pairs([(views[i], views[j]) for i, j in directed], module, params, batch_size=batch_size,
                        verbose=False, mesh=mesh)

    def as_result(pred):
        pred = dict(pred)
        if "pts3d_in_other_view" in pred:  # the second view's points, in the first view's camera
            pred["pts3d"] = pred.pop("pts3d_in_other_view")
        return pred
    out = {}
    for (i, j), (pred1, pred2), (back1, back2) in zip(unordered, results[::2], results[1::2]):
        res11, res21, res22, res12 = (as_result(p) for p in (pred1, pred2, back1, back2))
        out[i, j], out[j, i] = (res11, res21, res22, res12), (res22, res12, res11, res21)
    return {tuple(pair): out[tuple(pair)] for pair in pairs}


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

