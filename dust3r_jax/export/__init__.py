"""Writers for a reconstruction: scene.glb, points.ply, cameras.json, depth/conf maps, COLMAP model.

All writers are functions of a `SceneArrays` (plain numpy arrays); `write_reconstruction` writes
the full set into one folder:

    out/scene.glb  points.ply  cameras.json  depth/NAME.{npy,png}  conf/NAME.{npy,png}
    out/sparse/0/{cameras,images,points3D}.txt
    out/database.db   (sparse alignment only: the matches, `write_colmap_database`)
"""
from pathlib import Path

from dust3r_jax.export.cameras import read_cameras_json, write_cameras_json
from dust3r_jax.export.colmap import write_colmap_text
from dust3r_jax.export.geometry3d import write_ply
from dust3r_jax.export.glb import write_glb
from dust3r_jax.export.maps import write_depth_and_conf
from dust3r_jax.export.colmap_database import write_colmap_database
from dust3r_jax.export.scene import SceneArrays, from_aligned_scene, from_sparse_scene

__all__ = ["SceneArrays", "from_aligned_scene", "from_sparse_scene", "write_colmap_database", "read_cameras_json", "write_cameras_json",
           "write_colmap_text", "write_depth_and_conf", "write_glb", "write_ply", "write_reconstruction"]


def write_reconstruction(out_dir: Path, scene: SceneArrays, as_mesh: bool = False,
                         max_colmap_points: int = 100_000) -> None:
    """Writes every export of `scene` into the existing folder `out_dir`."""
    out_dir = Path(out_dir)
    write_glb(out_dir / "scene.glb", scene, as_mesh=as_mesh)
    points, colours = scene.confident_points()
    write_ply(out_dir / "points.ply", points, colours)
    write_cameras_json(out_dir / "cameras.json", scene)
    write_depth_and_conf(out_dir, scene.names, scene.depths, scene.confs)
    write_colmap_text(out_dir / "sparse" / "0", scene, max_points=max_colmap_points)
