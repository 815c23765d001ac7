"""Per-image depth and confidence maps: raw `.npy` and colour-mapped `.png`.

The colour map is matplotlib's "viridis" (dark blue = near / low confidence, yellow = far /
high confidence). Pixels the depth map cannot show (not finite, or <= 0) are black.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image


def colorize(values: np.ndarray, valid: np.ndarray | None = None, low: float | None = None,
             high: float | None = None) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 colours; the range defaults to the 2nd-98th percentile.

    Percentiles rather than min/max so that a few far outliers do not flatten the picture.
    """
    values = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(values) if valid is None else (valid & np.isfinite(values))
    if valid.any():
        low = float(np.percentile(values[valid], 2)) if low is None else low
        high = float(np.percentile(values[valid], 98)) if high is None else high
    else:
        low, high = 0.0, 1.0
    t = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)
    t = np.where(valid, t, 0.0)
    from matplotlib import colormaps

    rgb = colormaps["viridis"](t)[..., :3] * 255.0
    rgb = np.where(valid[..., None], rgb, 0.0)
    return np.round(rgb).astype(np.uint8)


def write_depth_and_conf(out_dir: Path, names: list[str], depths: list[np.ndarray],
                         confs: list[np.ndarray]) -> list[Path]:
    """Writes depth/NAME.npy, depth/NAME.png, conf/NAME.npy, conf/NAME.png; returns the paths.

    depths: (H, W) float32 z-depth per image (camera frame); confs: (H, W) float32 confidences.
    """
    written = []
    for folder, maps, is_depth in (("depth", depths, True), ("conf", confs, False)):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        for name, values in zip(names, maps):
            values = np.asarray(values, dtype=np.float32)
            npy = out_dir / folder / f"{name}.npy"
            np.save(npy, values)
            valid = values > 0 if is_depth else None
            # confidence is heavy-tailed (1 + exp(logit)): colour its log
            shown = values if is_depth else np.log(np.maximum(values, 1e-12))
            png = out_dir / folder / f"{name}.png"
            PIL.Image.fromarray(colorize(shown, valid)).save(png)
            written += [npy, png]
    return written
