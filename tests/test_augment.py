"""Foreground augmentation steps: alignment of fg and alpha, compositing algebra, ranges."""
import numpy as np
import pytest

from utils.data import augment, synthetic
from utils.images import composite


@pytest.fixture
def fg_alpha():
    rng = np.random.default_rng(1)
    alpha = synthetic.make_alpha(rng, 90, 120)
    return synthetic.make_foreground(rng, 90, 120), alpha


def test_without_a_warp_the_cut_is_the_window_itself(fg_alpha):
    fg, alpha = fg_alpha
    rng = np.random.default_rng(0)
    out_fg, out_alpha = augment.cut_foreground(fg, alpha, (40, 50), 32, 32, rng, affine=False,
                                               flip=False)
    np.testing.assert_allclose(out_alpha, alpha[24:56, 34:66], atol=1e-6)
    np.testing.assert_allclose(out_fg, fg[24:56, 34:66], atol=1e-6)


def test_warped_foreground_and_alpha_stay_aligned(fg_alpha):
    fg, alpha = fg_alpha
    fg = fg.copy()
    fg[:, :, 0] = alpha  # red carries the alpha: any misalignment shows as a difference
    for seed in range(6):
        rng = np.random.default_rng(seed)
        out_fg, out_alpha = augment.cut_foreground(fg, alpha, (45, 60), 64, 40, rng)
        assert out_fg.shape == (40, 40, 3) and out_alpha.shape == (40, 40)
        assert out_fg.dtype == out_alpha.dtype == np.float32
        np.testing.assert_allclose(out_fg[:, :, 0], out_alpha, atol=1e-6)
        assert 0 <= out_alpha.min() and out_alpha.max() <= 1


def test_random_affine_stays_within_its_ranges():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = augment.random_affine(rng)
        det = abs(np.linalg.det(m))  # rotation and shear keep areas; 1 / scale^2 remains
        assert 1 / 1.25 ** 2 - 1e-9 <= det <= 1 / 0.8 ** 2 + 1e-9
    flips = [np.linalg.det(augment.random_affine(rng)) < 0 for _ in range(200)]
    assert 60 < sum(flips) < 140
    assert not any(np.linalg.det(augment.random_affine(rng, flip=False)) < 0 for _ in range(50))


def test_layered_foregrounds_composite_as_the_two_in_turn(fg_alpha):
    fg1, a1 = fg_alpha
    rng = np.random.default_rng(2)
    fg2, a2 = synthetic.make_foreground(rng, 90, 120), synthetic.make_alpha(rng, 90, 120)
    bg = rng.random((90, 120, 3)).astype(np.float32)
    fg, alpha = augment.layer_foregrounds(fg1, a1, fg2, a2)
    two_steps = composite(a1, fg1, composite(a2, fg2, bg))
    np.testing.assert_allclose(composite(alpha, fg, bg), two_steps, atol=1e-5)
    assert 0 <= fg.min() and fg.max() <= 1
    np.testing.assert_allclose(alpha, 1 - (1 - a1) * (1 - a2), atol=1e-6)


def test_colour_jitter_keeps_range_and_moves_hue_a_little():
    rng = np.random.default_rng(0)
    red = np.zeros((8, 8, 3), np.float32)
    red[:, :, 0] = 0.8
    red[:, :, 1:] = 0.2
    alpha = np.ones((8, 8), np.float32)
    from skimage.color import rgb2hsv
    for _ in range(20):
        out = augment.jitter_colour(red, alpha, rng)
        assert out.shape == red.shape and out.dtype == np.float32
        assert 0 <= out.min() and out.max() <= 1
        hue = rgb2hsv(out)[0, 0, 0]
        assert min(hue, 1 - hue) <= 40 / 360 + 1e-6


def test_background_window_covers_and_keeps_the_scale():
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0, 1, 200, dtype=np.float32)[None, :, None], (100, 1, 3))
    out = augment.background_window(ramp, (100, 200), 50, 25, rng)  # same size: 2x shrink
    assert out.shape == (25, 25, 3) and 0 <= out.min() and out.max() <= 1
    step = np.diff(out[12, 2:-2, 0]).mean()
    np.testing.assert_allclose(step, 2 / 199, rtol=0.05)  # 50 px of the ramp over 25 px
    out = augment.background_window(ramp, (400, 800), 50, 25, rng)  # 4x smaller: scaled up
    np.testing.assert_allclose(np.diff(out[12, 2:-2, 0]).mean(), 0.5 / 199, rtol=0.05)
