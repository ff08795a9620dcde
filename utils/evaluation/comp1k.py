"""Composition-1k as Adobe ships it: the test composites built as Adobe's compositing script
builds them, from the release and PASCAL VOC 2012's photographs.

The release's ``Test_set/`` holds ``Adobe-licensed images/{fg,alpha,trimaps}/`` and the name
lists ``test_fg_names.txt`` (50 foregrounds) and ``test_bg_names.txt`` (1,000 VOC file names:
the 20 backgrounds of the first foreground, then of the second, ...). Composite k of foreground
``NAME.png`` is scored on the trimap ``trimaps/NAME_k.png`` (k = 0..19) and the foreground's alpha.

Adobe's rule (its script, and mmagic's converter, which follows it): the background, in RGB, is
scaled up by bicubic interpolation when it is smaller than the foreground in either dimension, by
the larger of the two ratios, to (ceil(w * r), ceil(h * r)); then its top-left corner, the
foreground's size, is kept; I = alpha F + (1 - alpha) B in floating point, then truncated to
8 bits (``int()`` in Adobe's script, ``astype(uint8)`` in mmagic's): not rounded. Training's
``utils.images.composite`` is the same equation on float images in [0, 1], without the 8-bit
step; backgrounds for training are windows drawn at random (``utils.data.augment``).
"""
import collections
import math
import os

import numpy as np
from PIL import Image

from utils.errors import InputError
from utils.images import atomic_write

BACKGROUNDS_PER_FOREGROUND = 20
TRIMAP_SET = 'comp1k'  # the trimap-set column of evaluate.py's tables
FG_NAMES, BG_NAMES = 'test_fg_names.txt', 'test_bg_names.txt'
ADOBE_DIR = 'Adobe-licensed images'

# One test composite: its name (the trimap's file name), the files it is made of and scored on.
Composite = collections.namedtuple('Composite', 'name fg alpha background trimap')


def find_test_set(path):
    """The release's ``Test_set`` folder: ``path`` itself, or ``path/Test_set`` (``path`` being
    ``Combined_Dataset``); InputError if neither holds the name lists."""
    for folder in (path, os.path.join(path, 'Test_set')):
        if os.path.isfile(os.path.join(folder, FG_NAMES)):
            return folder
    raise InputError(f'{path}: not Composition-1k\'s Test_set (no {FG_NAMES} in it or in '
                     f'{os.path.join(path, "Test_set")})')


def _read_names(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def list_composites(test_set, voc_dir, names=None):
    """Every test composite, its files checked to exist.

    Args:
        test_set: the release's ``Test_set`` folder (or ``Combined_Dataset``).
        voc_dir: PASCAL VOC 2012's ``JPEGImages`` folder.
        names: foreground file names or stems to keep (default: all 50).
    Returns:
        list of ``Composite``, in the release's order.
    Raises:
        InputError: a missing folder, name list, foreground, alpha, trimap or background.
    """
    test_set = find_test_set(test_set)
    if not os.path.isdir(voc_dir):
        raise InputError(f'{voc_dir}: --voc folder not found (PASCAL VOC 2012\'s JPEGImages)')
    fgs = _read_names(os.path.join(test_set, FG_NAMES))
    bgs = _read_names(os.path.join(test_set, BG_NAMES))
    if len(bgs) != len(fgs) * BACKGROUNDS_PER_FOREGROUND:
        raise InputError(f'{os.path.join(test_set, BG_NAMES)}: {len(bgs)} names for {len(fgs)} '
                         f'foregrounds, expected {BACKGROUNDS_PER_FOREGROUND} each')
    if names:
        missing = [n for n in names if not any(n in (f, os.path.splitext(f)[0]) for f in fgs)]
        if missing:
            raise InputError(f'--names {missing[0]}: not among the foregrounds of {FG_NAMES}')
    adobe = os.path.join(test_set, ADOBE_DIR)
    out = []
    for i, fg in enumerate(fgs):
        if names and fg not in names and os.path.splitext(fg)[0] not in names:
            continue
        stem, ext = os.path.splitext(fg)
        for k in range(BACKGROUNDS_PER_FOREGROUND):
            name = f'{stem}_{k}{ext}'
            out.append(Composite(name, os.path.join(adobe, 'fg', fg),
                                 os.path.join(adobe, 'alpha', fg),
                                 os.path.join(voc_dir, bgs[i * BACKGROUNDS_PER_FOREGROUND + k]),
                                 os.path.join(adobe, 'trimaps', name)))
    for c in out:
        for path in c[1:]:
            if not os.path.isfile(path):
                raise InputError(f'{path}: missing (needed for the composite {c.name})')
    return out


def cover_top_left(background, width, height):
    """Adobe's background: a PIL image scaled up (bicubic) if smaller than (width, height) in
    either dimension, by the larger ratio, then its top-left (width, height) corner."""
    bw, bh = background.size
    ratio = max(width / bw, height / bh)
    if ratio > 1:
        background = background.resize((math.ceil(bw * ratio), math.ceil(bh * ratio)),
                                       Image.Resampling.BICUBIC)
    return background.crop((0, 0, width, height))


def _open_rgb(path):
    try:
        with Image.open(path) as im:
            return im.convert('RGB')
    except Exception as e:  # PIL raises many types for broken files
        raise InputError(f'{path}: cannot be read as an image ({type(e).__name__}: {e})'
                         .splitlines()[0])


def make_composite(composite):
    """The composite as Adobe's script makes it: uint8 (H, W, 3), H x W the foreground's."""
    fg = _open_rgb(composite.fg)
    alpha = np.asarray(_open_rgb(composite.alpha), np.float64) / 255.0
    if alpha.shape[:2] != (fg.size[1], fg.size[0]):
        raise InputError(f'{composite.alpha}: {alpha.shape[1]}x{alpha.shape[0]}, its foreground '
                         f'is {fg.size[0]}x{fg.size[1]} (width x height)')
    bg = cover_top_left(_open_rgb(composite.background), *fg.size)
    image = np.asarray(fg, np.float64) * alpha + np.asarray(bg, np.float64) * (1.0 - alpha)
    return image.astype(np.uint8)


def cached_composite(composite, cache_dir):
    """The composite's PNG in ``cache_dir`` (written atomically the first time); its path."""
    path = os.path.join(cache_dir, os.path.splitext(composite.name)[0] + '.png')
    if not os.path.isfile(path):
        image = make_composite(composite)
        os.makedirs(cache_dir, exist_ok=True)
        atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format='PNG'))
    return path
