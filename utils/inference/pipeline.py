"""The per-image matting pipeline: read and check, predict with a backend, write the results.

``matte_one`` reads an image and its trimap (or a mask, turned into a trimap by
``utils.data.trimap.trimap_from_mask``), checks them, predicts with a ``utils.inference.backends`` backend at
full resolution, computes every output in memory and only then writes them, each atomically
(temporary name, then rename): a failing image leaves no file of its own behind. demo.py uses it
for one image and, through ``utils.inference.folders``, for folders; evaluate.py reads its inputs with
``read_inputs`` and scores ``saved_matte``s.

Outputs in the output folder, for an image ``STEM.ext``: ``STEM_alpha.png`` (8-bit matte),
``STEM_cutout.png`` (RGBA: foreground colours estimated with pymatting, A = the matte),
``STEM_over_BG.png`` per background, and ``STEM_trimap.png`` when the trimap was made from a mask.
"""
import os
import sys
import time

import numpy as np

from utils.data.trimap import trimap_from_mask
from utils.errors import InputError
from utils.images import (
    BACKGROUND,
    FOREGROUND,
    UNKNOWN,
    composite,
    estimate_foreground,
    list_images,
    read_alpha,
    read_image,
    read_trimap_reporting,
    resize,
    to_uint8,
    write_png,
)

TRIMAP_OUTPUT = 'trimap'  # key of the generated trimap in output_paths


def list_backgrounds(path):
    """Background files: ``path`` itself, or the images in the folder ``path``."""
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        files = [os.path.join(path, f) for f in list_images(path)]
        if not files:
            raise InputError(f'{path}: no background images (png, jpg, bmp, tif) in this folder')
        return files
    raise InputError(f'{path}: no such background file or folder (--backgrounds)')


def read_backgrounds(paths):
    """{path: float32 (h, w, 3) in [0, 1]}, read once for every image."""
    return {path: read_image(path) for path in paths}


def cover(background, height, width):
    """Scale a (h, w, 3) background to cover (height, width), then crop the centre.

    Returns:
        float32 (height, width, 3) in [0, 1].
    """
    h, w = background.shape[:2]
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    if (new_h, new_w) != (h, w):
        background = resize(background, new_h, new_w)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.clip(background[top:top + height, left:left + width], 0, 1).astype(np.float32)


def output_paths(out_dir, image_path, backgrounds, with_trimap=False):
    """{'alpha': path, 'cutout': path, background path: composite path[, 'trimap': path]}."""
    stem = os.path.splitext(os.path.basename(image_path))[0]
    paths = {'alpha': os.path.join(out_dir, f'{stem}_alpha.png'),
             'cutout': os.path.join(out_dir, f'{stem}_cutout.png')}
    stems = [os.path.splitext(os.path.basename(b))[0] for b in backgrounds]
    for bg, bg_stem in zip(backgrounds, stems):
        if stems.count(bg_stem) > 1:  # a.png and a.jpg: keep the extension in the name
            bg_stem = os.path.basename(bg).replace('.', '_')
        paths[bg] = os.path.join(out_dir, f'{stem}_over_{bg_stem}.png')
    if with_trimap:
        paths[TRIMAP_OUTPUT] = os.path.join(out_dir, f'{stem}_trimap.png')
    return paths


def read_inputs(image_path, trimap_path=None, mask_path=None, band=None, require_unknown=True):
    """Read an image with its trimap, or with a mask made into a trimap; check they fit.

    Args:
        trimap_path / mask_path: exactly one of them (see ``utils.images.read_trimap`` and
            ``utils.data.trimap.trimap_from_mask``; ``band`` goes to the latter).
        require_unknown: refuse a trimap without unknown pixels (nothing to matte).
    Returns:
        (image float32 (H, W, 3) in [0, 1], trimap uint8 (H, W) in {0, 128, 255}).
    Raises:
        InputError: unreadable files, sizes that differ, no unknown pixels.
    """
    image = read_image(image_path)
    guide = mask_path or trimap_path
    if mask_path:
        mask = read_alpha(mask_path)
        what = 'mask'
    else:
        trimap = read_trimap_reporting(trimap_path)
        what = 'trimap'
    shape = (mask if mask_path else trimap).shape
    if image.shape[:2] != shape:
        raise InputError(f'{guide}: {what} is {shape[1]}x{shape[0]} but the image is '
                         f'{image.shape[1]}x{image.shape[0]} (width x height): they must match')
    if mask_path:
        trimap = trimap_from_mask(mask, band)
    if require_unknown and not np.any(trimap == UNKNOWN):
        if mask_path:
            raise InputError(f'{guide}: the trimap made from this mask has no unknown pixels '
                             '(the mask is all background or all foreground)')
        raise InputError(f'{guide}: trimap has no unknown (128) pixels: nothing to matte')
    return image, trimap


def saved_matte(alpha, trimap):
    """Alpha in [0, 1] (NaN read as 0) -> uint8 matte, trimap-known pixels forced to 0 / 255."""
    matte = to_uint8(np.nan_to_num(np.asarray(alpha, np.float64), nan=0.0))
    matte[trimap == BACKGROUND] = 0
    matte[trimap == FOREGROUND] = 255
    return matte


def matte_and_write(backend, image, trimap, outputs, backgrounds, refine=True,
                    write_trimap=False):
    """Predict the matte of checked inputs (``read_inputs``), then write every output.

    Args:
        backend: a ``utils.inference.backends`` backend.
        outputs: ``output_paths(...)`` (with 'trimap' when ``write_trimap``).
        backgrounds: ``read_backgrounds(...)``, in the order of ``outputs``.
    Returns:
        dict: seconds (prediction), width, height, unknown (pixel count), written (paths, in
        writing order).
    """
    t = time.perf_counter()
    alpha = backend.predict(image, trimap, refine=refine)
    seconds = time.perf_counter() - t
    alpha8 = saved_matte(alpha, trimap)
    alpha = alpha8.astype(np.float32) / 255.0  # what the saved matte says
    try:
        fg, _ = estimate_foreground(image, alpha)
    except ImportError as e:  # pymatting (or its numba) is not installed
        reason = (str(e).splitlines() or [''])[0]
        print(f'warning: foreground colours not estimated ({reason}); the cutout and composites '
              "use the image's own colours", file=sys.stderr)
        fg = image
    arrays = {TRIMAP_OUTPUT: trimap} if write_trimap else {}
    arrays['alpha'] = alpha8
    arrays['cutout'] = np.dstack([to_uint8(fg), alpha8])
    for bg_path, background in backgrounds.items():
        arrays[bg_path] = to_uint8(composite(alpha, fg, cover(background, *image.shape[:2])))
    for key, array in arrays.items():  # all computed: now write
        write_png(outputs[key], array)
    return {'seconds': seconds, 'height': image.shape[0], 'width': image.shape[1],
            'unknown': int(np.count_nonzero(trimap == UNKNOWN)),
            'written': [outputs[key] for key in arrays]}


def matte_one(backend, image_path, outputs, backgrounds, trimap_path=None, mask_path=None,
              band=None, refine=True):
    """``read_inputs`` then ``matte_and_write`` (the generated trimap too, for a mask)."""
    image, trimap = read_inputs(image_path, trimap_path, mask_path, band)
    return matte_and_write(backend, image, trimap, outputs, backgrounds, refine,
                           write_trimap=bool(mask_path))


def complete(outputs):
    """Whether every output file exists (each is written atomically: existing = complete)."""
    return all(os.path.isfile(p) for p in outputs.values())
