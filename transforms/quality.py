"""Image quality: cheap statistics that tell a working camera from a covered or blurred one.

Computed on a small grey thumbnail, so it costs well under a millisecond per
photo; the thresholds are shared by the review rules and station health.
"""

from __future__ import annotations

import cv2
import numpy as np

from transforms.records import Quality

# A lens cap, a hand or a jacket over the lens: nearly black, or nearly one grey.
COVERED_BRIGHTNESS = 20.0
COVERED_CONTRAST = 6.0
# Variance of the Laplacian on a 256-px thumbnail below which nothing has edges.
BLURRED_SHARPNESS = 15.0


def measure_quality(gray_thumb: np.ndarray) -> Quality:
    """Brightness, contrast and sharpness of a small uint8 grey image."""
    if gray_thumb.ndim != 2 or gray_thumb.dtype != np.uint8 or gray_thumb.size == 0:
        raise ValueError("measure_quality needs a non-empty 2-D uint8 image")
    return Quality(
        brightness=round(float(gray_thumb.mean()), 2),
        contrast=round(float(gray_thumb.std()), 2),
        sharpness=round(float(cv2.Laplacian(gray_thumb, cv2.CV_64F).var()), 2),
    )


def is_covered(q: Quality) -> bool:
    return q.brightness < COVERED_BRIGHTNESS or q.contrast < COVERED_CONTRAST


def is_blurred(q: Quality) -> bool:
    return q.sharpness < BLURRED_SHARPNESS
