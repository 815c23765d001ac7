"""Camera pose from 2D-3D correspondences with PnP-RANSAC (OpenCV SQPnP), as the official aligner.

OpenCV is an optional dependency (extra `pnp`): it is imported when a PnP is actually needed, and
a clear error says how to install it otherwise.
"""
import numpy as np

from dust3r_jax.errors import InputError
from dust3r_jax.geometry import sRT_to_4x4


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError("PnP-RANSAC needs OpenCV: pip install opencv-python-headless "
                         "(or dust3r-jax[pnp])") from exc
    return cv2


def pixel_grid(H, W):
    """(H, W, 2) float32 pixel coordinates (u, v) as the official `np.mgrid[:W, :H].T`."""
    return np.mgrid[:W, :H].T.astype(np.float32)


def solve_pnp_ransac(pts3d, pixels, focal, pp, niter=10, reproj_error=5.0):
    """One SQPnP-RANSAC run. pts3d (M, 3) world points, pixels (M, 2) their (u, v), focal (float),
    pp (cx, cy). Returns (n_inliers, world2cam (4, 4) float64) or None on failure."""
    cv2 = _cv2()
    K = np.float32([(focal, 0, pp[0]), (0, focal, pp[1]), (0, 0, 1)])
    try:
        success, rvec, tvec, inliers = cv2.solvePnPRansac(
            np.asarray(pts3d, np.float32), np.asarray(pixels, np.float32), K, None,
            iterationsCount=niter, reprojectionError=reproj_error, flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:
        return None
    if not success or inliers is None:
        return None
    R = cv2.Rodrigues(rvec)[0]
    return len(inliers), sRT_to_4x4(1.0, R, tvec.ravel())


def fast_pnp(pts3d, focal, msk, pp=None, niter_PnP=10):
    """Pose (and focal, if unknown) of an image from its world pointmap, as the official `fast_pnp`.

    pts3d: (H, W, 3) points of the image's pixels in the world frame; msk: (H, W) bool pixels to
    use; focal: float, or None to try 21 focals in [S/2, 3S] (S = max(H, W)) and keep the one with
    most inliers; pp: (cx, cy) or None for (W/2, H/2).
    Returns (focal, cam2world (4, 4) float64) or None (fewer than 4 points, or PnP failed).
    """
    msk = np.asarray(msk, bool)
    if msk.sum() < 4:
        return None
    pts3d = np.asarray(pts3d, np.float32)
    H, W, _ = pts3d.shape
    pixels = pixel_grid(H, W)
    if focal is None:
        S = max(W, H)
        tentative_focals = np.geomspace(S / 2, S * 3, 21)
    else:
        tentative_focals = [focal]
    pp = (W / 2, H / 2) if pp is None else np.asarray(pp)
    best = None
    for f in tentative_focals:
        res = solve_pnp_ransac(pts3d[msk], pixels[msk], f, pp, niter=niter_PnP)
        if res is not None and (best is None or res[0] > best[0]):
            best = (res[0], res[1], f)
    if best is None:
        return None
    _, world2cam, best_focal = best
    return best_focal, np.linalg.inv(world2cam)
