"""Augmentation of foregrounds before compositing, one small step per function.

In the manner of GCA-Matting's data generator: a foreground and its alpha are cut around an
unknown pixel and warped together (random rotation, scale, shear and flip), the foreground's
colours are jittered (hue, saturation, value), two foregrounds may be layered into one, and the
result is composited over a window of a background photograph drawn afresh for every example.
Every step takes a NumPy ``Generator``, so an example is a function of its seed alone
(``utils.loader.MattingTransform`` seeds one per example).

Conventions: fg and bg (H, W, 3) float32 RGB in [0, 1], alpha (H, W) float32 in [0, 1].
"""
import numpy as np
from PIL import Image

from utils.images import resize

AUGMENTATIONS = ('affine', 'jitter', 'layer')  # the steps utils.loader.MattingTransform applies

# GCA-Matting's defaults: rotation up to 30 degrees, scale 0.8-1.25, shear up to 10 degrees
DEGREES = 30.0
SCALES = (0.8, 1.25)
SHEAR = 10.0
# The window cut around the centre before warping: enough for any rotation and scale above
# (sqrt(2) * 1.25 < 1.8) so that the warped crop never samples outside it.
WINDOW_MARGIN = 1.8


def window(array, cy, cx, side):
    """The (side, side[, C]) window of ``array`` centred on (cy, cx); zeros outside the array."""
    h, w = array.shape[:2]
    top, left = cy - side // 2, cx - side // 2
    out = np.zeros((side, side) + array.shape[2:], array.dtype)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + side, h), min(left + side, w)
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = array[y0:y1, x0:x1]
    return out


def random_affine(rng, degrees=DEGREES, scales=SCALES, shear=SHEAR, flip=True):
    """A random 2x2 linear map (rotation, scale, shear, horizontal flip), output -> input.

    Returns:
        float64 (2, 2): an output offset d from the crop's centre samples the input at M d.
    """
    angle = np.deg2rad(rng.uniform(-degrees, degrees))
    scale = np.exp(rng.uniform(np.log(scales[0]), np.log(scales[1])))
    shear_angle = np.deg2rad(rng.uniform(-shear, shear))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shearing = np.array([[1.0, 0.0], [np.tan(shear_angle), 1.0]])
    mirror = np.diag([1.0, -1.0 if flip and rng.random() < 0.5 else 1.0])  # (y, x): flips x
    return rotation @ shearing @ mirror / scale


def warp_crop(planes, linear, size):
    """Sample a (size, size) crop from the centre of each window under ``linear``.

    Args:
        planes: list of (S, S) float32 windows, all the same size, their centre the crop's centre.
        linear: (2, 2) output -> input map in (y, x) order (``random_affine``).
        size: output side.
    Returns:
        list of (size, size) float32 crops (bilinear; zeros outside the windows).
    """
    side = planes[0].shape[0]
    c_in, c_out = (side - 1) / 2.0, (size - 1) / 2.0
    # Pillow's AFFINE data maps output (x, y) to input (a x + b y + c, d x + e y + f)
    (m_yy, m_yx), (m_xy, m_xx) = linear
    offset_x = c_in - (m_xx * c_out + m_xy * c_out)
    offset_y = c_in - (m_yx * c_out + m_yy * c_out)
    data = (m_xx, m_xy, offset_x, m_yx, m_yy, offset_y)
    return [np.asarray(Image.fromarray(np.ascontiguousarray(p, np.float32)).transform(
        (size, size), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR)) for p in planes]


def cut_foreground(fg, alpha, centre, crop, size, rng, affine=True, flip=True):
    """Foreground and alpha around ``centre``, a ``crop``-pixel square brought to ``size``.

    The window is shrunk (antialiased) to the output's scale first, then warped by a random
    affine map about its centre (``random_affine``; without ``affine``, only a random flip,
    and without ``flip`` not that either).

    Args:
        fg: (H, W, 3), alpha: (H, W); centre: (y, x) pixel; crop: side in input pixels.
    Returns:
        (fg (size, size, 3), alpha (size, size)) float32 in [0, 1].
    """
    linear = (random_affine(rng, flip=flip) if affine
              else random_affine(rng, 0.0, (1.0, 1.0), 0.0, flip=flip))
    side = 2 * int(np.ceil(crop * WINDOW_MARGIN / 2))  # even sides: an even crop without a
    out_side = 2 * int(np.ceil(size * WINDOW_MARGIN / 2))  # warp is an exact slice
    stacked = window(np.concatenate([fg, alpha[:, :, None]], axis=2), *centre, side)
    if side != out_side:
        stacked = resize(stacked, out_side, out_side)
    planes = warp_crop([stacked[:, :, c] for c in range(4)], linear, size)
    out = np.clip(np.stack(planes, axis=2), 0.0, 1.0)
    return out[:, :, :3], out[:, :, 3]


def jitter_colour(fg, alpha, rng, hue=40.0 / 360.0, strength=0.2):
    """Random hue shift and saturation / value changes of a foreground (GCA-Matting's jitter).

    Hue moves by up to ``hue`` (a fraction of the colour circle); saturation and value move by
    up to ``strength`` x (1.1 - their mean over the foreground) / 2 either way, mirrored at 0
    and 1 so that they stay in range.

    Returns:
        fg (H, W, 3) float32 in [0, 1]; alpha is only read.
    """
    from skimage.color import hsv2rgb, rgb2hsv
    hsv = rgb2hsv(fg)
    hsv[:, :, 0] = np.mod(hsv[:, :, 0] + rng.uniform(-hue, hue), 1.0)
    inside = alpha > 0
    for c in (1, 2):
        channel = hsv[:, :, c]
        mean = float(channel[inside].mean()) if inside.any() else 0.5
        shift = (rng.random() - 0.5) * strength * (1.1 - mean)
        channel = np.abs(channel + shift)
        hsv[:, :, c] = np.where(channel > 1.0, 2.0 - channel, channel)
    return np.clip(hsv2rgb(hsv), 0.0, 1.0).astype(np.float32)


def layer_foregrounds(fg1, alpha1, fg2, alpha2):
    """Foreground 1 in front of foreground 2, as one foreground.

    I = a1 F1 + (1 - a1) (a2 F2 + (1 - a2) B) = a F + (1 - a) B with
    a = 1 - (1 - a1)(1 - a2) and F = (a1 F1 + (1 - a1) a2 F2) / a (F1 where a = 0).

    Returns:
        (fg (H, W, 3), alpha (H, W)) float32 in [0, 1].
    """
    alpha = 1.0 - (1.0 - alpha1) * (1.0 - alpha2)
    premultiplied = alpha1[:, :, None] * fg1 + ((1.0 - alpha1) * alpha2)[:, :, None] * fg2
    safe = np.maximum(alpha, 1e-6)[:, :, None]
    fg = np.where(alpha[:, :, None] > 0, premultiplied / safe, fg1)
    return np.clip(fg, 0.0, 1.0).astype(np.float32), alpha.astype(np.float32)


def background_window(bg, fg_shape, crop, size, rng):
    """A random ``crop``-pixel window of a background, at the foreground's pixel scale, as
    (size, size, 3).

    As the paper composites: a background smaller than the foreground image (``fg_shape``) is
    scaled up to cover it; the window then lies anywhere in it (shrunk windows antialiased,
    enlarged ones bicubic).
    """
    h, w = bg.shape[:2]
    cover = max(1.0, fg_shape[0] / h, fg_shape[1] / w)
    side = max(1, min(h, w, int(round(crop / cover))))
    top, left = rng.integers(h - side + 1), rng.integers(w - side + 1)
    patch = bg[top:top + side, left:left + side]
    resample = Image.Resampling.BICUBIC if side < size else Image.Resampling.BILINEAR
    return np.clip(resize(patch, size, size, resample), 0.0, 1.0)
