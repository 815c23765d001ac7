"""The aligner's parameters and how they decode into cameras, as in the official optimiser.

Parameters (a pytree, float32; N images, E pairs):
* `depth`: list over image-shape groups of (n_g, H_g * W_g) log-depth maps (ragged by shape:
  no image is padded to the largest area);
* `im_poses` (N, 7): unit quaternion (x, y, z, w) (normalised when decoded) + signed_log1p(t),
  camera-to-world;
* `im_focals` (N, 1): focal_break * log(f), fx = fy = f in pixels;
* `im_pp` (N, 2): principal point offset, pp = (W/2, H/2) + 10 * im_pp;
* `pw_poses` (E, 8): quaternion, signed_log1p(t / s), log s: a scaled rigid transform per pair
  taking pair predictions (camera-i frame) to the world;
* `pw_adaptors` (E, 2): per-pair anisotropic scale (xy, z), frozen at 0 unless allowed.
Every function below works on NumPy or JAX arrays.
"""
import numpy as np

from dust3r_jax.geometry import _xp, quat_to_rotmat, rotmat_to_quat, signed_expm1, signed_log1p


def decode_poses(poses):
    """(K, 7+) pose parameters -> (K, 4, 4) rigid transforms (the scale entry is ignored)."""
    xp = _xp(poses)
    q = poses[:, :4]
    q = q / xp.linalg.norm(q, axis=-1, keepdims=True)
    R = quat_to_rotmat(q)
    t = signed_expm1(poses[:, 4:7])
    top = xp.concatenate((R, t[:, :, None]), axis=-1)
    bottom = xp.broadcast_to(xp.asarray([0, 0, 0, 1], dtype=top.dtype), (len(poses), 1, 4))
    return xp.concatenate((top, bottom), axis=1)


def pw_scales(pw_poses, base_scale=0.5, norm_pw_scale=True):
    """(E, 8) pair poses -> (E,) scales; renormalised so their geometric mean is `base_scale`
    (the official normalisation, applied at every evaluation) unless poses are known."""
    xp = _xp(pw_poses)
    log_s = pw_poses[:, -1]
    scale = xp.exp(log_s)
    if norm_pw_scale:
        scale = scale * xp.exp(np.log(base_scale) - xp.mean(log_s))
    return scale


def scaled_pw_poses(pw_poses, base_scale=0.5, norm_pw_scale=True):
    """(E, 8) -> (E, 4, 4) `[[s R, s t], [0, 1]]` mapping pair predictions to the world."""
    RT = decode_poses(pw_poses)
    s = pw_scales(pw_poses, base_scale, norm_pw_scale)
    xp = _xp(pw_poses)
    top = RT[:, :3] * s[:, None, None]
    return xp.concatenate((top, RT[:, 3:]), axis=1)


def adaptors(pw_adaptors, pw_break=20.0):
    """(E, 2) -> (E, 3) per-axis scale factors exp(([a0, a0, a1] - mean) / pw_break)."""
    xp = _xp(pw_adaptors)
    a = xp.concatenate((pw_adaptors[:, 0:1], pw_adaptors), axis=-1)
    a = a - xp.mean(a, axis=1, keepdims=True)
    return xp.exp(a / pw_break)


def focals_from_params(im_focals, focal_break=20.0):
    """(N, 1) -> (N,) focals in pixels."""
    xp = _xp(im_focals)
    return xp.exp(im_focals[:, 0] / focal_break)


def principal_points(im_pp, imshapes):
    """(N, 2) offsets -> (N, 2) principal points (cx, cy) = (W/2, H/2) + 10 * offset."""
    xp = _xp(im_pp)
    centre = xp.asarray([(w / 2, h / 2) for h, w in imshapes], dtype=im_pp.dtype)
    return centre + 10 * im_pp


def encode_pose(R, T, scale=None):
    """(R (3, 3), T (3,)[, scale]) -> 7 (or 8 with scale) pose numbers (NumPy float64),
    the inverse of `decode_poses`: translation stored as signed_log1p(T / scale)."""
    q = rotmat_to_quat(R)
    t = signed_log1p(np.asarray(T, np.float64).ravel() / (scale or 1))
    if scale is None:
        return np.concatenate((q, t))
    return np.concatenate((q, t, [np.log(float(scale))]))


def default_params(imshapes, n_edges, focal_break=20.0, rng=None):
    """Random starting parameters as the official constructor draws them (log-depth ~ N(-3, 0.1^2),
    random poses, focal = max(H, W)); used when `init=None`. Per image, NumPy float32."""
    rng = np.random.default_rng(0) if rng is None else rng
    n = len(imshapes)
    return {
        "depth": [(rng.normal(size=h * w) / 10 - 3).astype(np.float32) for h, w in imshapes],
        "im_poses": rng.normal(size=(n, 7)).astype(np.float32),
        "im_focals": np.array([[focal_break * np.log(max(h, w))] for h, w in imshapes], np.float32),
        "im_pp": np.zeros((n, 2), np.float32),
        "pw_poses": rng.normal(size=(n_edges, 8)).astype(np.float32),
        "pw_adaptors": np.zeros((n_edges, 2), np.float32),
    }
