"""Sky segmentation by colour, as the official demo's "mask sky" option (`dust3r.viz.segment_sky`).

A heuristic, not a network: bright low-saturation or blue-ish pixels (in OpenCV's HSV of the
image read as BGR, exactly as the official function does), opened with a 5x5 structuring element,
then only the largest connected regions are kept (every region at least half the size of the
largest one).
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


def segment_sky(image: np.ndarray) -> np.ndarray:
    """(H, W) bool sky mask of `image`: (H, W, 3) RGB, floats in [0, 1] or uint8."""
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.floating):
        image = np.uint8(255 * image.clip(min=0, max=1))
    # the official code converts RGB data with COLOR_BGR2HSV: same here, same masks
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    mask = cv2.inRange(hsv, np.array([0, 0, 100]), np.array([30, 255, 255])).view(bool)
    saturation, value = hsv[:, :, 1], hsv[:, :, 2]
    mask |= (saturation < 10) & (value > 150)  # luminous grey
    mask |= (saturation < 30) & (value > 180)
    mask |= (saturation < 50) & (value > 220)
    opened = ndimage.binary_opening(mask, structure=np.ones((5, 5), np.uint8))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(opened.view(np.uint8), connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    if len(sizes) == 0:
        return np.zeros(image.shape[:2], dtype=bool)
    keep = 1 + np.flatnonzero(sizes > sizes.max() / 2)  # label 0 is the background
    return np.isin(labels, keep)
