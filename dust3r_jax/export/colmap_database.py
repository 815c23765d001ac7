"""The correspondences of a sparse (MASt3R) alignment as a COLMAP database, for COLMAP's mapper.

    out/database.db    cameras, images, keypoints, matches and two-view geometries

Written with pycolmap (COLMAP's own bindings: the schema moves between COLMAP releases, which a
hand-written SQLite writer would have to follow). One PINHOLE camera per image at the ORIGINAL
resolution, as the text model in sparse/0 (same names, same intrinsics); the keypoints of an image
are its pixels that take part in a match, in original-image coordinates with COLMAP's pixel
convention (+0.5); every pair's matches are also stored as its verified (calibrated) inliers, so
`colmap mapper --database_path out/database.db --image_path PHOTOS --output_path OUT` (or
`pycolmap.incremental_mapping`) runs on them directly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dust3r_jax.errors import InputError
from dust3r_jax.export.scene import SceneArrays


def _pycolmap():
    try:
        import pycolmap
    except ImportError:
        raise InputError("writing the COLMAP matches (database.db) needs pycolmap: pip install pycolmap") from None
    return pycolmap


def keypoints_and_matches(num_images: int, corres: dict) -> tuple[list[np.ndarray], dict]:
    """Per image the (K_i, 2) distinct matched pixels (x, y), and per pair (i, j) the (M, 2) indices
    of its matches into them. corres: {(i, j): (score, (xy_i (M, 2), xy_j (M, 2), conf (M,)))}."""
    pixels = [[] for _ in range(num_images)]
    for (i, j), (_, (xy_i, xy_j, _)) in corres.items():
        pixels[i].append(np.asarray(xy_i).reshape(-1, 2))
        pixels[j].append(np.asarray(xy_j).reshape(-1, 2))
    keypoints, inverse = [], []
    for k in range(num_images):
        xy = np.concatenate(pixels[k]) if pixels[k] else np.zeros((0, 2))
        unique, index = np.unique(xy.astype(np.int64), axis=0, return_inverse=True)
        keypoints.append(unique)
        inverse.append(index.ravel())
    matches, used = {}, [0] * num_images
    for (i, j), (_, (xy_i, _, _)) in corres.items():
        m = len(np.asarray(xy_i).reshape(-1, 2))
        matches[i, j] = np.stack([inverse[i][used[i]:used[i] + m], inverse[j][used[j]:used[j] + m]], axis=1)
        used[i] += m
        used[j] += m
    return keypoints, matches


def write_colmap_database(path: Path, scene: SceneArrays, corres: dict) -> dict:
    """Writes `path` (must not exist). Returns {"keypoints": total, "matches": total, "pairs": n}."""
    pycolmap = _pycolmap()
    path = Path(path)
    original_k = scene.original_intrinsics()
    names = scene.colmap_names()
    keypoints, matches = keypoints_and_matches(scene.num_images, corres)
    database = pycolmap.Database.open(str(path))
    try:
        image_ids = []
        for k in range(scene.num_images):
            height, width = scene.original_shapes[k]
            K = original_k[k]
            camera = pycolmap.Camera(model="PINHOLE", width=width, height=height,
                                     params=[K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5])
            camera_id = database.write_camera(camera)
            image_ids.append(database.write_image(pycolmap.Image(name=names[k], camera_id=camera_id)))
            xy1 = np.concatenate([keypoints[k], np.ones((len(keypoints[k]), 1))], axis=1).astype(np.float64)
            database.write_keypoints(image_ids[k], ((xy1 @ scene.to_original[k].T)[:, :2] + 0.5).astype(np.float32))
        for (i, j), pair_matches in matches.items():
            pair_matches = pair_matches.astype(np.uint32)
            database.write_matches(image_ids[i], image_ids[j], pair_matches)
            geometry = pycolmap.TwoViewGeometry()
            geometry.inlier_matches = pair_matches
            geometry.config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
            database.write_two_view_geometry(image_ids[i], image_ids[j], geometry)
    finally:
        database.close()
    return {"keypoints": int(sum(len(k) for k in keypoints)), "matches": int(sum(len(m) for m in matches.values())),
            "pairs": len(matches)}
