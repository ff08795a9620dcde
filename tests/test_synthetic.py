"""Tests for utils/data/synthetic.py: alpha structure, reproducibility, dataset layout and the CLI."""
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import disk

from utils.data import synthetic
from utils.images import list_images, read_alpha, read_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = range(8)


def thin_mass_fraction(alpha):
    """Fraction of the alpha mass that a grey opening with a 3x3 disk removes (thin structures)."""
    opened = ndimage.grey_opening(alpha, footprint=disk(1))
    return float((alpha - opened).sum() / alpha.sum())


@pytest.fixture(scope='module')
def alphas():
    return [synthetic.make_alpha(np.random.default_rng(s), 128, 160) for s in SEEDS]


def test_alpha_dtype_shape_range(alphas):
    for a in alphas:
        assert a.dtype == np.float32 and a.shape == (128, 160)
        assert a.min() >= 0.0 and a.max() <= 1.0


def test_alpha_has_fractional_values(alphas):
    for a in alphas:
        partial = ((a > 0.05) & (a < 0.95)).mean()
        assert partial > 0.01, partial


def test_alpha_has_foreground_and_background(alphas):
    for a in alphas:
        assert (a > 0.95).mean() > 0.03
        assert (a < 0.05).mean() > 0.2


def test_alpha_has_thin_structures(alphas):
    # A smooth blurred disk loses (almost) nothing to the opening: the measure is discriminative.
    yy, xx = np.mgrid[:128, :160]
    blob = ndimage.gaussian_filter(((yy - 64) ** 2 + (xx - 80) ** 2 < 40 ** 2).astype(np.float32), 2)
    assert thin_mass_fraction(blob) < 1e-4
    for a in alphas:
        assert thin_mass_fraction(a) > 2e-3


def test_same_seed_same_output_different_seed_differs():
    def sample(seed):
        rng = np.random.default_rng(seed)
        return (synthetic.make_alpha(rng, 64, 96), synthetic.make_foreground(rng, 64, 96),
                synthetic.make_background(rng, 64, 96))
    a, b, c = sample(5), sample(5), sample(6)
    for x, y, z in zip(a, b, c):
        assert np.array_equal(x, y)
        assert not np.array_equal(x, z)


def test_foreground_and_backgrounds():
    for s in SEEDS:
        fg = synthetic.make_foreground(np.random.default_rng(s), 64, 80)
        assert fg.dtype == np.float32 and fg.shape == (64, 80, 3)
        assert fg.min() >= 0.0 and fg.max() <= 1.0 and fg.std() > 0.02  # textured, not flat
    photos = synthetic.background_photos()
    assert len(photos) >= 3
    for p in photos:
        assert p.dtype == np.float32 and p.ndim == 3 and p.shape[2] == 3
        assert 0.0 <= p.min() and p.max() <= 1.0 and p.std() > 0.05


def test_bad_size_is_refused():
    with pytest.raises(ValueError):
        synthetic.make_alpha(np.random.default_rng(0), 8, 64)


def test_write_composition_dataset(tmp_path):
    root = synthetic.write_composition_dataset(str(tmp_path / 'ds'), 3, np.random.default_rng(1),
                                               size=(64, 96), n_backgrounds=2)
    assert root == str(tmp_path / 'ds')
    names = ['0000.png', '0001.png', '0002.png']
    assert list_images(os.path.join(root, 'fg')) == names
    assert list_images(os.path.join(root, 'alpha')) == names
    assert list_images(os.path.join(root, 'bg')) == names[:2]
    for n in names:
        fg = read_image(os.path.join(root, 'fg', n))
        alpha = read_alpha(os.path.join(root, 'alpha', n))
        assert fg.shape == (64, 96, 3) and alpha.shape == (64, 96)
        assert ((alpha > 0.05) & (alpha < 0.95)).any()
    for n in names[:2]:
        bg = read_image(os.path.join(root, 'bg', n))
        assert bg.shape[0] >= 64 and bg.shape[1] >= 96
    with pytest.raises(ValueError):
        synthetic.write_composition_dataset(str(tmp_path / 'bad'), -1, np.random.default_rng(0))


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    return subprocess.run([sys.executable, '-m', 'scripts.make_synthetic', *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_writes_dataset(tmp_path):
    out = str(tmp_path / 'cli')
    r = run_cli(out, '--count', '2', '--size', '48', '64', '--seed', '3')
    assert r.returncode == 0, r.stderr
    assert list_images(os.path.join(out, 'alpha')) == ['0000.png', '0001.png']
    assert read_alpha(os.path.join(out, 'alpha', '0001.png')).shape == (48, 64)


def test_cli_negative_count_is_one_line_error(tmp_path):
    r = run_cli(str(tmp_path / 'x'), '--count', '-3')
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'count' in lines[0] and 'Traceback' not in r.stderr
    assert not os.path.exists(tmp_path / 'x')
