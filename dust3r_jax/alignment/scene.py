"""The aligned scene: cameras, depth maps and world points per image, plus confidence masks.

All arrays are NumPy (host side). Frames: `cam2world` (N, 4, 4) maps camera coordinates (OpenCV
axes) to the world (the frame of the first camera of the initialisation, up to the aligner's
global scale); `pts3d[i]` (H_i, W_i, 3) are world points of image i's pixels.
"""
import dataclasses

import numpy as np

from dust3r_jax.geometry import geotrf, intrinsics_matrix


@dataclasses.dataclass
class Scene:
    imshapes: list            # (H_i, W_i) per image
    edges: list               # (i, j) per pair used
    cam2world: np.ndarray     # (N, 4, 4)
    focals: np.ndarray        # (N,) pixels
    principal_points: np.ndarray  # (N, 2) (cx, cy)
    depthmaps: list           # (H_i, W_i) z-depth in camera i
    pts3d: list               # (H_i, W_i, 3) world points
    conf: list                # (H_i, W_i) per-image confidence (max over pairs)
    imgs: list                # (H_i, W_i, 3) in [0, 1] or None
    loss: float = float("nan")
    loss_history: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0,), np.float32))
    min_conf_thr: float = 3.0
    pw_poses: np.ndarray = None   # (E, 4, 4) scaled pair-to-world transforms (None for PairViewer)
    pw_scale: np.ndarray = None   # (E,)
    params: dict = None           # raw optimiser parameters (per image depth list), for inspection

    @property
    def n_imgs(self):
        return len(self.imshapes)

    @property
    def intrinsics(self):
        """(N, 3, 3) K with fx = fy = focal and the principal point."""
        return intrinsics_matrix(np.asarray(self.focals, np.float32), np.asarray(self.principal_points, np.float32))

    def masks(self, min_conf_thr=None):
        """Per image (H_i, W_i) bool: confidence > min_conf_thr (default: the aligner's)."""
        thr = self.min_conf_thr if min_conf_thr is None else min_conf_thr
        return [np.asarray(c) > thr for c in self.conf]

    # names of the official scene object, for code ported from it
    def get_im_poses(self):
        return self.cam2world

    def get_focals(self):
        return self.focals

    def get_principal_points(self):
        return self.principal_points

    def get_intrinsics(self):
        return self.intrinsics

    def get_depthmaps(self):
        return self.depthmaps

    def get_pts3d(self):
        return self.pts3d

    def get_masks(self):
        return self.masks()

    def clean_pointcloud(self, tol=0.001, bad_conf=0.0):
        """Lower to `bad_conf` the confidence of points that float IN FRONT of the surface another
        camera sees (closer to that camera than its depth map by more than `tol` relative: that
        camera looks through them) and are less confident than that surface's pixel, as the
        official `clean_pointcloud`. Returns a new Scene with the updated `conf`."""
        world2cam = np.linalg.inv(self.cam2world)
        K = self.intrinsics
        new_conf = [np.array(c, np.float32, copy=True) for c in self.conf]
        for i, pts in enumerate(self.pts3d):
            for j in range(self.n_imgs):
                if i == j:
                    continue
                proj = geotrf(world2cam[j], np.asarray(pts, np.float32))
                proj_depth = proj[..., 2]
                with np.errstate(divide="ignore", invalid="ignore"):
                    uv = geotrf(K[j], proj, norm=1, ncol=2)
                uv = np.nan_to_num(uv, nan=-1.0, posinf=-1.0, neginf=-1.0)
                u, v = np.round(uv[..., 0]).astype(np.int64), np.round(uv[..., 1]).astype(np.int64)
                H, W = self.imshapes[j]
                visible = (proj_depth > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
                vv, uu = v[visible], u[visible]
                bad = (proj_depth[visible] < (1 - tol) * self.depthmaps[j][vv, uu]) & \
                      (new_conf[i][visible] < new_conf[j][vv, uu])
                bad_mask = np.zeros_like(visible)
                bad_mask[visible] = bad
                new_conf[i][bad_mask] = np.minimum(new_conf[i][bad_mask], bad_conf)
        return dataclasses.replace(self, conf=new_conf)
