"""The result of MASt3R's sparse alignment, read like the official SparseGA
(mast3r/cloud_opt/sparse_ga.py): cameras, the sparse points of the correspondences, the anchor
depth maps, and dense points rebuilt from the anchors and the canonical depth ratios.
Read-outs are NumPy arrays where the official ones are torch tensors."""
import dataclasses

import jax.numpy as jnp
import numpy as np

from dust3r_jax.geometry import geotrf
from dust3r_jax.mast3r.canonical import anchor_depth_offsets
from dust3r_jax.mast3r.sparse_opt import points3d

__all__ = ["SparseScene", "clean_pointcloud"]


def clean_pointcloud(confs, K, world2cam, depthmaps, pts3d, tol=0.001, bad_conf=0.0):
    """dust3r.cloud_opt.base_opt.clean_pointcloud (the function): a point of image i that another
    camera j sees closer than its own depth map (by more than tol, relative) and that is less
    confident than j's pixel there gets confidence at most bad_conf. Images are visited in order
    and read the confidences already lowered.

    confs: list of (H, W); K, world2cam: (N, 3, 3), (N, 4, 4); depthmaps: list of (H W,) or (H, W)
    depths in each camera; pts3d: list of (H W, 3) world points. Returns the new confidences."""
    out = [np.array(c, np.float32, copy=True) for c in confs]
    pts3d = [np.asarray(p, np.float32).reshape(*c.shape, 3) for p, c in zip(pts3d, out)]
    depthmaps = [np.asarray(d, np.float32).reshape(c.shape) for d, c in zip(depthmaps, out)]
    K, world2cam = np.asarray(K, np.float32), np.asarray(world2cam, np.float32)
    for i, pts in enumerate(pts3d):
        for j in range(len(pts3d)):
            if i == j:
                continue
            proj = geotrf(world2cam[j], pts)
            with np.errstate(divide="ignore", invalid="ignore"):
                uv = geotrf(K[j], proj, norm=1, ncol=2)
            uv = np.nan_to_num(np.round(uv), nan=-1.0, posinf=-1.0, neginf=-1.0)
            u, v = uv[..., 0].astype(np.int64), uv[..., 1].astype(np.int64)
            H, W = out[j].shape
            seen = (proj[..., 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
            vv, uu = v[seen], u[seen]
            bad = (proj[..., 2][seen] < (1 - tol) * depthmaps[j][vv, uu]) & (out[i][seen] < out[j][vv, uu])
            mask = np.zeros_like(seen)
            mask[seen] = bad
            out[i][mask] = np.minimum(out[i][mask], bad_conf)
    return out


@dataclasses.dataclass(frozen=True)
class SparseScene:
    """Cameras and points of a sparse alignment (N images).

    intrinsics (N, 3, 3), cam2w (N, 4, 4) camera-to-world (OpenCV axes); depthmaps: list of (h w,)
    depths of each image's anchor grid; pts3d: list of (P_i, 3) world points of each image's
    correspondences; colors: list of (P_i, 3) their colours (None without images); imgs: list of
    (H, W, 3) images in [0, 1] or None; problem: the `SparseProblem` (canonical views for the
    dense points); tree: (root, edges) the kinematic tree; corres: {(i, j): (score, (xy_i, xy_j,
    conf))} the correspondences of each pair; losses: final loss of each stage.
    """
    intrinsics: np.ndarray
    cam2w: np.ndarray
    depthmaps: list
    pts3d: list
    colors: list
    imgs: list
    problem: object
    tree: tuple
    corres: dict
    losses: dict

    @property
    def n_imgs(self):
        return len(self.cam2w)

    def get_focals(self):
        """(N,) focals in pixels."""
        return self.intrinsics[:, 0, 0].copy()

    def get_principal_points(self):
        """(N, 2) principal points (cx, cy) in pixels."""
        return self.intrinsics[:, :2, 2].copy()

    def get_intrinsics(self):
        return self.intrinsics.copy()

    def get_im_poses(self):
        """(N, 4, 4) camera-to-world."""
        return self.cam2w.copy()

    def get_sparse_pts3d(self):
        return list(self.pts3d)

    def get_pts3d_colors(self):
        return list(self.colors) if self.colors is not None else None

    def get_depthmaps(self):
        return list(self.depthmaps)

    def get_masks(self):
        return [slice(None, None) for _ in range(self.n_imgs)]

    def get_dense_pts3d(self, clean_depth=True, subsample=8):
        """Every pixel's point from its anchor's optimised depth and its canonical depth ratio.

        Returns (pts3d: list of (H W, 3) world points, depthmaps: list of (H W,) depths in each
        camera, confs: list of (H, W) canonical confidences, lowered by `clean_pointcloud` for
        points in front of another camera's surface when clean_depth)."""
        problem = self.problem
        K, cam2w = jnp.asarray(self.intrinsics), jnp.asarray(self.cam2w)
        depth = jnp.asarray(np.concatenate([np.ravel(d) for d in self.depthmaps]))
        pts3d, depths = [], []
        for i, canon2 in enumerate(problem.canon2):
            H, W = canon2.shape
            ys, xs = np.mgrid[:H, :W]
            xy = np.stack([xs.ravel(), ys.ravel()], axis=1)
            idx, offset = anchor_depth_offsets(canon2, xy, subsample)
            img = jnp.full(len(xy), i, jnp.int32)
            cam, z = points3d(K, cam2w, depth, img, jnp.asarray(xy, jnp.float32), jnp.asarray(idx + problem.grid_start[i]),
                              jnp.asarray(offset), jnp.asarray(problem.base_focals), world=False)
            pts3d.append(np.asarray(geotrf(self.cam2w[i], np.asarray(cam))))
            depths.append(np.asarray(z))
        confs = [np.array(c, copy=True) for c in problem.canon_conf]
        if clean_depth:
            confs = clean_pointcloud(confs, self.intrinsics, np.linalg.inv(self.cam2w), depths, pts3d)
        return pts3d, depths, confs
