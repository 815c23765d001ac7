"""Focal lengths of cameras from their pointmaps (dust3r/post_process.py).

`estimate_focal_knowing_depth` is the official estimator: given points in a camera's own frame
(so the depth z is known), find the focal f that best explains pixel = f * (x / z, y / z) + pp,
either by a median of per-pixel votes or by Weiszfeld's re-weighted least squares (an L1 fit).
"""
import jax
import jax.numpy as jnp
import numpy as np

from dust3r_jax.geometry import _xp, xy_grid

# focal of a 60 degree field of view, in units of the largest image side (clipping base)
_FOCAL_BASE_DIV = 2 * np.tan(np.deg2rad(60) / 2)


def nanmedian_lower(x, axis=-1):
    """Median ignoring NaN that returns the LOWER middle value for an even count, like
    `torch.nanmedian` (`jnp.nanmedian` averages the two). NaN where every value is NaN.

    x: (..., N) along `axis`; returns x with that axis removed (NumPy in, NumPy out).
    """
    xp = _xp(x)
    x = xp.moveaxis(xp.asarray(x), axis, -1)
    n_valid = xp.sum(~xp.isnan(x), axis=-1)
    ordered = xp.sort(x, axis=-1)  # NaN sort last
    k = xp.maximum(n_valid - 1, 0) // 2
    med = xp.take_along_axis(ordered, k[..., None], axis=-1)[..., 0]
    return xp.where(n_valid > 0, med, xp.nan)


def estimate_focal_knowing_depth(pts3d, pp, focal_mode="median", min_focal=0.0, max_focal=np.inf):
    """Focal length (fx = fy) of cameras from their pointmaps.

    pts3d: (B, H, W, 3) points of each image in its own camera frame (NumPy in: NumPy out).
    pp: (B, 2) principal point (cx, cy) in pixels (or (2,), broadcast).
    focal_mode: "median" (median of votes u z / x and v z / y, lower middle value) or
      "weiszfeld" (L2 closed form, then 10 re-weighted steps minimising sum ||p - f (x/z, y/z)||).
    min_focal, max_focal: clip, in units of the focal of a 60 degree field of view over max(H, W).
    Returns (B,) focals in pixels.
    """
    xp = _xp(pts3d, pp)
    pts3d = xp.asarray(pts3d)
    B, H, W, three = pts3d.shape
    if three != 3:
        raise ValueError(f"estimate_focal_knowing_depth: pts3d must end with 3, found {pts3d.shape}")
    pixels = xy_grid(W, H, dtype=pts3d.dtype, xp=xp).reshape(1, -1, 2) - xp.reshape(
        xp.asarray(pp, dtype=pts3d.dtype), (-1, 1, 2))
    pts = pts3d.reshape(B, -1, 3)

    if focal_mode == "median":
        u, v = pixels[..., 0], pixels[..., 1]
        x, y, z = pts[..., 0], pts[..., 1], pts[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            votes = xp.concatenate((xp.broadcast_to(u * z / x, x.shape),
                                    xp.broadcast_to(v * z / y, y.shape)), axis=-1)
        focal = nanmedian_lower(votes, axis=-1)
        if xp is jnp:
            focal = jax.lax.stop_gradient(focal)
    elif focal_mode == "weiszfeld":
        with np.errstate(divide="ignore", invalid="ignore"):
            xy_over_z = xp.nan_to_num(pts[..., :2] / pts[..., 2:3], nan=0.0, posinf=0.0, neginf=0.0)
        dot_xy_px = xp.sum(xy_over_z * pixels, axis=-1)
        dot_xy_xy = xp.sum(xp.square(xy_over_z), axis=-1)
        focal = xp.mean(dot_xy_px, axis=1) / xp.mean(dot_xy_xy, axis=1)
        for _ in range(10):
            dis = xp.linalg.norm(pixels - focal[:, None, None] * xy_over_z, axis=-1)
            w = 1.0 / xp.maximum(dis, 1e-8)
            focal = xp.mean(w * dot_xy_px, axis=1) / xp.mean(w * dot_xy_xy, axis=1)
    else:
        raise ValueError(f"estimate_focal_knowing_depth: focal_mode must be 'median' or 'weiszfeld', "
                         f"found {focal_mode!r}")
    focal_base = max(H, W) / _FOCAL_BASE_DIV
    return xp.clip(focal, min_focal * focal_base, max_focal * focal_base)


def estimate_focal(pts3d_i, pp=None, focal_mode="weiszfeld"):
    """Focal of one image from its pointmap (H, W, 3) in its own camera frame; pp defaults to
    (W/2, H/2) like the official aligner. Returns a Python float."""
    H, W, _ = np.shape(pts3d_i)
    if pp is None:
        pp = (W / 2, H / 2)
    # float64: the estimate feeds RANSAC-PnP, whose inlier set (hence the pose) can flip with the
    # last bit of the focal; the exact value is the best stand-in for the official float32 one
    pts = np.asarray(pts3d_i, np.float32).astype(np.float64)[None]
    focal = estimate_focal_knowing_depth(pts, np.asarray(pp, np.float64)[None], focal_mode=focal_mode)
    return float(np.float32(focal[0]))
