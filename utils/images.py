"""Leaf helpers: reading images, alphas and trimaps, compositing, atomic writes, layout changes.

Conventions used across the project
-----------------------------------
* image: float32 array (H, W, 3), RGB in [0, 1].
* alpha: float32 array (H, W) in [0, 1] (0 = background, 1 = foreground).
* trimap: uint8 array (H, W) with values exactly {0, 128, 255}
  (0 = background, ``UNKNOWN`` = 128, 255 = foreground).

Compositing follows I = alpha F + (1 - alpha) B.

This module imports only ``utils.errors`` of the project.
"""
import os
import sys
import tempfile
import warnings

import numpy as np
from PIL import Image

from utils.errors import InputError

BACKGROUND = 0
UNKNOWN = 128
FOREGROUND = 255
# Trimap quantisation: value <= TRIMAP_LOW -> background, value >= TRIMAP_HIGH -> foreground,
# anything between -> unknown. Covers anti-aliased edges, JPEG noise and the 102 some tools write.
TRIMAP_LOW = 64
TRIMAP_HIGH = 192
# Images larger than this many pixels are refused (memory guard: about 16 megapixels).
MAX_PIXELS = 4096 * 4096


def _check_pixel_count(path):
    """Refuse images above MAX_PIXELS from the file header, before decoding anything."""
    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with Image.open(path) as im:
                width, height = im.size
    except Exception:  # not a format PIL knows: the decoder below reports it
        return
    if width * height > MAX_PIXELS:
        raise InputError(f'{path}: {width}x{height} is larger than the '
                         f'{MAX_PIXELS // 2**20} megapixel limit')


PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _read_png16(path):
    """A PNG with 16 bits per sample decoded to uint16 by libspng (``pyspng``), else None.

    Pillow (under skimage.io and imageio) decodes 16-bit RGB and RGBA PNGs to 8 bits, dropping
    the low byte; libspng keeps them. Gray 16-bit comes back as gray + alpha, RGB as RGBA (the
    readers below drop that alpha).
    """
    with open(path, 'rb') as f:
        head = f.read(25)
    # signature, IHDR length and type, width, height, then the bit depth (byte 24)
    if len(head) < 25 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b'IHDR' \
            or head[24] != 16:
        return None
    import pyspng
    with open(path, 'rb') as f:
        return np.asarray(pyspng.load(f.read()))


def _read_raw(path):
    """Decode an image file to a numpy array without changing its values or dtype."""
    import skimage.io
    if not os.path.exists(path):
        raise InputError(f'{path}: no such file')
    if os.path.isdir(path):
        raise InputError(f'{path}: is a directory, expected an image file')
    if os.path.getsize(path) == 0:
        raise InputError(f'{path}: file is empty')
    _check_pixel_count(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            raw = _read_png16(path)
            if raw is None:
                raw = np.asarray(skimage.io.imread(path))
    except Exception as e:  # decoders raise many types (OSError, ValueError, SyntaxError, ...)
        raise InputError(f'{path}: cannot be read as an image ({type(e).__name__}: {e})'.splitlines()[0])
    if raw.ndim not in (2, 3) or raw.size == 0 or raw.dtype == object:
        raise InputError(f'{path}: unexpected image layout {raw.shape}')
    if raw.shape[0] * raw.shape[1] > MAX_PIXELS:
        raise InputError(f'{path}: {raw.shape[1]}x{raw.shape[0]} is larger than the '
                         f'{MAX_PIXELS // 2**20} megapixel limit')
    return raw


def _to_unit_float(raw):
    """Integer or float pixel values -> float32 in [0, 1] (16-bit and 8-bit aware)."""
    if raw.dtype == np.bool_:
        return raw.astype(np.float32)
    if np.issubdtype(raw.dtype, np.integer):
        return (raw.astype(np.float32) / np.iinfo(raw.dtype).max).astype(np.float32)
    out = raw.astype(np.float32)
    if out.max(initial=0) > 1.0:
        out /= 255.0
    return np.clip(out, 0.0, 1.0)


def read_image(path):
    """Read an RGB image.

    Accepts gray, RGB and RGBA (the alpha channel is dropped), 8- or 16-bit.

    Returns:
        float32 array (H, W, 3) in [0, 1].
    """
    x = _to_unit_float(_read_raw(path))
    if x.ndim == 2:
        x = np.repeat(x[:, :, None], 3, axis=2)
    elif x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    elif x.shape[2] == 2:  # gray + alpha
        x = np.repeat(x[:, :, :1], 3, axis=2)
    else:
        x = x[:, :, :3]
    return np.ascontiguousarray(x, dtype=np.float32)


def read_alpha(path):
    """Read an alpha matte (gray, or RGB/RGBA with equal channels: channel 0 is used).

    Returns:
        float32 array (H, W) in [0, 1].
    """
    x = _to_unit_float(_read_raw(path))
    if x.ndim == 3:
        x = x[:, :, 0]
    return np.ascontiguousarray(x, dtype=np.float32)


def quantise_trimap(gray):
    """Map 8-bit gray values to {0, 128, 255} with the TRIMAP_LOW / TRIMAP_HIGH thresholds.

    Args:
        gray: array (H, W) of values in [0, 255].
    Returns:
        (trimap uint8 (H, W), number of pixels whose value changed).
    """
    gray = np.asarray(gray)
    trimap = np.full(gray.shape, UNKNOWN, np.uint8)
    trimap[gray <= TRIMAP_LOW] = BACKGROUND
    trimap[gray >= TRIMAP_HIGH] = FOREGROUND
    changed = int(np.count_nonzero(trimap.astype(np.float64) != gray))
    return trimap, changed


def read_trimap(path, warn=True):
    """Read a trimap (palette, gray, RGB or RGBA PNG, 8- or 16-bit) and quantise it.

    Values are mapped to 0 / 128 / 255 with ``quantise_trimap``; when that changes pixels
    (anti-aliased edges, JPEG, 102 for unknown) a warning says how many.

    Returns:
        uint8 array (H, W) with values in {0, 128, 255}.
    """
    raw = _read_raw(path)
    if np.issubdtype(raw.dtype, np.integer) and raw.dtype.itemsize > 1:
        raw = raw.astype(np.float64) * 255.0 / np.iinfo(raw.dtype).max
    elif raw.dtype == np.bool_:
        raw = raw.astype(np.float64) * 255.0
    if raw.ndim == 3:
        raw = raw[:, :, 0] if raw.shape[2] in (1, 2) else raw[:, :, :3].mean(axis=2)
    trimap, changed = quantise_trimap(np.round(raw))
    if changed and warn:
        warnings.warn(f'{path}: {changed} trimap pixels were not 0/128/255 and were quantised '
                      f'(<= {TRIMAP_LOW}: background, >= {TRIMAP_HIGH}: foreground, else unknown)')
    return trimap


def read_trimap_reporting(path):
    """``read_trimap``, its quantisation warning printed as one 'warning: ...' line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        trimap = read_trimap(path)
    for w in caught:
        print(f'warning: {w.message}', file=sys.stderr)
    return trimap


def composite(alpha, fg, bg):
    """I = alpha F + (1 - alpha) B.

    Args:
        alpha: (H, W) or (H, W, 1) in [0, 1].
        fg, bg: (H, W, 3) in [0, 1].
    Returns:
        float32 (H, W, 3) in [0, 1].
    """
    a = alpha[..., None] if alpha.ndim == fg.ndim - 1 else alpha
    return (a * fg + (1.0 - a) * bg).astype(np.float32)


def estimate_foreground(image, alpha):
    """Foreground and background colours from I and alpha (pymatting's ``estimate_foreground_ml``).

    Args:
        image: (H, W, 3) in [0, 1]; alpha: (H, W) in [0, 1].
    Returns:
        (F, B), float32 (H, W, 3) in [0, 1]. Images under 2 pixels a side (which pymatting's
        multi-level solver cannot take) get F = B = I.
    """
    if min(alpha.shape) < 2:
        return image.astype(np.float32), image.astype(np.float32)
    from pymatting import estimate_foreground_ml
    fg, bg = estimate_foreground_ml(image.astype(np.float64), alpha.astype(np.float64),
                                    return_background=True)
    return np.clip(fg, 0, 1).astype(np.float32), np.clip(bg, 0, 1).astype(np.float32)


def to_uint8(x):
    """[0, 1] floats -> uint8 with rounding."""
    return np.clip(np.round(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


def hwc_to_chw(x):
    """(H, W, C) -> (C, H, W); (H, W) -> (1, H, W)."""
    return np.ascontiguousarray(x[None] if x.ndim == 2 else x.transpose(2, 0, 1))


def chw_to_hwc(x):
    """(C, H, W) -> (H, W, C)."""
    return np.ascontiguousarray(x.transpose(1, 2, 0))


def atomic_write(path, write_fn, suffix=None):
    """Write a file under a temporary name in the same folder, then rename it into place.

    Args:
        path: final file name.
        write_fn: called with the temporary path; must create that file.
        suffix: extension for the temporary file (default: the final one), so writers that
            pick a format by extension keep working.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1] if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix=suffix, dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def refuse_overwriting_inputs(outputs, inputs):
    """Raise InputError if any output path is one of the input files (links resolved)."""
    real_inputs = {os.path.realpath(p) for p in inputs if p}
    for path in outputs:
        if os.path.realpath(path) in real_inputs:
            raise InputError(f'{path}: output would overwrite an input file; '
                             'choose another output folder')


def write_png(path, array):
    """Atomically write a uint8 (H, W), (H, W, 3) or (H, W, 4) array as PNG."""
    import skimage.io
    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = to_uint8(array)
    atomic_write(path, lambda tmp: skimage.io.imsave(tmp, array, check_contrast=False))


def list_images(folder):
    """Sorted image file names (png, jpg, jpeg, bmp, tif) in a folder."""
    exts = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(exts) and not f.startswith('.'))


def resize(array, height, width, resample=Image.Resampling.BILINEAR, nearest=False):
    """The project's one resize: (H, W[, C]) float -> (height, width[, C]) float32.

    Pillow's ``resample`` filter, one channel at a time (Pillow's float images have one channel);
    shrinking widens the filter by the scale factor (antialiased). ``nearest``: pick the pixel
    at floor(i * H / height) instead, which keeps label values (trimaps) intact and the dtype.
    """
    if nearest:
        ys = (np.arange(height) * array.shape[0] / height).astype(int)
        xs = (np.arange(width) * array.shape[1] / width).astype(int)
        return array[ys][:, xs]
    planes = array[:, :, None] if array.ndim == 2 else array
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[:, :, c], np.float32))
                               .resize((width, height), resample))
                    for c in range(planes.shape[2])], axis=2)
    return out[:, :, 0] if array.ndim == 2 else out
