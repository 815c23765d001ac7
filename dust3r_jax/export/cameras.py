"""cameras.json: per image its file, intrinsics (processed and original resolution) and pose.

Layout (all matrices as nested lists, row-major):

    {"convention": "...",
     "images": [{"index": 0, "name": "IMG_1", "file": "IMG_1.jpg", "colmap_name": "IMG_1.jpg",
                 "path": "photos/IMG_1.jpg",
                 "processed": {"width": 512, "height": 384, "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]},
                 "original":  {"width": 4032, "height": 3024, "K": [[...]]},
                 "focal": fx_processed,
                 "cam2world": [[...4 rows...]]}, ...]}

`name` is unique (two files called img.jpg export as `img` and `img_2`: depth/img_2.npy) and is
what depth/, conf/ and COLMAP's images.txt (`colmap_name`) use; `file` and `path` name the source.
`processed` is the network resolution (what depth/ and conf/ maps have); `original` is the user's
image after its EXIF rotation, K rescaled by the loader's resize and shifted by its crop.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dust3r_jax.export.scene import SceneArrays, printable

CONVENTION = (
    "OpenCV camera axes (x right, y down, z forward); cam2world maps camera coordinates to world "
    "coordinates; pixel coordinates have integer values at pixel centres (add 0.5 for COLMAP's convention)")


def cameras_dict(scene: SceneArrays) -> dict:
    """The cameras.json content as a JSON-ready dict."""
    original_k = scene.original_intrinsics()
    colmap_names = scene.colmap_names()
    entries = []
    for i in range(scene.num_images):
        height, width = scene.imgs[i].shape[:2]
        orig_height, orig_width = scene.original_shapes[i]
        entries.append({
            "index": i,
            "name": scene.names[i],
            "file": scene.files[i],
            "colmap_name": colmap_names[i],
            "processed": {"width": int(width), "height": int(height), "K": scene.intrinsics[i].tolist()},
            "original": {"width": int(orig_width), "height": int(orig_height), "K": original_k[i].tolist()},
            "focal": float(scene.intrinsics[i][0, 0]),
            "cam2world": scene.cam2world[i].tolist(),
        })
        if scene.paths:  # two inputs may share a file name: the path tells them apart
            entries[-1]["path"] = printable(scene.paths[i])
    return {"convention": CONVENTION, "images": entries}


def write_cameras_json(path: Path, scene: SceneArrays) -> None:
    Path(path).write_text(json.dumps(cameras_dict(scene), indent=1) + "\n")


def read_cameras_json(path: Path) -> dict:
    """Back to arrays: {"files", "names", "K" (N,3,3), "K_original" (N,3,3), "cam2world" (N,4,4), "focals" (N,),
    "processed_shapes" [(H, W)], "original_shapes" [(H, W)]}."""
    entries = json.loads(Path(path).read_text())["images"]
    return {
        "files": [e["file"] for e in entries],
        "colmap_names": [e.get("colmap_name") for e in entries],
        "names": [e["name"] for e in entries],
        "K": np.array([e["processed"]["K"] for e in entries], dtype=np.float64),
        "K_original": np.array([e["original"]["K"] for e in entries], dtype=np.float64),
        "cam2world": np.array([e["cam2world"] for e in entries], dtype=np.float64),
        "focals": np.array([e["focal"] for e in entries], dtype=np.float64),
        "processed_shapes": [(e["processed"]["height"], e["processed"]["width"]) for e in entries],
        "original_shapes": [(e["original"]["height"], e["original"]["width"]) for e in entries],
    }
