"""Folder mode, trimaps from masks and 16-bit photographs, through demo.py and evaluate.py."""
import os

import numpy as np
import pytest
import skimage.io

import demo
import evaluate
from tests.helpers import one_error_line
from tests.test_demo import write_png16
from utils.data import synthetic
from utils.data.trimap import default_band, erode_to_trimap, trimap_from_mask
from utils.images import read_alpha, read_image, to_uint8

H, W = 40, 56
GOOD = ('a', 'b', 'c')
OUTPUTS = ('alpha', 'cutout', 'over_background')


def save(path, array):
    skimage.io.imsave(path, array, check_contrast=False)


def picture(seed):
    """(image uint8 (H, W, 3), trimap uint8, soft mask uint8) of a synthetic composite."""
    rng = np.random.default_rng(seed)
    alpha = synthetic.make_alpha(rng, H, W)
    image = synthetic.make_foreground(rng, H, W) * alpha[..., None] + \
        synthetic.make_background(rng, H, W) * (1 - alpha[..., None])
    alpha8 = to_uint8(alpha)
    return to_uint8(image), erode_to_trimap(alpha8 / 255.0, 3, 3), alpha8


@pytest.fixture
def folders(tmp_path):
    """images/ (a, b, c good; broken.png truncated; lonely.png without trimap) and trimaps/
    (the three, broken.png's, and orphan.png without an image)."""
    images, trimaps, masks = tmp_path / 'images', tmp_path / 'trimaps', tmp_path / 'masks'
    for folder in (images, trimaps, masks):
        folder.mkdir()
    for i, stem in enumerate(GOOD + ('broken', 'lonely', 'orphan')):
        image, trimap, mask = picture(i)
        if stem != 'orphan':
            save(images / f'{stem}.png', image)
        if stem != 'lonely':
            save(trimaps / f'{stem}.png', trimap)
            save(masks / f'{stem}.png', mask)
    data = (images / 'broken.png').read_bytes()
    (images / 'broken.png').write_bytes(data[:len(data) // 2])  # truncated: unreadable
    return images, trimaps, masks


def run_demo(args, capsys):
    code = demo.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def written(out_dir):
    return sorted(os.listdir(out_dir)) if out_dir.exists() else []


def expected_files(stems, with_trimap=False):
    kinds = OUTPUTS + (('trimap',) if with_trimap else ())
    return sorted(f'{s}_{k}.png' for s in stems for k in kinds)


def test_folder_writes_the_good_ones_names_the_bad_one_and_lists_the_unmatched(
        folders, ckpt, tmp_path, capsys):
    images, trimaps, _ = folders
    out = tmp_path / 'out'
    args = [str(images), str(trimaps), '--ckpt_path', ckpt, '--out_dir', str(out)]
    code, stdout, err = run_demo(args, capsys)
    assert code == 1  # something failed
    assert written(out) == expected_files(GOOD)  # nothing of broken.png, no temporary files
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith('error: ') and 'broken.png' in errors[0]
    assert 'Traceback' not in err
    assert 'images without a trimap (1): lonely.png' in stdout
    assert 'trimaps without an image (1): orphan.png' in stdout
    assert '3 matted' in stdout and '1 failed' in stdout and 'failed: ' in stdout
    progress = [line for line in stdout.splitlines() if line.startswith('[')]
    assert len(progress) == 4 and progress[-1].startswith('[' + '#' * 20 + '] 4/4')
    assert all(' s (' in line for line in progress if 'broken' not in line)  # time per image
    for stem in GOOD:
        matte = skimage.io.imread(out / f'{stem}_alpha.png')
        trimap = skimage.io.imread(trimaps / f'{stem}.png')
        assert matte.shape == (H, W)
        assert np.all(matte[trimap == 0] == 0) and np.all(matte[trimap == 255] == 255)

    # re-run: complete outputs are skipped, the broken one fails again
    mtimes = {name: os.stat(out / name).st_mtime_ns for name in written(out)}
    code, stdout, err = run_demo(args, capsys)
    assert code == 1 and '0 matted' in stdout and '3 skipped' in stdout
    assert {name: os.stat(out / name).st_mtime_ns for name in written(out)} == mtimes

    # a half-done image (its cutout lost) is redone; a repaired file is matted; exit 0
    os.remove(out / 'b_cutout.png')
    save(images / 'broken.png', picture(3)[0])
    code, stdout, err = run_demo(args, capsys)
    assert code == 0, err
    assert '2 matted' in stdout and '2 skipped' in stdout and '0 failed' in stdout
    assert written(out) == expected_files(GOOD + ('broken',))
    code, stdout, _ = run_demo(args + ['--overwrite'], capsys)
    assert code == 0 and '4 matted' in stdout


def test_folder_of_masks_writes_the_generated_trimaps(folders, ckpt, tmp_path, capsys):
    images, _, masks = folders
    os.remove(images / 'broken.png')
    out = tmp_path / 'out'
    code, stdout, err = run_demo([str(images), '--mask', str(masks), '--ckpt_path', ckpt,
                                  '--out_dir', str(out), '--band', '4'], capsys)
    assert code == 0, err
    assert 'masks without an image (2): broken.png, orphan.png' in stdout
    assert written(out) == expected_files(GOOD, with_trimap=True)
    for stem in GOOD:
        trimap = skimage.io.imread(out / f'{stem}_trimap.png')
        np.testing.assert_array_equal(trimap, trimap_from_mask(read_alpha(masks / f'{stem}.png'),
                                                               4))
        matte = skimage.io.imread(out / f'{stem}_alpha.png')
        assert np.all(matte[trimap == 0] == 0) and np.all(matte[trimap == 255] == 255)


def test_single_image_with_a_soft_mask(ckpt, tmp_path, capsys):
    image, _, mask = picture(5)
    assert np.count_nonzero((mask > 20) & (mask < 235)) > 50  # soft edges
    save(tmp_path / 'p.png', image)
    save(tmp_path / 'p_mask.png', mask)
    out = tmp_path / 'out'
    code, stdout, err = run_demo([str(tmp_path / 'p.png'), '--mask', str(tmp_path / 'p_mask.png'),
                                  '--ckpt_path', ckpt, '--out_dir', str(out)], capsys)
    assert code == 0, err
    assert written(out) == expected_files(['p'], with_trimap=True)
    trimap = skimage.io.imread(out / 'p_trimap.png')
    band = default_band((H, W))
    assert f'{band} px band' in stdout
    np.testing.assert_array_equal(trimap, trimap_from_mask(mask / 255.0, band))
    assert np.all(trimap[(mask > 20) & (mask < 235)] == 128)  # soft values are unknown
    assert set(np.unique(trimap)) == {0, 128, 255}


@pytest.mark.parametrize('case', ['band_without_mask', 'mask_and_trimap', 'folder_and_file',
                                  'file_and_folder', 'no_pairs', 'mask_no_unknown',
                                  'mask_size'])
def test_bad_folder_and_mask_arguments_give_one_error_line(folders, ckpt, tmp_path, capsys,
                                                          case):
    images, trimaps, masks = folders
    image, trimap = str(images / 'a.png'), str(trimaps / 'a.png')
    args = {'band_without_mask': [image, trimap, '--band', '3'],
            'mask_and_trimap': [image, trimap, '--mask', str(masks / 'a.png')],
            'folder_and_file': [str(images), trimap],
            'file_and_folder': [image, str(trimaps)],
            'no_pairs': [str(images), str(tmp_path)],
            'mask_no_unknown': [image, '--mask', str(tmp_path / 'm.png')],
            'mask_size': [image, '--mask', str(tmp_path / 'm.png')]}[case]
    if case == 'mask_no_unknown':
        save(tmp_path / 'm.png', np.full((H, W), 255, np.uint8))
    elif case == 'mask_size':
        save(tmp_path / 'm.png', np.full((H + 1, W), 255, np.uint8))
    code, _, err = run_demo(args + ['--ckpt_path', ckpt, '--out_dir', str(tmp_path / 'out')],
                            capsys)
    assert code == 1 and one_error_line(err), err
    expected = {'band_without_mask': '--band goes with --mask', 'mask_and_trimap': 'not both',
                'folder_and_file': 'folder mode', 'file_and_folder': 'two files or two folders',
                'no_pairs': 'no image has a trimap', 'mask_no_unknown': 'all background or all',
                'mask_size': 'must match'}[case]
    assert expected in err
    assert not (tmp_path / 'out').exists()


def test_sixteen_bit_image_keeps_its_low_bytes_through_the_demo(ckpt, tmp_path, capsys):
    """A 16-bit picture whose low bytes change its 8-bit colours: 8-bit rounding of the 16-bit
    values and the high byte alone (what Pillow reads) differ in every channel."""
    rng = np.random.default_rng(0)
    pixels = (rng.integers(0, 65536, (H, W, 3))).astype(np.uint16)
    write_png16(tmp_path / 'noise16.png', pixels)
    np.testing.assert_array_equal(read_image(str(tmp_path / 'noise16.png')),
                                  (pixels / np.float32(65535)).astype(np.float32))
    colour = np.array([20, 60, 100]) * 256 + 250  # (20 * 256 + 250) / 257 = 20.9: rounds to 21
    write_png16(tmp_path / 'p16.png', np.broadcast_to(colour, (H, W, 3)).astype(np.uint16))
    trimap = np.zeros((H, W), np.uint8)
    trimap[5:35, 8:48] = 128
    trimap[12:28, 18:38] = 255
    save(tmp_path / 't.png', trimap)
    code, _, err = run_demo([str(tmp_path / 'p16.png'), str(tmp_path / 't.png'), '--ckpt_path',
                             ckpt, '--out_dir', str(tmp_path / 'out')], capsys)
    assert code == 0, err
    cutout = skimage.io.imread(tmp_path / 'out' / 'p16_cutout.png')
    over = skimage.io.imread(tmp_path / 'out' / 'p16_over_background.png')
    fg = trimap == 255  # alpha 1 on a one-colour picture: the foreground is that colour
    np.testing.assert_array_equal(cutout[:, :, :3][fg], np.broadcast_to([21, 61, 101],
                                                                        (fg.sum(), 3)))
    np.testing.assert_array_equal(over[fg], cutout[:, :, :3][fg])


def test_sixteen_bit_image_keeps_its_low_bytes_through_the_evaluation(tmp_path, capsys):
    """Foreground and background that differ only in their low bytes: closed-form matting
    separates them from the 16-bit file, not from its 8-bit reduction."""
    rng = np.random.default_rng(0)
    alpha8 = to_uint8(synthetic.make_alpha(rng, H, W))
    a = alpha8[..., None] / 255.0
    fg = 0.5 + np.array([120, -90, 60]) / 65535
    bg = 0.5 + np.array([-100, 110, -80]) / 65535
    pixels = np.round((a * fg + (1 - a) * bg) * 65535).astype(np.uint16)
    sad = {}
    for bits in (16, 8):
        root = tmp_path / f'data{bits}'
        for sub in ('input', 'gt', 'trimap/a'):
            (root / sub).mkdir(parents=True)
        if bits == 16:
            write_png16(root / 'input' / 's.png', pixels)
        else:
            save(root / 'input' / 's.png', (pixels >> 8).astype(np.uint8))
        save(root / 'gt' / 's.png', alpha8)
        save(root / 'trimap' / 'a' / 's.png', erode_to_trimap(alpha8 / 255.0, 4, 4))
        assert evaluate.main([str(root), '--method', 'closed_form', '--out_dir',
                              str(tmp_path / f'eval{bits}')]) == 0
        rows = (tmp_path / f'eval{bits}' / 'metrics.csv').read_text().splitlines()
        sad[bits] = float(rows[1].split(',')[3])
    capsys.readouterr()
    assert sad[16] < 0.5 * sad[8], sad
