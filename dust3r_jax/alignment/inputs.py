"""Reading and checking the pairwise predictions that global alignment starts from.

`read_pairs(output)` turns what `dust3r_jax.inference()` returns (the official
`view1/view2/pred1/pred2` dict, NHWC, stacked arrays or per-edge lists when image sizes differ)
into a `PairPredictions`: host-side NumPy lists indexed by edge, plus the image shapes and the
per-image confidence maps. It is also where bad input is caught (see `read_pairs`).
"""
import dataclasses
import warnings

import numpy as np

from dust3r_jax.errors import InputError


@dataclasses.dataclass
class PairPredictions:
    """Pairwise predictions of a scene, one entry per directed edge e = (i, j).

    edges: list of (i, j) image indices; imshapes: list of (H_i, W_i) per image.
    pred_i[e]: (H_i, W_i, 3) points of image i in camera i's frame (pred1['pts3d']).
    pred_j[e]: (H_j, W_j, 3) points of image j in camera i's frame (pred2['pts3d_in_other_view']).
    conf_i[e], conf_j[e]: (H_i, W_i), (H_j, W_j) confidences (>= 1 for DUSt3R heads).
    im_conf[n]: (H_n, W_n) element-wise max of all confidences of image n.
    imgs[n]: (H_n, W_n, 3) image in [0, 1], or None when the views carry no image.
    """
    edges: list
    imshapes: list
    pred_i: list
    pred_j: list
    conf_i: list
    conf_j: list
    im_conf: list
    imgs: list

    @property
    def n_imgs(self):
        return len(self.imshapes)

    @property
    def n_edges(self):
        return len(self.edges)

    @property
    def is_symmetrized(self):
        return set(self.edges) == {(j, i) for i, j in self.edges}


def _per_edge(value, n_edges, name, trailing):
    """Split a stacked (E, ...) array or a list of (...) / (1, ...) arrays into a list of arrays
    with `trailing` dims each."""
    if isinstance(value, (list, tuple)):
        items = [np.asarray(v) for v in value]
        if len(items) != n_edges:
            raise InputError(f"{name}: {len(items)} entries for {n_edges} pairs")
        items = [v[0] if v.ndim == trailing + 1 and v.shape[0] == 1 else v for v in items]
    else:
        value = np.asarray(value)
        if value.ndim != trailing + 1 or value.shape[0] != n_edges:
            raise InputError(f"{name}: expected shape ({n_edges}, ...) with {trailing} trailing dims, "
                             f"found {value.shape}")
        items = list(value)
    for e, v in enumerate(items):
        if v.ndim != trailing:
            raise InputError(f"{name}[{e}]: expected {trailing} dims, found shape {v.shape}")
    return items


def _clean(points, conf, name, e):
    """Non-finite points or confidences -> zero confidence (the pixel is ignored) and finite 0 points."""
    bad = ~np.all(np.isfinite(points), axis=-1) | ~np.isfinite(conf)
    if bad.any():
        warnings.warn(f"{name} of pair {e}: {int(bad.sum())} pixels with NaN/Inf values are ignored "
                      "(confidence set to 0)", RuntimeWarning, stacklevel=4)
        points = np.where(bad[..., None], 0.0, points).astype(np.float32)
        conf = np.where(bad, 0.0, conf).astype(np.float32)
    return points, conf


def read_pairs(output):
    """Check and unpack an `inference()` output into `PairPredictions` (NumPy, float32).

    Documented fallbacks (the official code would produce NaN scenes in these cases):
    * NaN/Inf points or confidences: those pixels get confidence 0 (no weight, not in masks).
    * A pair whose confidences are all 0 on one side: the pair is dropped, with a warning.
    * A pair (i, j) given twice: the last one is kept (the official code keys pairs by "i_j",
      so it also only sees the last one), with a warning.
    Errors (`InputError`): missing keys, inconsistent shapes, self-pairs, image indices that are
    not 0..N-1, and a pair graph that is not connected (after dropping unusable pairs).
    """
    for key in ("view1", "view2", "pred1", "pred2"):
        if key not in output:
            raise InputError(f"alignment input: missing key {key!r} (expected the dict returned by inference())")
    view1, view2, pred1, pred2 = (output[k] for k in ("view1", "view2", "pred1", "pred2"))
    for view, name in ((view1, "view1"), (view2, "view2")):
        if "idx" not in view:
            raise InputError(f"alignment input: {name} has no 'idx' (image index of each pair)")
    idx1 = [int(i) for i in np.ravel(np.asarray(view1["idx"]))]
    idx2 = [int(i) for i in np.ravel(np.asarray(view2["idx"]))]
    if len(idx1) != len(idx2) or not idx1:
        raise InputError(f"alignment input: view1['idx'] has {len(idx1)} entries, view2['idx'] {len(idx2)}")
    E = len(idx1)
    pts1 = _per_edge(pred1["pts3d"], E, "pred1['pts3d']", 3)
    pts2 = _per_edge(pred2["pts3d_in_other_view"], E, "pred2['pts3d_in_other_view']", 3)
    conf1 = _per_edge(pred1["conf"], E, "pred1['conf']", 2)
    conf2 = _per_edge(pred2["conf"], E, "pred2['conf']", 2)

    # keep the last prediction of each directed pair, drop pairs without usable confidence
    last = {}
    for e, (i, j) in enumerate(zip(idx1, idx2)):
        if i == j:
            raise InputError(f"alignment input: pair {e} links image {i} to itself")
        if (i, j) in last:
            warnings.warn(f"alignment input: pair ({i}, {j}) given twice; the last one is used",
                          RuntimeWarning, stacklevel=2)
        last[(i, j)] = e
    keep = sorted(last.values())

    edges, pred_i, pred_j, conf_i, conf_j = [], [], [], [], []
    imshapes = {}
    for e in keep:
        i, j = idx1[e], idx2[e]
        pi, ci = _clean(np.asarray(pts1[e], np.float32), np.asarray(conf1[e], np.float32), "pred1", e)
        pj, cj = _clean(np.asarray(pts2[e], np.float32), np.asarray(conf2[e], np.float32), "pred2", e)
        if pi.shape[:2] != ci.shape or pj.shape[:2] != cj.shape:
            raise InputError(f"alignment input: pair {e}: points {pi.shape}/{pj.shape} do not match "
                             f"confidences {ci.shape}/{cj.shape}")
        for n, shape in ((i, pi.shape[:2]), (j, pj.shape[:2])):
            if imshapes.setdefault(n, shape) != shape:
                raise InputError(f"alignment input: image {n} has shape {imshapes[n]} in one pair and "
                                 f"{shape} in pair {e}")
        if not (ci > 0).any() or not (cj > 0).any():
            warnings.warn(f"alignment input: pair ({i}, {j}) has all-zero confidences; it is ignored",
                          RuntimeWarning, stacklevel=2)
            continue
        edges.append((i, j))
        pred_i.append(pi), pred_j.append(pj), conf_i.append(ci), conf_j.append(cj)

    indices = sorted(imshapes)
    if indices != list(range(len(indices))):
        raise InputError(f"alignment input: image indices must be 0..N-1, found {indices}")
    n_imgs = len(indices)
    if not edges:
        raise InputError("alignment input: no pair with usable confidences")
    _check_connected(edges, n_imgs)
    shapes = [tuple(int(s) for s in imshapes[n]) for n in range(n_imgs)]

    im_conf = [np.zeros(hw, np.float32) for hw in shapes]
    for e, (i, j) in enumerate(edges):
        im_conf[i] = np.maximum(im_conf[i], conf_i[e])
        im_conf[j] = np.maximum(im_conf[j], conf_j[e])
    return PairPredictions(edges, shapes, pred_i, pred_j, conf_i, conf_j, im_conf,
                           _read_images(view1, view2, idx1, idx2, shapes))


def _check_connected(edges, n_imgs):
    parent = list(range(n_imgs))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    for i, j in edges:
        parent[find(i)] = find(j)
    groups = {}
    for n in range(n_imgs):
        groups.setdefault(find(n), []).append(n)
    if len(groups) > 1:
        parts = " | ".join(str(g) for g in groups.values())
        raise InputError(f"alignment input: the pair graph is not connected (components {parts}); "
                         "add pairs linking them or align each part separately")


def _read_images(view1, view2, idx1, idx2, shapes):
    """Images in [0, 1] (H, W, 3) per image index, from the views' NHWC images in [-1, 1]."""
    if "img" not in view1 or "img" not in view2:
        return [None] * len(shapes)
    imgs = [None] * len(shapes)
    for view, idx in ((view1, idx1), (view2, idx2)):
        items = _per_edge(view["img"], len(idx), "view['img']", 3)
        for e, n in enumerate(idx):
            if n < len(shapes) and imgs[n] is None:
                img = np.asarray(items[e], np.float32)
                if img.shape[:2] != shapes[n] and img.shape[1:] == shapes[n]:
                    img = np.moveaxis(img, 0, -1)  # tolerate NCHW
                imgs[n] = np.clip(img * 0.5 + 0.5, 0, 1)
    return imgs
