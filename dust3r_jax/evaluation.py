"""Accuracy measures of depth maps and camera poses, as the literature reports them.

Depth (per image, after median scaling, as monocular-depth benchmarks do):
    AbsRel = mean |s * pred - gt| / gt,   delta<1.25 = fraction with max(s*pred/gt, gt/(s*pred)) < 1.25,
    s = median(gt) / median(pred) over the valid pixels.
Poses (the CO3D protocol of PoseDiffusion, which the DUSt3R paper follows): for every pair of
views (i < j) the relative rotation error (degrees) between R_i^T R_j predicted and true, and
the angle between the predicted and true relative translation directions (in camera i's frame);
RRA@t / RTA@t are the fractions of pairs under t degrees, mAA(30) is the mean over t = 1..30 of
the fraction whose max(rotation error, translation error) is under t.
Camera poses are cam2world (N, 4, 4), OpenCV axes; all measures ignore the global similarity.
"""
import numpy as np


def median_scaled_depth_errors(pred_depth, gt_depth, valid=None):
    """(AbsRel, delta<1.25) of one depth map. pred_depth, gt_depth: (H, W); valid: (H, W) bool."""
    pred_depth, gt_depth = np.asarray(pred_depth, np.float64), np.asarray(gt_depth, np.float64)
    mask = (gt_depth > 0) & np.isfinite(gt_depth) & (pred_depth > 0) & np.isfinite(pred_depth)
    if valid is not None:
        mask &= np.asarray(valid, bool)
    if not mask.any():
        return float("nan"), float("nan")
    pred, gt = pred_depth[mask], gt_depth[mask]
    pred = pred * (np.median(gt) / np.median(pred))
    abs_rel = float(np.mean(np.abs(pred - gt) / gt))
    delta = float(np.mean(np.maximum(pred / gt, gt / pred) < 1.25))
    return abs_rel, delta


def rotation_angle_deg(rotation):
    """Angle (degrees) of rotation matrices (..., 3, 3)."""
    trace = np.trace(rotation, axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))


def relative_pose_errors(pred_cam2world, gt_cam2world):
    """Rotation and translation-direction errors (degrees) of every pair i < j: two (P,) arrays."""
    pred, gt = np.asarray(pred_cam2world, np.float64), np.asarray(gt_cam2world, np.float64)
    count = len(gt)
    rot_err, trans_err = [], []
    for i in range(count):
        for j in range(i + 1, count):
            rel_pred = pred[i, :3, :3].T @ pred[j, :3, :3]
            rel_gt = gt[i, :3, :3].T @ gt[j, :3, :3]
            rot_err.append(rotation_angle_deg(rel_pred.T @ rel_gt))
            t_pred = pred[i, :3, :3].T @ (pred[j, :3, 3] - pred[i, :3, 3])
            t_gt = gt[i, :3, :3].T @ (gt[j, :3, 3] - gt[i, :3, 3])
            norms = np.linalg.norm(t_pred) * np.linalg.norm(t_gt)
            cosine = np.dot(t_pred, t_gt) / norms if norms > 0 else -1.0  # no translation: a miss
            trans_err.append(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
    return np.array(rot_err), np.array(trans_err)


def pose_accuracy(rot_err, trans_err, threshold=15.0, max_threshold=30):
    """{'RRA@t', 'RTA@t', 'mAA(T)'} in percent from per-pair errors (degrees)."""
    rot_err, trans_err = np.asarray(rot_err), np.asarray(trans_err)
    worst = np.maximum(rot_err, trans_err)
    auc = np.mean([np.mean(worst < t) for t in range(1, max_threshold + 1)])
    return {f"RRA@{threshold:g}": 100.0 * float(np.mean(rot_err < threshold)),
            f"RTA@{threshold:g}": 100.0 * float(np.mean(trans_err < threshold)),
            f"mAA({max_threshold})": 100.0 * float(auc)}


# ---- a model on procedural scenes and on the Middlebury pair ---------------------------------------
def trivial_baseline_poses(count):
    """The trivial answer: every camera with the identity rotation, a sideways step apart."""
    cam2world = np.tile(np.eye(4), (count, 1, 1))
    cam2world[:, 0, 3] = np.arange(count, dtype=np.float64)
    return cam2world


def reconstruct_views(images, model, params, niter=300, batch_size=8, verbose=False):
    """Complete graph, symmetrised pairs, network, global alignment (MST init, cosine schedule).

    images: `load_images` output. Returns (inference output, aligned Scene).
    """
    from dust3r_jax.alignment import global_align
    from dust3r_jax.inference import inference
    from dust3r_jax.pairs import make_pairs

    pairs = make_pairs(images, scene_graph="complete", symmetrize=True)
    output = inference(pairs, model, params, batch_size=batch_size, verbose=verbose)
    mode = "pair" if len(images) == 2 else "pointcloud"
    scene = global_align(output, mode=mode, init="mst", niter=niter, schedule="cosine", lr=0.01)
    return output, scene


def pair_depth_errors(output, gt_depths):
    """AbsRel and delta of every pair's first-view depth (pred1 pts3d z) against `gt_depths[idx]`."""
    pts = output["pred1"]["pts3d"]
    errors = []
    for k, idx in enumerate(np.asarray(output["view1"]["idx"]).reshape(-1)):
        errors.append(median_scaled_depth_errors(np.asarray(pts[k])[..., 2], gt_depths[int(idx)]))
    return np.array(errors)


def evaluate_procedural_scene(model, params, seed, num_views=6, width=128, niter=300, workdir=None):
    """Renders held-out scene `seed` (as training data: 160x120 PNGs, loaded at `width`), reconstructs
    it, and returns {'depth': (P, 2) per-pair (AbsRel, delta), 'baseline_depth': (N, 2),
    'rot_err', 'trans_err', 'baseline_rot_err', 'baseline_trans_err': per view pair (degrees),
    'views': the rendered views at network resolution (exact depth), 'scene', 'images'}.
    """
    import tempfile
    from pathlib import Path

    import PIL.Image

    from dust3r_jax.data.procedural.scene import make_scene, render_view
    from dust3r_jax.data.sources.procedural import DEFAULT_SIZE
    from dust3r_jax.images import load_images

    scene_description = make_scene(seed, num_views)
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        for v in range(num_views):
            view = render_view(scene_description, v, *DEFAULT_SIZE)
            PIL.Image.fromarray(view["image"]).save(Path(folder) / f"view_{v:02d}.png")
        images = load_images(folder, size=width)
    height = images[0]["img"].shape[1]
    truth = [render_view(scene_description, v, width, height) for v in range(num_views)]
    gt_depths = [t["depth"] for t in truth]
    output, scene = reconstruct_views(images, model, params, niter=niter)
    gt_poses = np.stack([t["cam2world"] for t in truth])
    rot_err, trans_err = relative_pose_errors(scene.cam2world, gt_poses)
    base_rot, base_trans = relative_pose_errors(trivial_baseline_poses(num_views), gt_poses)
    baseline_depth = np.array([median_scaled_depth_errors(np.ones_like(d), d) for d in gt_depths])
    return dict(depth=pair_depth_errors(output, gt_depths), baseline_depth=baseline_depth, rot_err=rot_err,
                trans_err=trans_err, baseline_rot_err=base_rot, baseline_trans_err=base_trans, views=truth,
                scene=scene, images=images, output=output)


# The Middlebury 2014 Motorcycle pair as scikit-image ships it (down-sampled 4x); calibration from
# `skimage.data.stereo_motorcycle`'s docstring: depth = f * baseline / (disparity + doffs).
MOTORCYCLE_FOCAL_PX, MOTORCYCLE_BASELINE_MM, MOTORCYCLE_DOFFS_PX = 994.978, 193.001, 31.086


def motorcycle_depth_errors(model, params, width, workdir=None):
    """(AbsRel, delta<1.25) of the left image's depth from the (left, right) pair, median scaled.

    The ground truth (NaN-free pixels of the disparity map) is resized and cropped exactly as
    `load_images` resizes and crops the image (nearest neighbour for the depth).
    """
    import tempfile
    from pathlib import Path

    import PIL.Image
    import skimage.data

    from dust3r_jax.images import load_images

    left, right, disparity = skimage.data.stereo_motorcycle()
    depth = MOTORCYCLE_FOCAL_PX * MOTORCYCLE_BASELINE_MM / (disparity + MOTORCYCLE_DOFFS_PX)
    depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        PIL.Image.fromarray(left).save(Path(folder) / "0_left.png")
        PIL.Image.fromarray(right).save(Path(folder) / "1_right.png")
        images = load_images(folder, size=width)
    source = images[0]["source"]
    resized_h, resized_w = source["resized_shape"]
    top, left = source["crop_offset"]
    height, width_ = images[0]["img"].shape[1:3]
    gt = np.asarray(PIL.Image.fromarray(depth).resize((resized_w, resized_h), PIL.Image.NEAREST))
    gt = gt[top:top + height, left:left + width_]
    output, _ = reconstruct_views(images, model, params, niter=0)
    pts = output["pred1"]["pts3d"]
    errors = [median_scaled_depth_errors(np.asarray(pts[k])[..., 2], gt)
              for k, idx in enumerate(np.asarray(output["view1"]["idx"]).reshape(-1)) if int(idx) == 0]
    return tuple(float(v) for v in np.mean(errors, axis=0))
