"""Point clouds, grid meshes and camera frusta as plain arrays, and the PLY export of a cloud.

Everything here is numpy in, numpy (or a file) out. Frames are the caller's: points and
`cam2world` in the same world frame, cameras with OpenCV axes (x right, y down, z forward).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# Distinct colours for camera frusta (RGB), cycled.
CAMERA_PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180],
    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 190], [0, 128, 128],
], dtype=np.uint8)


def write_ply(path: Path, points: np.ndarray, colours: np.ndarray) -> None:
    """Binary PLY (trimesh's writer): `points` (P, 3) float xyz, `colours` (P, 3) uint8 RGB."""
    import trimesh

    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    colours = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    if len(points) != len(colours):
        raise ValueError(f"write_ply: {len(points)} points but {len(colours)} colours")
    cloud = trimesh.PointCloud(points, colors=colours)
    Path(path).write_bytes(cloud.export(file_type="ply", encoding="binary"))


def grid_mesh(pts3d: np.ndarray, colours: np.ndarray, mask: np.ndarray):
    """Triangle mesh over the pixel grid: each 2x2 block of masked pixels gives two triangles.

    Args:
      pts3d: (H, W, 3) points (any frame); colours: (H, W, 3) uint8; mask: (H, W) bool.
    Returns:
      vertices (V, 3) float32, faces (F, 3) int64 indices into them, vertex colours (V, 3) uint8;
      only vertices used by a face are kept.
    """
    height, width = mask.shape
    index = np.arange(height * width).reshape(height, width)
    top_left, top_right = index[:-1, :-1], index[:-1, 1:]
    bottom_left, bottom_right = index[1:, :-1], index[1:, 1:]
    quad_ok = mask[:-1, :-1] & mask[:-1, 1:] & mask[1:, :-1] & mask[1:, 1:]
    faces = np.concatenate([
        np.stack([top_left, bottom_left, top_right], axis=-1)[quad_ok],
        np.stack([top_right, bottom_left, bottom_right], axis=-1)[quad_ok],
    ]).astype(np.int64)
    used = np.unique(faces)
    remap = np.full(height * width, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    vertices = pts3d.reshape(-1, 3)[used].astype(np.float32)
    return vertices, remap[faces], colours.reshape(-1, 3)[used]


def frustum(cam2world: np.ndarray, intrinsics: np.ndarray, image_shape: tuple[int, int], size: float):
    """A camera drawn as a pyramid: apex at the centre, base = the image rectangle at depth `size`.

    Args:
      cam2world: (4, 4) OpenCV camera-to-world; intrinsics: (3, 3) K; image_shape: (H, W).
    Returns:
      vertices (5, 3) world, faces (8, 3): the four sides with both windings (visible from inside).
    """
    height, width = image_shape
    intrinsics = np.asarray(intrinsics, dtype=np.float64)
    if not (np.all(np.isfinite(intrinsics)) and intrinsics[0, 0] > 0 and intrinsics[1, 1] > 0):
        # a degenerate focal cannot be drawn: show the camera with a 60-degree field of view instead
        focal = max(height, width) / (2 * np.tan(np.pi / 6))
        intrinsics = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    if not np.all(np.isfinite(cam2world)):
        cam2world = np.eye(4)
    k_inv = np.linalg.inv(intrinsics)
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], dtype=np.float64)
    rays = corners @ k_inv.T
    in_camera = np.concatenate([np.zeros((1, 3)), rays / rays[:, 2:3] * size])
    vertices = in_camera @ cam2world[:3, :3].T + cam2world[:3, 3]
    sides = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]])
    faces = np.concatenate([sides, sides[:, ::-1]])
    return vertices, faces


def camera_size(cam2world: np.ndarray, points: np.ndarray) -> float:
    """A frustum depth that reads well: 1/5 of the median camera spacing, or 5% of the cloud's extent."""
    centres = cam2world[:, :3, 3]
    centres = centres[np.all(np.isfinite(centres), axis=-1)]
    if len(centres) > 1:
        spacing = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        median = float(np.median(spacing[np.triu_indices(len(centres), 1)]))
        if median > 0:
            return 0.2 * median
    if len(points):
        extent = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
        if extent > 0:
            return 0.05 * extent
    return 0.1
