"""`dust3r-jax demo --out DIR`: the whole pipeline on a scene with known geometry, offline.

1. renders a held-out procedural scene (seeds no training run uses) into DIR/images/;
2. runs `dust3r-jax reconstruct DIR/images --out DIR/reconstruction` with the shipped model
   (or `--weights`): GLB, PLY, cameras.json, COLMAP model, depth/confidence maps;
3. compares what it wrote with the ground truth: depth AbsRel / delta<1.25 (median scaled), the
   relative camera pose errors (RRA@15, RTA@15, mAA(30)), prints them and draws
   DIR/comparison.png (true and predicted depth per view, true and predicted camera centres).
"""
import argparse
from pathlib import Path

import numpy as np

from dust3r_jax.errors import InputError

EVAL_FIRST_SEED = 2_000_000  # neither the training (0...) nor the training-time test (1_000_000...) seeds


def add_arguments(parser):
    parser.add_argument("--out", required=True, help="folder to create (must not exist)")
    parser.add_argument("--seed", type=int, default=EVAL_FIRST_SEED, help="which held-out scene")
    parser.add_argument("--views", type=int, default=6, help="number of views (>= 2)")
    parser.add_argument("--weights", default=None, help="default: the model shipped in the package")
    parser.add_argument("--niter", type=int, default=300, help="global alignment iterations")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _render_inputs(folder, seed, views):
    import PIL.Image

    from dust3r_jax.data.procedural.scene import make_scene, render_view
    from dust3r_jax.data.sources.procedural import DEFAULT_SIZE

    scene = make_scene(seed, views)
    folder.mkdir(parents=True)
    for v in range(views):
        PIL.Image.fromarray(render_view(scene, v, *DEFAULT_SIZE)["image"]).save(folder / f"view_{v:02d}.png")
    return scene


def _compare(scene_description, reconstruction):
    from dust3r_jax.data.procedural.scene import render_view
    from dust3r_jax.evaluation import median_scaled_depth_errors, pose_accuracy, relative_pose_errors
    from dust3r_jax.export import read_cameras_json

    cameras = read_cameras_json(reconstruction / "cameras.json")
    truth, depth_pairs, errors = [], [], []
    for i, name in enumerate(cameras["names"]):
        height, width = cameras["processed_shapes"][i]
        true_view = render_view(scene_description, i, width, height)
        predicted = np.load(reconstruction / "depth" / f"{name}.npy")
        truth.append(true_view)
        depth_pairs.append((true_view["depth"], predicted))
        errors.append(median_scaled_depth_errors(predicted, true_view["depth"]))
    gt_poses = np.stack([t["cam2world"] for t in truth]).astype(np.float64)
    rot_err, trans_err = relative_pose_errors(cameras["cam2world"], gt_poses)
    metrics = {"depth AbsRel": float(np.nanmean([e[0] for e in errors])),
               "depth delta<1.25": float(np.nanmean([e[1] for e in errors])),
               **pose_accuracy(rot_err, trans_err),
               "median rotation error (deg)": float(np.median(rot_err)),
               "median translation error (deg)": float(np.median(trans_err))}
    return metrics, depth_pairs, gt_poses, np.asarray(cameras["cam2world"], np.float64)


def _draw(path, images_folder, depth_pairs, gt_poses, pred_poses, metrics):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import PIL.Image

    from dust3r_jax.geometry import rigid_points_registration

    count = len(depth_pairs)
    figure, axes = plt.subplots(count, 3, figsize=(9, 2.2 * count + 0.6), squeeze=False)
    files = sorted(images_folder.glob("*.png"))
    for i, (true_depth, predicted) in enumerate(depth_pairs):
        valid = true_depth > 0
        scaled = predicted * np.median(true_depth[valid]) / max(np.median(predicted[valid]), 1e-12)
        low, high = np.percentile(true_depth[valid], [2, 98])
        axes[i, 0].imshow(PIL.Image.open(files[i]))
        axes[i, 1].imshow(np.where(valid, true_depth, np.nan), vmin=low, vmax=high, cmap="viridis")
        axes[i, 2].imshow(scaled, vmin=low, vmax=high, cmap="viridis")
        for axis in axes[i]:
            axis.set_xticks([])
            axis.set_yticks([])
    for axis, title in zip(axes[0], ("input view", "true depth", "predicted depth (median scaled)")):
        axis.set_title(title, fontsize=9)
    figure.suptitle("  ".join(f"{k}: {v:.3g}" for k, v in metrics.items() if "median" not in k), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    # camera centres seen from above (world y is up), predicted ones brought onto the true ones
    centres_true = gt_poses[:, :3, 3]
    scale, rotation, shift = rigid_points_registration(pred_poses[:, :3, 3], centres_true)
    centres_pred = scale * pred_poses[:, :3, 3] @ rotation.T + shift
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.plot(centres_true[:, 0], centres_true[:, 2], "o", label="true cameras")
    axis.plot(centres_pred[:, 0], centres_pred[:, 2], "x", label="predicted (similarity aligned)")
    for forward_true, forward_pred, c_true in zip(gt_poses[:, :3, 2], pred_poses[:, :3, 2], centres_true):
        axis.plot([c_true[0], c_true[0] + 0.5 * forward_true[0]], [c_true[2], c_true[2] + 0.5 * forward_true[2]], "C0-")
    axis.set_aspect("equal")
    axis.set_xlabel("x (m)")
    axis.set_ylabel("z (m)")
    axis.legend(fontsize=7)
    axis.set_title("camera centres, top view", fontsize=9)
    figure.tight_layout()
    figure.savefig(path.with_name("cameras_top_view.png"), dpi=110)
    plt.close(figure)


def run(args) -> int:
    from dust3r_jax.commands import reconstruct

    out = Path(args.out)
    if out.exists():
        raise InputError(f"--out {out}: already exists (the demo writes a new folder)")
    if args.views < 2:
        raise InputError(f"--views {args.views}: a reconstruction needs at least 2")
    images_folder = out / "images"
    scene_description = _render_inputs(images_folder, args.seed, args.views)
    print(f"rendered held-out scene {args.seed} ({scene_description['kind']}, {args.views} views) into {images_folder}")
    parser = argparse.ArgumentParser()
    reconstruct.add_arguments(parser)
    command = [str(images_folder), "--out", str(out / "reconstruction"), "--niter", str(args.niter)]
    command += ["--weights", args.weights] if args.weights else []
    command += ["--quiet"] if args.quiet else []
    reconstruct.run(parser.parse_args(command))
    metrics, depth_pairs, gt_poses, pred_poses = _compare(scene_description, out / "reconstruction")
    _draw(out / "comparison.png", images_folder, depth_pairs, gt_poses, pred_poses, metrics)
    print("\nagainst the ground truth of the rendered scene:")
    for key, value in metrics.items():
        print(f"  {key:<32}{value:10.4g}")
    print(f"pictures: {out / 'comparison.png'}, {out / 'cameras_top_view.png'}")
    return 0
