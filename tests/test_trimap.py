"""Trimaps from masks and alphas (utils.data.trimap), shared by the demo's --mask and training."""
import numpy as np
import pytest

from utils.data.trimap import MASK_TOLERANCE, default_band, erode_to_trimap, trimap_from_mask
from utils.loader import generate_trimap

H, W = 90, 120


def disk(radius, soft=0.0):
    """A disk mask of ``radius`` px in [0, 1], with a linear ramp ``soft`` px wide outside it."""
    yy, xx = np.mgrid[:H, :W]
    r = np.hypot(yy - H / 2, xx - W / 2)
    if soft == 0:
        return (r <= radius).astype(np.float32), r
    return np.clip((radius + soft - r) / soft, 0, 1).astype(np.float32), r


@pytest.mark.parametrize('band', [2, 5, 9])
def test_binary_mask_gets_a_band_on_both_sides_of_its_boundary(band):
    mask, r = disk(25)
    trimap = trimap_from_mask(mask, band)
    assert set(np.unique(trimap)) == {0, 128, 255}
    # inside by more than band (+1 for the pixel grid): foreground; outside: background
    assert np.all(trimap[r < 25 - band - 1] == 255)
    assert np.all(trimap[r > 25 + band + 1] == 0)
    assert np.all(trimap[np.abs(r - 25) < band - 1] == 128)  # both sides of the boundary
    inner = np.count_nonzero((trimap == 128) & (mask == 1))
    outer = np.count_nonzero((trimap == 128) & (mask == 0))
    assert 0.6 < inner / outer < 1.0  # about as wide inside as outside (inner ring is shorter)


def test_soft_mask_values_are_unknown_and_the_band_extends_beyond_them():
    mask, r = disk(20, soft=10)  # 1 inside r = 20, ramp to 0 at r = 30
    assert np.any((mask > 0.2) & (mask < 0.8))
    trimap = trimap_from_mask(np.round(mask * 255) / 255, band=4)
    soft = (mask > MASK_TOLERANCE) & (mask < 1 - MASK_TOLERANCE)
    assert np.all(trimap[soft] == 128)
    assert np.all(trimap[(r > 30 + 5)] == 0) and np.all(trimap[r < 20 - 5] == 255)
    assert np.all(trimap[(r > 30) & (r < 30 + 3)] == 128)  # band beyond the soft edge
    # near-0 / near-255 noise (a JPEG's) still counts as definite
    noisy = np.clip(mask + np.random.default_rng(0).uniform(-8, 8, mask.shape) / 255, 0, 1)
    noisy[soft] = mask[soft]
    np.testing.assert_array_equal(trimap_from_mask(noisy, band=4)[r > 36], 0)


def test_default_band_scales_with_the_image():
    assert default_band((300, 400)) == 6
    assert default_band((1080, 1920)) == 29
    assert default_band((20, 30)) == 3
    mask, _ = disk(25)
    np.testing.assert_array_equal(trimap_from_mask(mask), trimap_from_mask(mask, band=3))


def test_all_foreground_or_background_mask_has_no_unknown():
    assert np.all(trimap_from_mask(np.ones((10, 12), np.float32), 3) == 255)
    assert np.all(trimap_from_mask(np.zeros((10, 12), np.float32), 3) == 0)


def test_training_trimaps_are_the_same_erosion_with_random_radii():
    mask, _ = disk(20, soft=6)
    rng = np.random.default_rng(7)
    trimap = generate_trimap(mask, rng, (2, 12))
    radii = np.random.default_rng(7).integers(2, 13, size=2)  # foreground first, then background
    np.testing.assert_array_equal(trimap, erode_to_trimap(mask, radii[0], radii[1]))
