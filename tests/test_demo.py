"""The demo on real (small, odd-sized) files with a real (untrained, narrow) checkpoint."""
import hashlib
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage.io
from PIL import Image

import demo
import options
from tests.helpers import one_error_line
from utils.inference import pipeline
from utils.training.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]
H, W = 53, 77  # not multiples of 32
BG_COLOUR = (10, 200, 30)


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    """An RGB image, its trimap (0 / 128 / 255) and a one-colour background of another size."""
    folder = tmp_path_factory.mktemp('inputs')
    rng = np.random.default_rng(0)
    image = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    yy, xx = np.mgrid[:H, :W]
    r = np.hypot(yy - H / 2, xx - W / 2)
    trimap = np.where(r < 12, 255, np.where(r < 20, 128, 0)).astype(np.uint8)
    background = np.empty((31, 90, 3), np.uint8)
    background[:] = BG_COLOUR
    paths = {'image': folder / 'photo.png', 'trimap': folder / 'photo_trimap.png',
             'bg': folder / 'sky.png'}
    for key, array in (('image', image), ('trimap', trimap), ('bg', background)):
        skimage.io.imsave(paths[key], array, check_contrast=False)
    return {'pixels': image, 'labels': trimap, **{k: str(v) for k, v in paths.items()}}


def run_demo(args, capsys):
    code = demo.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_writes_matte_cutout_and_composite_at_input_size(inputs, ckpt, tmp_path, capsys):
    before = {k: digest(inputs[k]) for k in ('image', 'trimap', 'bg')} | {'ckpt': digest(ckpt)}
    out_dir = tmp_path / 'out'
    code, out, err = run_demo([inputs['image'], inputs['trimap'], '--ckpt_path', ckpt,
                               '--out_dir', str(out_dir), '--backgrounds', inputs['bg']], capsys)
    assert code == 0, err
    matte = skimage.io.imread(out_dir / 'photo_alpha.png')
    cutout = skimage.io.imread(out_dir / 'photo_cutout.png')
    over = skimage.io.imread(out_dir / 'photo_over_sky.png')
    assert matte.shape == (H, W) and matte.dtype == np.uint8
    assert cutout.shape == (H, W, 4) and over.shape == (H, W, 3)
    trimap = inputs['labels']
    assert np.all(matte[trimap == 0] == 0) and np.all(matte[trimap == 255] == 255)
    unknown = matte[trimap == 128]
    assert np.any((unknown > 0) & (unknown < 255))  # the network's values, not the trimap's
    np.testing.assert_array_equal(cutout[:, :, 3], matte)
    assert np.all(over[trimap == 0] == BG_COLOUR)
    np.testing.assert_array_equal(over[trimap == 255], cutout[:, :, :3][trimap == 255])
    for name in ('photo_alpha.png', 'photo_cutout.png', 'photo_over_sky.png'):
        assert str(out_dir / name) in out
    assert 'prediction:' in out and 'total:' in out
    assert sorted(os.listdir(out_dir)) == ['photo_alpha.png', 'photo_cutout.png',
                                           'photo_over_sky.png']  # no temporary files left
    after = {k: digest(inputs[k]) for k in ('image', 'trimap', 'bg')} | {'ckpt': digest(ckpt)}
    assert after == before


def write_png16(path, rgb):
    """A 16-bit RGB PNG, encoded by hand (Pillow cannot write one)."""
    height, width, _ = rgb.shape
    rows = b''.join(b'\x00' + rgb[y].astype('>u2').tobytes() for y in range(height))

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    header = struct.pack('>IIBBBBB', width, height, 16, 2, 0, 0, 0)
    Path(path).write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
                           + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))


def write_variant(folder, image, trimap, image_kind, trimap_kind):
    """The image and trimap re-encoded: RGBA, gray, 16-bit; trimap RGB, RGBA with 102, palette."""
    if image_kind == 'rgba':
        data = np.dstack([image, np.full((H, W), 200, np.uint8)])
    elif image_kind == 'gray':
        data = image[:, :, 0]
    elif image_kind == 'gray16':
        data = image[:, :, 0].astype(np.uint16) * 257
    else:
        data = image
    image_path = folder / f'{image_kind}.png'
    if image_kind == 'rgb16':
        write_png16(image_path, image.astype(np.uint16) * 257)
    else:
        skimage.io.imsave(image_path, data, check_contrast=False)
    trimap_path = folder / f'{trimap_kind}_trimap.png'
    if trimap_kind == 'rgb':
        skimage.io.imsave(trimap_path, np.dstack([trimap] * 3), check_contrast=False)
    elif trimap_kind == 'rgba102':
        t = np.where(trimap == 128, 102, trimap).astype(np.uint8)
        skimage.io.imsave(trimap_path, np.dstack([t] * 3 + [np.full_like(t, 255)]),
                          check_contrast=False)
    else:  # palette
        Image.fromarray(trimap).convert('P').save(trimap_path)
    return str(image_path), str(trimap_path)


@pytest.mark.parametrize('image_kind,trimap_kind', [('rgba', 'rgb'), ('gray', 'palette'),
                                                    ('gray16', 'rgb'), ('rgb16', 'rgba102')])
def test_image_and_trimap_encodings(inputs, ckpt, tmp_path, capsys, image_kind, trimap_kind):
    image_path, trimap_path = write_variant(tmp_path, inputs['pixels'], inputs['labels'],
                                            image_kind, trimap_kind)
    if trimap_kind == 'palette':
        assert Image.open(trimap_path).mode == 'P'
    out_dir = tmp_path / 'out'
    code, out, err = run_demo(['--img_path', image_path, '--tri_path', trimap_path,
                               '--ckpt_path', ckpt, '--out_dir', str(out_dir),
                               '--backgrounds', inputs['bg']], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith('warning: ')]
    assert len(warnings) == (1 if trimap_kind == 'rgba102' else 0), err
    assert 'Traceback' not in err and 'UserWarning' not in err
    matte = skimage.io.imread(out_dir / f'{image_kind}_alpha.png')
    assert matte.shape == (H, W)
    trimap = inputs['labels']  # 102 was read as unknown: the same known pixels
    assert np.all(matte[trimap == 0] == 0) and np.all(matte[trimap == 255] == 255)
    if image_kind in ('rgba', 'rgb16'):  # the same colours as the RGB image: the same matte
        reference = load_model(ckpt, -1).predict(inputs['pixels'] / np.float32(255), trimap)
        assert np.abs(matte.astype(int) - np.round(reference * 255)).max() <= 1


def test_cover_scales_then_crops_the_centre():
    tall = np.random.default_rng(1).random((200, W, 3)).astype(np.float32)
    np.testing.assert_array_equal(pipeline.cover(tall, H, W), tall[73:126])  # (200 - 53) // 2 = 73
    double = np.random.default_rng(2).random((2 * H, 2 * W, 3)).astype(np.float32)
    assert pipeline.cover(double, H, W).shape == (H, W, 3)
    small = np.random.default_rng(3).random((10, 12, 3)).astype(np.float32)
    assert pipeline.cover(small, H, W).shape == (H, W, 3)


def test_defaults_are_the_bundled_files():
    parser = options.demo_parser()
    args = parser.parse_args([])
    image, trimap, mask = demo.resolve_inputs(args, parser)
    assert image.endswith(os.path.join('imgs', 'astronaut_image.png')) and os.path.isfile(image)
    assert trimap.endswith(os.path.join('imgs', 'astronaut_trimap.png')) and os.path.isfile(trimap)
    assert mask is None
    assert os.path.isfile(args.backgrounds)  # one background, not every image in imgs/
    args = parser.parse_args(['mine.png'])
    with pytest.raises(demo.InputError, match='trimap'):
        demo.resolve_inputs(args, parser)


@pytest.mark.parametrize('case', ['missing_image', 'directory', 'sizes_differ', 'no_unknown',
                                  'corrupt_ckpt', 'missing_ckpt', 'output_is_input'])
def test_bad_inputs_give_one_error_line(inputs, ckpt, tmp_path, capsys, case):
    image, trimap, ckpt_path = inputs['image'], inputs['trimap'], ckpt
    out_dir = tmp_path / 'out'
    if case == 'missing_image':
        image = str(tmp_path / 'nothing.png')
    elif case == 'directory':
        image = str(tmp_path)
    elif case == 'sizes_differ':
        trimap = str(tmp_path / 'small_trimap.png')
        skimage.io.imsave(trimap, inputs['labels'][:-1], check_contrast=False)
    elif case == 'no_unknown':
        trimap = str(tmp_path / 'known_trimap.png')
        skimage.io.imsave(trimap, np.where(inputs['labels'] == 255, 255, 0).astype(np.uint8),
                          check_contrast=False)
    elif case == 'corrupt_ckpt':
        ckpt_path = str(tmp_path / 'garbage.npz')
        Path(ckpt_path).write_bytes(np.random.default_rng(0).bytes(3000))
    elif case == 'missing_ckpt':
        ckpt_path = str(tmp_path / 'absent.npz')
    else:  # the matte's name is the trimap's: refused before anything is written
        out_dir = Path(inputs['trimap']).parent
        trimap = str(out_dir / 'photo_alpha.png')
        skimage.io.imsave(trimap, inputs['labels'], check_contrast=False)
    before = digest(trimap) if os.path.isfile(trimap) else None
    code, out, err = run_demo([image, trimap, '--ckpt_path', ckpt_path, '--out_dir', str(out_dir),
                               '--backgrounds', inputs['bg']], capsys)
    assert code == 1
    assert one_error_line(err), err
    if case == 'output_is_input':
        assert 'overwrite' in err and digest(trimap) == before
        os.remove(trimap)
    else:
        assert not out_dir.exists()


def test_missing_default_checkpoint_says_none_is_shipped(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(options, 'DEFAULT_CHECKPOINT', str(tmp_path / 'ckpt' / 'dim.npz'))
    code, out, err = run_demo([inputs['image'], inputs['trimap'], '--out_dir', str(tmp_path)],
                              capsys)
    assert code == 1 and one_error_line(err), err
    assert 'no trained checkpoint' in err and '--ckpt_path' in err


def test_command_line_error_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / 'demo.py'), str(tmp_path / 'missing.png'),
                             str(tmp_path / 'missing_trimap.png'), '--out_dir', str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert one_error_line(result.stderr), result.stderr
    assert 'missing.png' in result.stderr
