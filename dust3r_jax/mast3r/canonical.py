"""Canonical pointmaps of MASt3R's sparse alignment (mast3r/cloud_opt/sparse_ga.py: canonical_view,
anchor_depth_offsets and the focal estimate of prepare_canonical_data), on the host in float32.

An image seen in several pairs has one pointmap in its own camera frame per pair. The canonical
pointmap is their average weighted by (conf - 0.999). Depth is then carried by a coarse grid of
anchors, one per `subsample` x `subsample` block at its centre pixel (subsample // 2 in each
direction), and every pixel's depth is its anchor's times a fixed ratio (`canon2`, 1 at the anchors):
the ratio comes from the confidence-weighted mean, over the pairs, of the angle between the pixel's
point and its anchor's point seen from the anchor ('avg-angle' mode).
"""
import numpy as np

from dust3r_jax.errors import InputError
from dust3r_jax.focal import estimate_focal_knowing_depth

__all__ = ["canonical_view", "canonical_focal", "anchor_grid", "anchor_depth_offsets"]

_CONF_SHIFT = np.float32(0.999)  # weights are conf - 0.999 (confidences are >= 1)


def _blocks(x, s):
    """(n, H, W, ...) -> (n, H/s, s, W/s, s, ...): pixel (h s + dy, w s + dx) at [:, h, dy, w, dx]."""
    n, H, W = x.shape[:3]
    return x.reshape(n, H // s, s, W // s, s, *x.shape[3:])


def canonical_view(ptmaps, confs, subsample):
    """One image's canonical pointmap from its predictions in its own frame over its pairs.

    ptmaps: (n, H, W, 3) points in the image's own camera frame, one map per pair;
    confs: (n, H, W) their confidences. H and W must be multiples of subsample.
    Returns (canon (H, W, 3), canon2 (H, W) depth ratio to the block's anchor, conf (H, W)).
    """
    ptmaps = np.asarray(ptmaps, np.float32)
    weights = np.asarray(confs, np.float32) - _CONF_SHIFT
    s, c = subsample, subsample // 2
    canon = np.sum(weights[..., None] * ptmaps, axis=0) / np.sum(weights, axis=0)[..., None]

    depth = _blocks(ptmaps[..., 2], s)                                   # (n, h, s, w, s)
    centre_depth = np.maximum(depth[:, :, c, :, c], np.finfo(np.float32).eps)[:, :, None, :, None]
    xy = _blocks(ptmaps[..., :2], s)                                     # (n, h, s, w, s, 2)
    radius = np.linalg.norm(xy - xy[:, :, c:c + 1, :, c:c + 1], axis=-1)
    radius = np.maximum(radius, np.float32(1e-8))
    angle = np.arctan((depth - centre_depth) / radius)
    w = _blocks(weights, s)
    mean_angle = np.sum(w * angle, axis=0) / np.sum(w, axis=0)           # (h, s, w, s)
    rel_depth = np.mean(radius, axis=0) * np.tan(mean_angle)
    canon2 = 1 + rel_depth / canon[c::s, c::s, 2][:, None, :, None]
    conf = np.sum(weights * weights, axis=0) / np.sum(weights, axis=0)
    return canon, canon2.reshape(canon.shape[:2]).astype(np.float32), conf.astype(np.float32)


def canonical_focal(canon):
    """Focal (pixels) of a canonical pointmap (H, W, 3) with the principal point at (W/2, H/2):
    Weiszfeld's estimate clipped to [0.5, 3.5] x the focal of a 60 degree field of view."""
    H, W = canon.shape[:2]
    pp = np.array([[W / 2, H / 2]], np.float32)
    focal = estimate_focal_knowing_depth(canon[None], pp, focal_mode="weiszfeld", min_focal=0.5, max_focal=3.5)
    return np.float32(focal[0])


def anchor_grid(shape, subsample):
    """(rows (h,), cols (w,)) of the anchor pixels of an (H, W) image: subsample // 2 + k subsample."""
    H, W = shape
    return np.arange(subsample // 2, H, subsample), np.arange(subsample // 2, W, subsample)


def anchor_depth_offsets(canon2, xy, subsample):
    """Anchor of each pixel and its depth ratio to it.

    canon2: (H, W) depth ratios of `canonical_view`; xy: (K, 2) integer pixels (x, y).
    Returns (idx (K,) int64 flat index into the (h, w) anchor grid, offset (K,) float32).
    """
    rows, cols = anchor_grid(canon2.shape, subsample)
    anchor_ratio = canon2[rows[:, None], cols[None, :]].ravel()
    if not np.all(anchor_ratio > 0):
        raise InputError("sparse alignment: a canonical depth ratio at an anchor is not positive (bad pointmaps?)")
    px, py = np.asarray(xy, np.int64).T
    idx = (py // subsample) * len(cols) + px // subsample
    return idx, (canon2[py, px] / anchor_ratio[idx]).astype(np.float32)
