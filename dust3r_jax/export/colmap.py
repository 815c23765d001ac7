"""A COLMAP text model (cameras.txt, images.txt, points3D.txt) of an aligned scene.

What a user can feed to COLMAP-based tools (gaussian splatting, MVS) next to the ORIGINAL images:
* cameras.txt: one PINHOLE camera per image, `fx fy cx cy` at the ORIGINAL image resolution (after
  EXIF rotation), in COLMAP's pixel convention (the centre of the top-left pixel is (0.5, 0.5), so
  the principal point is DUSt3R's + 0.5);
* images.txt: per image the world-to-camera rotation as a quaternion (QW, QX, QY, QZ) and
  translation, the camera id, the image name, then its 2D observations. The name is the unique
  output name plus the file's extension (`SceneArrays.colmap_names`: 'img.jpg', 'img_2.jpg' for
  two files called img.jpg; no spaces, which COLMAP's reader splits on); cameras.json maps each
  name to its source file;
* points3D.txt: the confident points (at most `max_points`, an even subsample), with colour and a
  one-observation track pointing at the pixel they came from (so the model is self-consistent:
  every track element exists in images.txt). Reprojection errors are written as 0.
COLMAP and DUSt3R both use OpenCV camera axes, so poses need no axis flip.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dust3r_jax.export.scene import SceneArrays, to_uint8
from dust3r_jax.geometry import rotmat_to_quat


def _num(x) -> str:
    """Shortest text that reads back as the same float64."""
    return repr(float(x))


def rotation_to_quaternion_wxyz(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> unit quaternion (w, x, y, z) with w >= 0 (COLMAP's order)."""
    x, y, z, w = rotmat_to_quat(rotation)
    q = np.array([w, x, y, z])
    return q if q[0] >= 0 else -q


def world_to_camera(cam2world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(4, 4) cam2world -> (R (3, 3), t (3,)) with x_cam = R x_world + t (COLMAP's image pose)."""
    rotation = cam2world[:3, :3].T
    return rotation, -rotation @ cam2world[:3, 3]


def _subsample(counts: list[int], max_points: int) -> list[np.ndarray]:
    """Per image, which of its masked pixels to keep: an even stride over all of them."""
    total = sum(counts)
    stride = max(1, int(np.ceil(total / max_points))) if max_points > 0 else total + 1
    keep, start = [], 0
    for count in counts:
        positions = np.arange(start, start + count)
        keep.append(np.nonzero(positions % stride == 0)[0])
        start += count
    return keep


def write_colmap_text(model_dir: Path, scene: SceneArrays, max_points: int = 100_000) -> None:
    """Writes cameras.txt, images.txt and points3D.txt into `model_dir` (created if needed)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    original_k = scene.original_intrinsics()
    n = scene.num_images

    cam_lines = ["# Camera list with one line of data per camera:",
                 "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
                 f"# Number of cameras: {n}"]
    for i in range(n):
        height, width = scene.original_shapes[i]
        k = original_k[i]
        cam_lines.append(f"{i + 1} PINHOLE {width} {height} {_num(k[0, 0])} {_num(k[1, 1])} "
                         f"{_num(k[0, 2] + 0.5)} {_num(k[1, 2] + 0.5)}")

    rows_cols = [np.argwhere(m) for m in scene.masks]  # (P_i, 2) (row, col) of masked pixels
    keep = _subsample([len(rc) for rc in rows_cols], max_points)
    names = scene.colmap_names()
    point_lines, image_blocks, next_id = [], [], 1
    for i in range(n):
        pixels = rows_cols[i][keep[i]]
        points = scene.pts3d[i][pixels[:, 0], pixels[:, 1]]
        colours = to_uint8(scene.imgs[i][pixels[:, 0], pixels[:, 1]])
        # processed (col, row) -> original pixel, then + 0.5 for COLMAP's pixel convention
        uv1 = np.stack([pixels[:, 1], pixels[:, 0], np.ones(len(pixels))], axis=-1).astype(np.float64)
        uv_original = (uv1 @ scene.to_original[i].T)[:, :2] + 0.5
        ids = np.arange(next_id, next_id + len(pixels))
        next_id += len(pixels)
        observations = " ".join(f"{u:.3f} {v:.3f} {pid}" for (u, v), pid in zip(uv_original, ids))
        for point2d_idx, (pid, xyz, rgb) in enumerate(zip(ids, points, colours)):
            point_lines.append(f"{pid} {_num(xyz[0])} {_num(xyz[1])} {_num(xyz[2])} {rgb[0]} {rgb[1]} {rgb[2]} 0 "
                               f"{i + 1} {point2d_idx}")
        rotation, translation = world_to_camera(scene.cam2world[i])
        qw, qx, qy, qz = rotation_to_quaternion_wxyz(rotation)
        tx, ty, tz = translation
        pose = " ".join(_num(x) for x in (qw, qx, qy, qz, tx, ty, tz))
        image_blocks.append(f"{i + 1} {pose} {i + 1} {names[i]}")
        image_blocks.append(observations)

    image_lines = ["# Image list with two lines of data per image:",
                   "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                   "#   POINTS2D[] as (X, Y, POINT3D_ID)",
                   f"# Number of images: {n}"] + image_blocks
    point_header = ["# 3D point list with one line of data per point:",
                    "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
                    f"# Number of points: {len(point_lines)}"]
    (model_dir / "cameras.txt").write_text("\n".join(cam_lines) + "\n", encoding="utf-8")
    (model_dir / "images.txt").write_text("\n".join(image_lines) + "\n", encoding="utf-8")
    (model_dir / "points3D.txt").write_text("\n".join(point_header + point_lines) + "\n", encoding="utf-8")
