"""scene.glb: the coloured point cloud (or grid mesh) and one frustum per camera, via trimesh.

Node names are stable so that tools (and our tests) can find things: `pointcloud` (or `mesh`; absent
when no pixel passed the confidence threshold) and `camera_000`, `camera_001`, ...

Like the official demo, the whole scene is expressed for viewing in glTF viewers: in the frame of
camera 0 turned to OpenGL axes (y up, z backwards), i.e. world points are mapped by
`inv(cam2world[0] @ diag(-1, -1, 1, 1))`. The raw world frame (the one of cameras.json, points.ply
and the COLMAP model) is kept with `view_transform=False`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import trimesh

from dust3r_jax.export.geometry3d import CAMERA_PALETTE, camera_size, frustum, grid_mesh
from dust3r_jax.export.scene import SceneArrays, to_uint8

# OpenCV camera axes -> glTF viewer axes: rotate 180 degrees about the optical axis
_CV_TO_VIEW = np.diag([-1.0, -1.0, 1.0, 1.0])


def viewing_transform(cam2world: np.ndarray) -> np.ndarray:
    """(4, 4) world -> viewer frame, from `cam2world` (N, 4, 4): camera 0 upright at the origin.

    Identity when camera 0's pose is degenerate (non-finite or singular)."""
    first = cam2world[0] @ _CV_TO_VIEW
    if not np.all(np.isfinite(first)) or abs(np.linalg.det(first)) < 1e-12:
        return np.eye(4)
    return np.linalg.inv(first)


def build_glb_scene(scene: SceneArrays, as_mesh: bool = False, view_transform: bool = True,
                    camera_scale: float = 1.0, camera_images: bool = False) -> trimesh.Scene:
    """The trimesh scene of `scene`'s masked points (or grid meshes) and camera frusta.

    camera_scale multiplies the automatic frustum size; camera_images shows each image on its
    frustum's base (node `camera_000_image`, ...), as the official demo does unless its cameras
    are 'transparent'."""
    glb = trimesh.Scene()
    if as_mesh:
        parts = [grid_mesh(p, to_uint8(img), m) for p, img, m in zip(scene.pts3d, scene.imgs, scene.masks)]
        offsets = np.cumsum([0] + [len(v) for v, _, _ in parts])
        vertices = np.concatenate([v for v, _, _ in parts]).reshape(-1, 3)
        faces = np.concatenate([f + o for (_, f, _), o in zip(parts, offsets)]).reshape(-1, 3)
        colours = np.concatenate([c for _, _, c in parts]).reshape(-1, 3)
        mesh = trimesh.Trimesh(vertices=vertices, faces=faces, vertex_colors=colours, process=False)
        if len(faces):  # glTF cannot hold an empty buffer
            glb.add_geometry(mesh, geom_name="mesh", node_name="mesh")
        points = vertices
    else:
        points, colours = scene.confident_points()
        if len(points):
            glb.add_geometry(trimesh.PointCloud(points, colors=colours), geom_name="pointcloud",
                             node_name="pointcloud")
    size = camera_scale * camera_size(scene.cam2world, points)
    for i in range(scene.num_images):
        vertices, faces = frustum(scene.cam2world[i], scene.intrinsics[i], scene.imgs[i].shape[:2], size)
        cone = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
        cone.visual.face_colors = np.append(CAMERA_PALETTE[i % len(CAMERA_PALETTE)], 255)
        glb.add_geometry(cone, geom_name=f"camera_{i:03d}", node_name=f"camera_{i:03d}")
        if camera_images:
            glb.add_geometry(_image_quad(vertices[1:], scene.imgs[i]), geom_name=f"camera_{i:03d}_image",
                             node_name=f"camera_{i:03d}_image")
    if view_transform:
        glb.apply_transform(viewing_transform(scene.cam2world))
    return glb


def _image_quad(corners: np.ndarray, img: np.ndarray) -> trimesh.Trimesh:
    """A two-sided textured quad: corners (4, 3) = image top-left, top-right, bottom-right,
    bottom-left; img (H, W, 3) colours in [0, 1]. (trimesh's UV origin is the bottom-left.)"""
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float64)
    faces = np.array([[0, 3, 2], [0, 2, 1], [0, 2, 3], [0, 1, 2]])
    material = trimesh.visual.material.SimpleMaterial(image=PIL.Image.fromarray(to_uint8(img)))
    visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return trimesh.Trimesh(vertices=corners, faces=faces, visual=visual, process=False)


def write_glb(path: Path, scene: SceneArrays, as_mesh: bool = False, view_transform: bool = True,
              camera_scale: float = 1.0, camera_images: bool = False) -> None:
    """Writes `build_glb_scene(...)` as a binary glTF file."""
    data = build_glb_scene(scene, as_mesh=as_mesh, view_transform=view_transform, camera_scale=camera_scale,
                           camera_images=camera_images).export(file_type="glb")
    Path(path).write_bytes(data)
