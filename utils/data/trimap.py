"""Trimaps made from an alpha matte or a segmentation mask: the one place for that logic.

The definite foreground (values near 1) and the definite background (values near 0) are each
eroded by a radius in pixels; whatever is left is unknown (128). So the unknown band reaches
``radius`` pixels into each side of every boundary, and values neither near 0 nor near 1 (a soft
mask's edges, an alpha's transparent parts) are unknown as well. Training
(``utils.loader.generate_trimap``: random radii from the ground-truth alpha) and the demo's
``--mask`` (``trimap_from_mask``: a fixed band) both use ``erode_to_trimap``.
"""
import numpy as np
from scipy import ndimage

from utils.images import BACKGROUND, FOREGROUND, UNKNOWN

ALPHA_TOLERANCE = 1e-3  # ground-truth alpha: only 0 and 1 (to 8-bit rounding) are definite
MASK_TOLERANCE = 10 / 255  # masks: within 10 of 0 / 255 counts as definite (JPEG noise)
BAND_FRACTION = 0.015  # default band: 1.5% of the image's longer side ...
MIN_BAND = 3  # ... and at least this many pixels


def erode_to_trimap(alpha, fg_radius, bg_radius, tolerance=ALPHA_TOLERANCE):
    """Trimap from an alpha or mask by eroding its definite parts.

    Args:
        alpha: (H, W) float in [0, 1].
        fg_radius, bg_radius: pixels of foreground (alpha >= 1 - tolerance) and background
            (alpha <= tolerance) that become unknown next to anything else (Euclidean distance).
        tolerance: how far from 0 / 1 a value may be and still count as definite.
    Returns:
        uint8 (H, W) in {0, 128, 255}; an alpha that is all foreground (or background) gives
        a trimap without unknown pixels.
    """
    trimap = np.full(alpha.shape, UNKNOWN, np.uint8)
    for mask, value, radius in ((alpha >= 1.0 - tolerance, FOREGROUND, fg_radius),
                                (alpha <= tolerance, BACKGROUND, bg_radius)):
        if mask.all():  # no boundary at all (the distance transform needs a zero)
            trimap[:] = value
        elif mask.any():
            trimap[ndimage.distance_transform_edt(mask) > radius] = value
    return trimap


def default_band(shape):
    """The default unknown band (pixels on each side of a boundary) for an (H, W) image."""
    return max(MIN_BAND, int(round(BAND_FRACTION * max(shape[:2]))))


def trimap_from_mask(mask, band=None):
    """Trimap from a binary or soft segmentation mask.

    Args:
        mask: (H, W) float in [0, 1] (0 background, 1 foreground; a mask file's 0..255 / 255).
        band: pixels of unknown on each side of the mask's boundary (default ``default_band``).
    Returns:
        uint8 (H, W) in {0, 128, 255}: values within ``MASK_TOLERANCE`` of 0 / 1 are background /
        foreground unless within ``band`` pixels of something else; everything else is unknown.
    """
    band = default_band(mask.shape) if band is None else band
    return erode_to_trimap(mask, band, band, MASK_TOLERANCE)
