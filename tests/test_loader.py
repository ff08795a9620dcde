"""Datasets and augmentation: aligned, valid crops; layouts; reproducible randomness."""
import numpy as np
import pytest
from chainer.datasets import ConcatenatedDataset

from utils.data import synthetic
from utils.errors import InputError
from utils.images import composite, read_trimap, write_png
from utils.loader import (
    AugmentedDataset,
    MattingTransform,
    crop_around_unknown,
    fit_background,
    foreground_loaders,
    generate_trimap,
    layout,
    make_dataset,
    resize_to,
)

VALUES = {0.0, np.float32(128 / 255), 1.0}


@pytest.fixture(scope='module')
def composition_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('composition')
    synthetic.write_composition_dataset(str(root), 3, np.random.default_rng(5), size=(96, 128))
    return root


def make_seed_dataset(root, count=2):
    """A seed-layout dataset: input/ gt/ trimap/wide/ im<i>.png, from synthetic composites."""
    rng = np.random.default_rng(7)
    for i in range(count):
        alpha = synthetic.make_alpha(rng, 80, 96)
        image = composite(alpha, synthetic.make_foreground(rng, 80, 96),
                          synthetic.make_background(rng, 80, 96))
        trimap = generate_trimap(alpha, rng, (6, 6))
        write_png(str(root / 'input' / f'im{i}.png'), image)
        write_png(str(root / 'gt' / f'im{i}.png'), alpha)
        write_png(str(root / 'trimap' / 'wide' / f'im{i}.png'), trimap)
    return root


@pytest.fixture(scope='module')
def seed_root(tmp_path_factory):
    return make_seed_dataset(tmp_path_factory.mktemp('seed'))


def check_example(example, size):
    image, trimap, alpha, fg, bg = example
    assert image.shape == fg.shape == bg.shape == (3, size, size)
    assert trimap.shape == alpha.shape == (1, size, size)
    assert all(x.dtype == np.float32 for x in example)
    assert set(np.unique(trimap)) <= VALUES
    assert np.any(trimap == np.float32(128 / 255)), 'crop without unknown pixels'
    assert 0 <= alpha.min() and alpha.max() <= 1


def test_composition_examples_are_aligned_and_valid(composition_root):
    raw = make_dataset(str(composition_root))
    assert len(raw) == 3
    data = AugmentedDataset(raw, MattingTransform(size=64, crop_sizes=(64, 96, 160), seed=1))
    for epoch in range(3):
        for i in range(len(data)):
            example = data[i]
            check_example(example, 64)
            image, trimap, alpha, fg, bg = example
            np.testing.assert_allclose(image, alpha * fg + (1 - alpha) * bg, atol=1e-5)
            # generated trimaps agree with the alpha they came from (same pixels after the flip)
            assert np.all(alpha[trimap == 1.0] >= 1 - 1e-3)
            assert np.all(alpha[trimap == 0.0] <= 1e-3)


def test_given_trimaps_stay_aligned(seed_root):
    raw = make_dataset(str(seed_root))
    assert len(raw) == 2 and raw[0]['trimap'] is not None
    data = AugmentedDataset(raw, MattingTransform(size=48, crop_sizes=(48, 96),
                                                  generate_trimaps=False, seed=3))
    for _ in range(4):
        for i in range(len(data)):
            image, trimap, alpha, fg, bg = example = data[i]
            check_example(example, 48)
            # the given trimap's definite regions were eroded by 6 px: resized alpha stays 1 / 0
            assert np.all(alpha[trimap == 1.0] > 0.99)
            assert np.all(alpha[trimap == 0.0] < 0.01)


def test_fresh_randomness_each_epoch_and_reproducible_with_seed(composition_root):
    raw = make_dataset(str(composition_root))
    a = AugmentedDataset(raw, MattingTransform(size=32, crop_sizes=(32, 64), seed=11))
    b = AugmentedDataset(raw, MattingTransform(size=32, crop_sizes=(32, 64), seed=11))
    n = len(raw)
    epoch1, epoch2 = a[n], a[2 * n]  # example 0 in epochs 1 and 2
    assert not all(np.array_equal(x, y) for x, y in zip(epoch1, epoch2))
    for x, y in zip(epoch1, b[n]):  # same seed, same (epoch, example): same augmentation
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a[1], a[1]):  # epoch 0 (validation): the same crop every time
        np.testing.assert_array_equal(x, y)


def test_crop_contains_the_unknown_pixel_inside_or_padded():
    rng = np.random.default_rng(0)
    image = np.arange(1, 20 * 30 + 1, dtype=np.float32).reshape(20, 30)
    unknown = np.zeros((20, 30), bool)
    unknown[15, 25] = True
    (window,) = crop_around_unknown([image], unknown, 41, rng)  # larger than the image
    assert window.shape == (41, 41)
    assert window[20, 20] == image[15, 25]  # centred
    assert window[0, 0] == 0  # padding outside the image
    (window,) = crop_around_unknown([image], unknown, 10, rng)  # fits: shifted inside
    np.testing.assert_array_equal(window, image[10:20, 20:30])
    unknown[:] = False
    unknown[8, 12] = True
    (window,) = crop_around_unknown([image], unknown, 10, rng)
    np.testing.assert_array_equal(window, image[3:13, 7:17])


def test_generated_trimap_covers_fractional_alpha():
    rng = np.random.default_rng(2)
    alpha = synthetic.make_alpha(rng, 120, 120)
    trimap = generate_trimap(alpha, rng, (2, 9))
    assert set(np.unique(trimap)) <= {0, 128, 255}
    fractional = (alpha > 1e-3) & (alpha < 1 - 1e-3)
    assert np.all(trimap[fractional] == 128)
    assert np.any(trimap == 0) and np.any(trimap == 255)


def test_background_scaled_up_then_cropped():
    bg = np.random.default_rng(0).random((10, 20, 3)).astype(np.float32)
    out = fit_background(bg, 30, 15)
    assert out.shape == (30, 15, 3)
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert fit_background(bg, 5, 6).shape == (5, 6, 3)
    np.testing.assert_array_equal(fit_background(bg, 5, 6), bg[:5, :6])
    # a horizontal ramp scaled 4x stays the same ramp, at the scaled positions (bicubic is exact
    # on linear data away from the border), colour channels kept apart
    x = np.arange(16, dtype=np.float32) / 15
    ramp = np.stack([np.tile(x, (8, 1)), np.tile(x[::-1], (8, 1)), np.full((8, 16), 0.25)], 2)
    up = fit_background(ramp.astype(np.float32), 32, 64)
    centres = (np.arange(64) + 0.5) / 4 - 0.5  # output pixel centres in input pixels
    np.testing.assert_allclose(up[16, 8:-8, 0], centres[8:-8] / 15, atol=1e-5)
    np.testing.assert_allclose(up[16, 8:-8, 1], 1 - centres[8:-8] / 15, atol=1e-5)
    np.testing.assert_allclose(up[:, :, 2], 0.25, atol=1e-6)


def test_resize_to_shrinks_with_antialiasing_and_keeps_trimap_values():
    # a one-pixel checkerboard shrunk 2x averages to grey (point sampling would give 0 or 1)
    board = (np.indices((640, 640)).sum(0) % 2).astype(np.float32)
    small = resize_to(board, 320)
    assert small.shape == (320, 320) and small.dtype == np.float32
    np.testing.assert_allclose(small[4:-4, 4:-4], 0.5, atol=1e-5)
    rgb = np.stack([board, 1 - board, np.full_like(board, 0.3)], 2)
    out = resize_to(rgb, 320)
    assert out.shape == (320, 320, 3)
    np.testing.assert_allclose(out[4:-4, 4:-4], np.broadcast_to([0.5, 0.5, 0.3], (312, 312, 3)),
                               atol=1e-5)
    trimap = np.repeat(np.array([0, 128, 255, 128], np.uint8), 160)[None].repeat(640, 0)
    assert set(np.unique(resize_to(trimap, 320, nearest=True))) == {0, 128, 255}


def test_photographs_are_also_composited_over_fresh_backgrounds(seed_root, tmp_path):
    bg_dir = tmp_path / 'bgs'
    for i, value in enumerate((0.0, 0.5, 1.0)):  # three flat backgrounds, smaller: scaled up
        write_png(str(bg_dir / f'b{i}.png'), np.full((40, 40, 3), value))
    raw = make_dataset(str(seed_root), bg_dir=str(bg_dir), backgrounds_per_fg=2)
    assert len(raw) == 2 + 2 * 2  # the photographs as they are + two composites of each
    assert raw[0]['image'] is not None and raw[2]['image'] is None
    data = AugmentedDataset(raw, MattingTransform(size=32, crop_sizes=(32, 48), seed=4))
    n, seen = len(raw), set()
    for epoch in range(1, 9):
        image, trimap, alpha, fg, bg = data[epoch * n + 2]
        np.testing.assert_allclose(image, alpha * fg + (1 - alpha) * bg, atol=1e-5)
        assert np.ptp(bg) < 1e-6  # one flat background ...
        seen.add(round(float(bg.mean()), 2))
    assert seen == {0.0, 0.5, 1.0}  # ... drawn afresh: every one of them over 8 draws


def test_stem_layout_pairs_by_stem_reads_fg_and_floors_noisy_alpha(tmp_path):
    rng = np.random.default_rng(3)
    alpha = synthetic.make_alpha(rng, 64, 64)
    alpha[:8] = 0.03  # backdrop noise of a measured matte
    fg = synthetic.make_foreground(rng, 64, 64)
    write_png(str(tmp_path / 'image' / 'a.jpg'), composite(alpha, fg, np.zeros_like(fg)))  # JPEG
    write_png(str(tmp_path / 'alpha' / 'a.png'), alpha)
    write_png(str(tmp_path / 'fg' / 'a.png'), fg)
    assert layout(str(tmp_path)) == 'stem'
    plain = make_dataset(str(tmp_path))[0]
    floored = make_dataset(str(tmp_path), alpha_floor=16 / 255)[0]
    assert plain['trimap'] is None and plain['name'] == 'a.jpg'
    np.testing.assert_allclose(plain['fg'], np.round(fg * 255) / 255, atol=1e-6)  # read, not estimated
    assert np.all(plain['alpha'][:8] > 0) and np.all(floored['alpha'][:8] == 0)
    kept = plain['alpha'] >= 16 / 255
    np.testing.assert_array_equal(plain['alpha'][kept], floored['alpha'][kept])
    write_png(str(tmp_path / 'image' / 'b.jpg'), composite(alpha, fg, np.zeros_like(fg)))
    with pytest.raises(InputError, match='alpha missing for b.jpg'):
        make_dataset(str(tmp_path))


def test_layering_partners_come_from_every_root(composition_root, seed_root, tmp_path):
    bg_dir = tmp_path / 'bgs'
    write_png(str(bg_dir / 'b.png'), np.zeros((40, 40, 3)))
    raw = ConcatenatedDataset(make_dataset(str(composition_root)),
                              make_dataset(str(seed_root), bg_dir=str(bg_dir)),
                              make_dataset(str(seed_root), bg_dir=str(bg_dir)))  # listed twice
    names = sorted(name for name, _ in foreground_loaders(raw))
    assert names == ['0000.png', '0001.png', '0002.png', 'im0.png', 'im1.png']


def test_seed_layout_missing_gt_is_an_input_error(seed_root, tmp_path):
    import shutil
    broken = tmp_path / 'broken'
    shutil.copytree(seed_root, broken)
    (broken / 'gt' / 'im1.png').unlink()
    with pytest.raises(InputError, match='ground-truth alpha missing'):
        make_dataset(str(broken))


def test_trimap_decoding_quantises_to_three_values(tmp_path):
    import skimage.io
    from PIL import Image
    gray = np.array([[0, 30, 102, 128, 180, 230, 255]], np.uint8).repeat(3, 0)
    expected = np.array([[0, 0, 128, 128, 128, 255, 255]], np.uint8).repeat(3, 0)
    Image.fromarray(gray).convert('P').save(tmp_path / 'palette.png')
    skimage.io.imsave(tmp_path / 'rgba.png', np.dstack([gray] * 3 + [np.full_like(gray, 255)]),
                      check_contrast=False)
    skimage.io.imsave(tmp_path / 'gray16.png', gray.astype(np.uint16) * 257, check_contrast=False)
    for name in ('palette.png', 'rgba.png', 'gray16.png'):
        with pytest.warns(UserWarning, match='quantised'):
            np.testing.assert_array_equal(read_trimap(str(tmp_path / name)), expected, name)
