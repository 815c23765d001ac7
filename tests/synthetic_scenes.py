"""Synthetic scenes with known geometry, for tests and benchmarks of the aligner (a test helper:
experiments import it as `from tests import synthetic_scenes`).

A box-shaped room with a few boxes inside, cameras on an arc looking at the centre (OpenCV
axes), ray-cast depth, and "predictions" made from the ground truth the way DUSt3R's are laid
out: for pair (i, j), pred_i = s_ij * (points of image i in camera i) and pred_j = s_ij * (points
of image j in camera i), with depth-proportional noise and a random per-pair scale s_ij.
Nothing here comes from the official code.
"""
import numpy as np

_ROOM = (np.array([-3.0, -2.0, -3.0]), np.array([3.0, 2.0, 3.0]))
_BOXES = [(np.array([-0.8, 0.5, -0.6]), np.array([-0.1, 2.0, 0.2])),
          (np.array([0.3, 1.0, 0.1]), np.array([1.1, 2.0, 0.9])),
          (np.array([-0.3, -0.6, 0.6]), np.array([0.4, 0.2, 1.2]))]


def look_at(centre, target, down=(0.0, 1.0, 0.0)):
    """cam2world (4, 4) of a camera at `centre` looking at `target` (OpenCV: y down)."""
    z = np.asarray(target, float) - centre
    z /= np.linalg.norm(z)
    x = np.cross(down, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack((x, y, z), axis=1)
    pose[:3, 3] = centre
    return pose


def _ray_depth(origin, dirs):
    """Distance along `dirs` (P, 3) from `origin` to the first surface (room walls or boxes)."""
    lo, hi = _ROOM
    with np.errstate(divide="ignore", invalid="ignore"):
        t_exit = np.where(dirs > 0, (hi - origin) / dirs, (lo - origin) / dirs)
        t = np.nanmin(np.where(np.isfinite(t_exit), t_exit, np.inf), axis=-1)
        for blo, bhi in _BOXES:
            t1 = (blo - origin) / dirs
            t2 = (bhi - origin) / dirs
            t_near = np.nanmax(np.minimum(t1, t2), axis=-1)
            t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
            hit = (t_far >= t_near) & (t_near > 0)
            t = np.where(hit, np.minimum(t, t_near), t)
    return t


def render(cam2world, focal, H, W):
    """Ray-cast depth (H, W) and world points (H, W, 3) of a camera with pp = (W/2, H/2)."""
    v, u = np.mgrid[:H, :W].astype(np.float64)
    dirs_cam = np.stack(((u - W / 2) / focal, (v - H / 2) / focal, np.ones_like(u)), -1).reshape(-1, 3)
    dirs = dirs_cam @ cam2world[:3, :3].T
    depth = _ray_depth(cam2world[:3, 3], dirs)  # dirs_cam has z = 1, so t is the z-depth
    pts = cam2world[:3, 3] + dirs * depth[:, None]
    return depth.reshape(H, W), pts.reshape(H, W, 3)


def make_scene(n_views, H, W, seed=0, arc_deg=60.0, radius=1.6):
    """Ground truth: dict with cam2world (N, 4, 4), focals (N,), depth (N, H, W), pts_world (N, H, W, 3)."""
    rng = np.random.default_rng(seed)
    angles = np.deg2rad(np.linspace(-arc_deg / 2, arc_deg / 2, n_views) + rng.normal(0, 2, n_views))
    poses, focals, depths, pts = [], [], [], []
    for a in angles:
        centre = np.array([radius * np.sin(a), -0.3 + rng.normal(0, 0.1), -radius * np.cos(a)])
        pose = look_at(centre, np.array([0.0, 0.3, 0.5]) + rng.normal(0, 0.1, 3))
        focal = max(H, W) * rng.uniform(0.8, 1.2)
        d, p = render(pose, focal, H, W)
        poses.append(pose), focals.append(focal), depths.append(d), pts.append(p)
    return {"cam2world": np.stack(poses), "focals": np.array(focals), "depth": np.stack(depths),
            "pts_world": np.stack(pts)}


def complete_pairs(n_views, symmetrize=True):
    """(i, j) for i > j (the official 'complete' order), then the reversed pairs."""
    pairs = [(i, j) for i in range(n_views) for j in range(i)]
    return pairs + [(j, i) for i, j in pairs] if symmetrize else pairs


def swin_pairs(n_views, winsize=3, cyclic=True, symmetrize=True):
    """Sliding-window pairs: each image with the next `winsize` images."""
    pairs = set()
    for i in range(n_views):
        for k in range(1, winsize + 1):
            j = (i + k) % n_views if cyclic else i + k
            if j < n_views and j != i:
                pairs.add((min(i, j), max(i, j)))
    pairs = sorted(pairs)
    return pairs + [(j, i) for i, j in pairs] if symmetrize else pairs


def logwin_pairs(n_views, winsize=3, cyclic=True, symmetrize=True):
    """Log-window pairs: each image with images at offsets 1, 2, 4, ..., 2^(winsize-1)."""
    pairs = set()
    for i in range(n_views):
        for k in (2 ** p for p in range(winsize)):
            j = (i + k) % n_views if cyclic else i + k
            if j < n_views and j != i:
                pairs.add((min(i, j), max(i, j)))
    pairs = sorted(pairs)
    return pairs + [(j, i) for i, j in pairs] if symmetrize else pairs


def make_predictions(scene, edges, noise=0.01, outlier_frac=0.0, seed=0, dtype=np.float32):
    """`inference()`-style output for `edges` from a `make_scene` ground truth (stacked arrays)."""
    rng = np.random.default_rng(seed + 1)
    world2cam = np.linalg.inv(scene["cam2world"])
    n_edges = len(edges)
    N, H, W, _ = scene["pts_world"].shape
    out = {k: np.empty((n_edges, H, W, 3), dtype) for k in ("p1", "p2")}
    conf = {k: np.empty((n_edges, H, W), dtype) for k in ("c1", "c2")}
    # noise is drawn in float32 (twice as fast as float64: benchmarks make thousands of 512x384 pairs)
    pts_world = scene["pts_world"].astype(np.float32)
    for e, (i, j) in enumerate(edges):
        s = rng.uniform(0.5, 2.0)
        rot, trans = world2cam[i, :3, :3].T.astype(np.float32), world2cam[i, :3, 3].astype(np.float32)
        for key, ckey, n in (("p1", "c1", i), ("p2", "c2", j)):
            pts = pts_world[n] @ rot + trans
            pts += noise * pts[..., 2:3] * rng.standard_normal(pts.shape, dtype=np.float32)
            c = 1 + np.exp(0.9 + 0.6 * rng.standard_normal((H, W), dtype=np.float32))
            if outlier_frac:
                # outliers stay in front of the camera (DUSt3R's depth is exp(.) > 0): moved along
                # their ray by a factor in [0.5, 1.5] plus 10% lateral noise, with low confidence
                bad = rng.random((H, W), dtype=np.float32) < outlier_frac
                k = int(bad.sum())
                pts[bad] *= rng.uniform(0.5, 1.5, size=(k, 1))
                pts[bad, :2] += 0.1 * pts[bad, 2:3] * rng.normal(size=(k, 2))
                c[bad] = rng.uniform(1.0, 1.3, size=k)
            out[key][e] = s * pts
            conf[ckey][e] = c
    idx1 = np.array([i for i, _ in edges])
    idx2 = np.array([j for _, j in edges])
    return {"view1": {"idx": idx1, "true_shape": np.tile([H, W], (n_edges, 1)).astype(np.int32)},
            "view2": {"idx": idx2, "true_shape": np.tile([H, W], (n_edges, 1)).astype(np.int32)},
            "pred1": {"pts3d": out["p1"], "conf": conf["c1"]},
            "pred2": {"pts3d_in_other_view": out["p2"], "conf": conf["c2"]}}


def relative_pose_errors(cam2world, cam2world_gt):
    """Max over image pairs of (rotation error in degrees, translation direction error in degrees)
    of the relative poses inv(P_i) P_j, comparing estimate and truth (scale-free)."""
    from dust3r_jax.geometry import rotation_angle_deg
    rot_err, dir_err = 0.0, 0.0
    n = len(cam2world)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            rel = np.linalg.inv(cam2world[i]) @ cam2world[j]
            rel_gt = np.linalg.inv(cam2world_gt[i]) @ cam2world_gt[j]
            rot_err = max(rot_err, float(rotation_angle_deg(rel[:3, :3], rel_gt[:3, :3])))
            a, b = rel[:3, 3], rel_gt[:3, 3]
            cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            dir_err = max(dir_err, float(np.degrees(np.arccos(np.clip(cos, -1, 1)))))
    return rot_err, dir_err
