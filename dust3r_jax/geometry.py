"""Geometry shared by the model, losses and alignment: rigid transforms, pixel grids, quaternions.

Conventions (those of the official DUSt3R code):
* Camera frames use OpenCV axes (x right, y down, z forward). Poses are camera-to-world 4x4
  matrices `[[R, t], [0, 0, 0, 1]]`.
* Pixel (u, v) = (column, row), integer values at pixel centres; the grid starts at 0.
* Quaternions are (x, y, z, w) (the roma convention), rotation matrices act on column vectors.

Every function works on NumPy arrays when all its array inputs are NumPy (it then returns NumPy,
as the official helpers do) and on JAX arrays otherwise, so host-side code (the spanning-tree
initialisation, PnP) and jitted code share one implementation.
"""
import numpy as np
import jax.numpy as jnp


def _xp(*arrays):
    """NumPy if every array argument is a NumPy array (or scalar), else jax.numpy."""
    for a in arrays:
        if a is not None and not isinstance(a, (np.ndarray, np.generic, float, int)):
            return jnp
    return np


# ---------------------------------------------------------------------------------------------
# pixel grids

def xy_grid(W, H, dtype=np.int64, xp=np):
    """Pixel coordinates of an image: (H, W, 2) with [..., 0] = u (column), [..., 1] = v (row);
    integers by default, as the official `dust3r.utils.geometry.xy_grid(W, H)`."""
    u, v = xp.meshgrid(xp.arange(W, dtype=dtype), xp.arange(H, dtype=dtype), indexing="xy")
    return xp.stack((u, v), axis=-1)


# ---------------------------------------------------------------------------------------------
# rigid transforms

def geotrf(Trf, pts, ncol=None, norm=False):
    """Apply a homogeneous transform (or a plain matrix) to points, as the official `geotrf`.

    Trf: (..., d+1, d+1) homogeneous transform or (..., d, d) linear map (e.g. intrinsics K);
      leading batch dims, if any, must match the leading dims of `pts`.
    pts: (..., d) points, e.g. (N, 3), (H, W, 3) or (B, H, W, 3).
    ncol: keep only the first `ncol` output coordinates (e.g. 2 for pixel coordinates).
    norm: if truthy, divide by the last coordinate (perspective division), then multiply by
      `norm` if it is not 1.
    Returns points of shape pts.shape[:-1] + (ncol or d,).
    """
    xp = _xp(Trf, pts)
    Trf = xp.asarray(Trf)
    pts = xp.asarray(pts, dtype=Trf.dtype)
    out_shape = pts.shape[:-1]
    ncol = ncol or pts.shape[-1]
    d = pts.shape[-1]
    if Trf.ndim >= 3:
        # batched transforms: flatten everything between the batch dims and the coordinates
        nb = Trf.ndim - 2
        assert Trf.shape[:nb] == pts.shape[:nb], "batch size does not match"
        Trf = Trf.reshape(-1, *Trf.shape[-2:])
        pts = pts.reshape(Trf.shape[0], -1, d)
    if Trf.shape[-1] == d + 1:
        TrfT = xp.swapaxes(Trf, -1, -2)
        pts = pts @ TrfT[..., :-1, :] + TrfT[..., -1:, :]
    elif Trf.shape[-1] == d:
        pts = pts @ xp.swapaxes(Trf, -1, -2)
    else:
        raise ValueError(f"geotrf: transform {Trf.shape} does not fit points of dim {d}")
    if norm:
        pts = pts / pts[..., -1:]
        if norm != 1:
            pts = pts * norm
    return pts[..., :ncol].reshape(*out_shape, ncol)


def inv(mat):
    """Matrix inverse of (..., n, n), NumPy or JAX."""
    xp = _xp(mat)
    return xp.linalg.inv(mat)


def sRT_to_4x4(scale, R, T):
    """(scale, R (3, 3), T (3,)) -> 4x4 `[[scale * R, T], [0, 1]]` (T is not scaled)."""
    xp = _xp(R, T)
    R = xp.asarray(R)
    trf = xp.eye(4, dtype=R.dtype)
    if xp is np:
        trf[:3, :3] = R * scale
        trf[:3, 3] = np.ravel(T)
        return trf
    return trf.at[:3, :3].set(R * scale).at[:3, 3].set(jnp.ravel(T))


def rigid_points_registration(pts_src, pts_dst, weights=None):
    """Weighted similarity (Umeyama) registration: find (s, R, T) minimising
    sum_k w_k ||s R src_k + T - dst_k||^2 (roma's `rigid_points_registration` with scaling).

    pts_src, pts_dst: (..., 3) point sets (any leading shape, flattened together);
    weights: same leading shape (e.g. confidences) or None.
    Returns (s: float, R: (3, 3), T: (3,)) so that dst ~= s R src + T. NumPy float64 inside.
    """
    x = np.asarray(pts_src, dtype=np.float64).reshape(-1, 3)
    y = np.asarray(pts_dst, dtype=np.float64).reshape(-1, 3)
    if weights is None:
        w = np.full(len(x), 1.0 / len(x))
    else:
        w = np.asarray(weights, dtype=np.float64).ravel()
        w = w / w.sum()
    xmean = w @ x
    ymean = w @ y
    xhat, yhat = x - xmean, y - ymean
    xhat_weighted = xhat * w[:, None]
    M = yhat.T @ xhat_weighted  # sum_k w_k yhat_k xhat_k^T, as one BLAS product (3x faster than einsum)
    U, S, Vt = np.linalg.svd(M)
    det = np.sign(np.linalg.det(U @ Vt))
    D = np.array([1.0, 1.0, det])
    R = (U * D) @ Vt
    sig2x = np.einsum("ki,ki->", xhat_weighted, xhat)
    s = float((S * D).sum() / sig2x)
    T = ymean - s * R @ xmean
    return s, R, T


def get_med_dist_between_poses(poses):
    """Median pairwise distance between the camera centres of (N, 4, 4) cam-to-world poses."""
    from scipy.spatial.distance import pdist
    return float(np.median(pdist(np.asarray(poses)[:, :3, 3])))


def align_multiple_poses(src_poses, target_poses):
    """Similarity (s, R, T) mapping camera centres (and points a little along each optical axis)
    of `src_poses` (N, 4, 4) onto those of `target_poses` (N, 4, 4); both cam-to-world."""
    def centre_and_z(poses):
        poses = np.asarray(poses, dtype=np.float64)
        eps = get_med_dist_between_poses(poses) / 100
        return np.concatenate((poses[:, :3, 3], poses[:, :3, 3] + eps * poses[:, :3, 2]))
    s, R, T = rigid_points_registration(centre_and_z(src_poses), centre_and_z(target_poses))
    return s, R, T


# ---------------------------------------------------------------------------------------------
# depth maps

def depthmap_to_pts3d(depth, focal, pp):
    """Back-project depth maps to points in the camera frame.

    depth: (..., H, W) z-depth; focal: (...,) or scalar (fx = fy); pp: (..., 2) principal point
    (cx, cy) in pixels. Returns (..., H, W, 3) = (d (u - cx) / f, d (v - cy) / f, d).
    """
    xp = _xp(depth, focal, pp)
    depth = xp.asarray(depth)
    H, W = depth.shape[-2:]
    grid = xy_grid(W, H, dtype=depth.dtype, xp=xp)
    focal = xp.asarray(focal, dtype=depth.dtype)[..., None, None, None]
    pp = xp.asarray(pp, dtype=depth.dtype)[..., None, None, :]
    d = depth[..., None]
    return xp.concatenate((d * (grid - pp) / focal, d), axis=-1)


def depthmap_to_world(depth, focal, pp, cam2world):
    """Depth maps (..., H, W) -> world points (..., H, W, 3) through cam2world (..., 4, 4)."""
    return geotrf(cam2world, depthmap_to_pts3d(depth, focal, pp))


def intrinsics_matrix(focal, pp):
    """focal (N,), pp (N, 2) -> K (N, 3, 3) with fx = fy = focal."""
    xp = _xp(focal, pp)
    focal = xp.asarray(focal)
    pp = xp.asarray(pp, dtype=focal.dtype)
    z = xp.zeros_like(focal)
    o = xp.ones_like(focal)
    rows = [xp.stack((focal, z, pp[..., 0]), -1), xp.stack((z, focal, pp[..., 1]), -1),
            xp.stack((z, z, o), -1)]
    return xp.stack(rows, axis=-2)


# ---------------------------------------------------------------------------------------------
# quaternions (x, y, z, w) and the signed log parametrisation of translations

def quat_to_rotmat(quat):
    """Unit quaternions (..., 4) as (x, y, z, w) -> rotation matrices (..., 3, 3).
    The input is used as given (normalise first); written like roma so float32 rounding matches."""
    xp = _xp(quat)
    x, y, z, w = (quat[..., k] for k in range(4))
    x2, y2, z2, w2 = x * x, y * y, z * z, w * w
    xy, zw, xz, yw, yz, xw = x * y, z * w, x * z, y * w, y * z, x * w
    rows = [
        xp.stack((x2 - y2 - z2 + w2, 2 * (xy - zw), 2 * (xz + yw)), -1),
        xp.stack((2 * (xy + zw), -x2 + y2 - z2 + w2, 2 * (yz - xw)), -1),
        xp.stack((2 * (xz - yw), 2 * (yz + xw), -x2 - y2 + z2 + w2), -1),
    ]
    return xp.stack(rows, axis=-2)


def rotmat_to_quat(R):
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (x, y, z, w).

    scipy's `Rotation.as_quat` (the branch choice roma uses too, so the sign of the quaternion
    matches the official initialisation). NumPy only (host side).
    """
    from scipy.spatial.transform import Rotation

    R = np.asarray(R, dtype=np.float64)
    quats = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()
    return quats.reshape(R.shape[:-2] + (4,))


def signed_log1p(x):
    """sign(x) * log(1 + |x|): translations are stored this way in the aligner's parameters."""
    xp = _xp(x)
    return xp.sign(x) * xp.log1p(xp.abs(x))


def signed_expm1(x):
    """Inverse of `signed_log1p`: sign(x) * (exp(|x|) - 1)."""
    xp = _xp(x)
    return xp.sign(x) * xp.expm1(xp.abs(x))


def rotation_angle_deg(R1, R2):
    """Angle in degrees of the rotation R1^T R2, for (..., 3, 3) matrices (NumPy)."""
    R1 = np.asarray(R1, dtype=np.float64)
    R2 = np.asarray(R2, dtype=np.float64)
    tr = np.trace(np.swapaxes(R1, -1, -2) @ R2, axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1) / 2, -1.0, 1.0)))
