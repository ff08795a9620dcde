"""Synthetic matting data: alpha mattes, foregrounds and backgrounds with no downloaded dataset.

Every function takes a numpy ``Generator`` (``rng``; an int seed is accepted too) so the
output is reproducible: the same seed gives the same arrays.

* ``make_alpha``: a solid core shape with a random mix of hair strands, fur fringes, soft or
  motion-blurred edges, translucent veils and holes.
* ``make_foreground``: colourised textures and noise patterns (never the background photos).
* ``background_photos``: the colour photos bundled with scikit-image.
* ``write_composition_dataset``: writes the Adobe-style composition layout
  ``root/fg/NNNN.png``, ``root/alpha/NNNN.png``, ``root/bg/NNNN.png``.

Command line::

    python -m scripts.make_synthetic OUT_DIR --count 12 --size 256 256 --seed 0
"""
import functools
import os

import numpy as np
from scipy import ndimage

from utils.images import write_png

# Smallest and largest sample side the generator accepts.
MIN_SIZE = 32
MAX_SIZE = 4096
# Colour photos bundled with scikit-image (skimage.data loads them without a download).
BACKGROUND_NAMES = ('astronaut', 'coffee', 'chelsea', 'rocket', 'hubble_deep_field',
                    'immunohistochemistry', 'retina')
# Bundled gray textures; colourised, they become foregrounds.
TEXTURE_NAMES = ('grass', 'gravel', 'brick', 'moon', 'coins')


def _check_size(height, width):
    """Raise ValueError unless MIN_SIZE <= height, width <= MAX_SIZE (ints)."""
    for name, v in (('height', height), ('width', width)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise ValueError(f'{name} must be an integer, got {v!r}')
        if not MIN_SIZE <= v <= MAX_SIZE:
            raise ValueError(f'{name} must be between {MIN_SIZE} and {MAX_SIZE}, got {v}')


def _scikit_resize(x, shape):
    """scikit-image's bilinear, anti-aliased resize to (H, W), channels kept: not
    ``utils.images.resize``, so that the synthetic datasets stay what they were (the tests
    built on them, tests/test_fitting.py above all, depend on their exact pixels)."""
    from skimage.transform import resize
    return resize(x, tuple(shape) + x.shape[2:], order=1, mode='reflect',
                  anti_aliasing=(shape[0] < x.shape[0] or shape[1] < x.shape[1])).astype(np.float32)


def _smooth_noise(rng, height, width, scale, channels=None):
    """Low-frequency noise: float32 (H, W) or (H, W, C) in [0, 1], features about `scale` px: a
    coarse random grid through a cubic spline (noise synthesis, not an image resize)."""
    gh = max(2, int(np.ceil(height / scale)) + 1)
    gw = max(2, int(np.ceil(width / scale)) + 1)
    grid = rng.random((gh, gw) if channels is None else (gh, gw, channels))
    from skimage.transform import resize as spline
    out = spline(grid, (height, width) + grid.shape[2:], order=3, mode='reflect')
    lo, hi = out.min(), out.max()
    return ((out - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def _random_colour(rng, saturation=(0.3, 1.0), value=(0.3, 1.0)):
    """One RGB colour, float32 (3,) in [0, 1], drawn in HSV."""
    from skimage.color import hsv2rgb
    hsv = np.array([[[rng.random(), rng.uniform(*saturation), rng.uniform(*value)]]])
    return hsv2rgb(hsv)[0, 0].astype(np.float32)


# ----------------------------------------------------------------------------- alpha: core shape

def _radial_blob(rng, height, width, cy, cx, radius):
    """Bool (H, W) star-shaped blob: radius(theta) is `radius` times a random smooth Fourier wobble."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    theta = np.arctan2(yy - cy, xx - cx)
    r = np.ones_like(theta)
    for k in range(2, 7):
        r += rng.uniform(0.0, 0.3 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(yy - cy, xx - cx) <= radius * r


def _ellipse(rng, height, width, cy, cx, radius):
    """Bool (H, W) rotated ellipse with semi-axes near `radius`."""
    from skimage.draw import ellipse
    mask = np.zeros((height, width), bool)
    rr, cc = ellipse(cy, cx, radius * rng.uniform(0.7, 1.3), radius * rng.uniform(0.7, 1.3),
                     shape=mask.shape, rotation=rng.uniform(0, np.pi))
    mask[rr, cc] = True
    return mask


def _polygon(rng, height, width, cy, cx, radius):
    """Bool (H, W) random polygon (5-11 vertices around the centre, jittered radii)."""
    from skimage.draw import polygon
    n = int(rng.integers(5, 12))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.6, 1.3, n)
    mask = np.zeros((height, width), bool)
    rr, cc = polygon(cy + radii * np.sin(angles), cx + radii * np.cos(angles), shape=mask.shape)
    mask[rr, cc] = True
    return mask


def _bust(rng, height, width, cy, cx, radius):
    """Bool (H, W) portrait silhouette: a head ellipse over shoulders cut by the bottom edge."""
    from skimage.draw import ellipse
    mask = np.zeros((height, width), bool)
    head = radius * rng.uniform(0.55, 0.8)
    hy = height - rng.uniform(1.6, 2.2) * head - 0.35 * height
    hy = max(hy, head)
    rr, cc = ellipse(hy, cx, head * 1.2, head, shape=mask.shape, rotation=rng.uniform(-0.2, 0.2))
    mask[rr, cc] = True
    neck = head * rng.uniform(0.4, 0.6)  # from the chin down to the shoulders
    mask[int(hy):, max(0, int(cx - neck)):int(cx + neck) + 1] = True
    rr, cc = ellipse(height, cx + rng.uniform(-0.1, 0.1) * width, 0.45 * height,
                     rng.uniform(1.6, 2.4) * head, shape=mask.shape)
    mask[rr, cc] = True
    return mask


def make_core(rng, height, width):
    """Solid core shape (blob, ellipse, polygon or portrait bust).

    Returns:
        bool (H, W); redrawn (up to 20 times) until it covers 8-60 % of the image.
    """
    rng = np.random.default_rng(rng)
    shapes = (_radial_blob, _ellipse, _polygon, _bust)
    mask = None
    for _ in range(20):
        shape = shapes[rng.choice(len(shapes), p=[0.35, 0.2, 0.25, 0.2])]
        radius = rng.uniform(0.2, 0.38) * min(height, width)
        cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
        mask = shape(rng, height, width, cy, cx, radius)
        if 0.08 <= mask.mean() <= 0.6:
            break
    return mask


def _punch_holes(rng, core, scale):
    """Cut 1-3 small elliptical holes well inside the core; returns bool (H, W)."""
    from skimage.draw import ellipse
    depth = ndimage.distance_transform_edt(core)
    out = core.copy()
    for _ in range(int(rng.integers(1, 4))):
        r = rng.uniform(3, 12) * scale
        ys, xs = np.nonzero(depth > r + 4 * scale)
        if len(ys) == 0:
            break
        i = rng.integers(len(ys))
        rr, cc = ellipse(ys[i], xs[i], r * rng.uniform(0.5, 1.0), r, shape=core.shape,
                         rotation=rng.uniform(0, np.pi))
        out[rr, cc] = False
    return out


# ----------------------------------------------------------------------------- alpha: edges

def _motion_kernel(rng, length):
    """Normalised float32 line kernel (L, L) at a random angle (a directional blur)."""
    from skimage.draw import line_aa
    size = int(length) | 1
    c = size // 2
    angle = rng.uniform(0, np.pi)
    dy, dx = np.sin(angle) * c, np.cos(angle) * c
    kernel = np.zeros((size, size), np.float32)
    rr, cc, val = line_aa(int(round(c - dy)), int(round(c - dx)), int(round(c + dy)), int(round(c + dx)))
    keep = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
    np.maximum.at(kernel, (rr[keep], cc[keep]), val[keep].astype(np.float32))
    return kernel / kernel.sum()


def soften_edges(rng, core, scale):
    """Turn a bool core into an alpha with sharp, soft, mixed or motion-blurred edges.

    Returns:
        float32 (H, W) in [0, 1].
    """
    x = core.astype(np.float32)
    kind = rng.choice(['sharp', 'soft', 'mixed', 'motion'], p=[0.25, 0.3, 0.25, 0.2])
    sharp = ndimage.gaussian_filter(x, 0.6, mode='nearest')  # anti-aliased edge
    if kind == 'sharp':
        return sharp
    if kind == 'motion':
        kernel = _motion_kernel(rng, rng.uniform(5, 20) * scale)
        return ndimage.convolve(x, kernel, mode='nearest')
    soft = ndimage.gaussian_filter(x, rng.uniform(1.0, 4.0) * scale, mode='nearest')
    if kind == 'soft':
        return soft
    m = _smooth_noise(rng, *core.shape, scale=40 * scale)  # soft here, sharp there
    return m * soft + (1 - m) * sharp


def add_veil(rng, alpha, scale):
    """Composite a translucent veil (opacity 0.3-0.7) over part of the boundary; float32 (H, W)."""
    h, w = alpha.shape
    ys, xs = np.nonzero((alpha > 0.2) & (alpha < 0.8))
    if len(ys) == 0:
        return alpha
    i = rng.integers(len(ys))
    blob = _radial_blob(rng, h, w, ys[i], xs[i], rng.uniform(0.1, 0.25) * min(h, w))
    veil = ndimage.gaussian_filter(blob.astype(np.float32), rng.uniform(1.0, 5.0) * scale)
    veil *= rng.uniform(0.3, 0.7) * (0.75 + 0.25 * _smooth_noise(rng, h, w, scale=20 * scale))
    return alpha + (1 - alpha) * veil


# ----------------------------------------------------------------------------- alpha: strands

def _boundary_points(core):
    """Boundary pixels of a bool core away from the image border, with outward unit normals.

    Returns:
        (points float (N, 2) as (row, col), normals float (N, 2)).
    """
    h, w = core.shape
    edge = core & ~ndimage.binary_erosion(core)
    edge[:3, :] = edge[-3:, :] = False
    edge[:, :3] = edge[:, -3:] = False
    ys, xs = np.nonzero(edge)
    smooth = ndimage.gaussian_filter(core.astype(np.float32), 3.0)
    gy, gx = np.gradient(smooth)
    n = -np.stack([gy[ys, xs], gx[ys, xs]], axis=1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)
    return np.stack([ys, xs], axis=1).astype(np.float64), n


def draw_strands(shape, roots, directions, lengths, curls, opacities, tips, widths):
    """Rasterise anti-aliased cubic Bezier strands.

    Args:
        shape: (H, W).
        roots, directions: float (N, 2) start points and unit directions, as (row, col).
        lengths, curls, opacities, tips: float (N,): length in px, sideways bend (fraction of
            the length), opacity at the root, opacity fraction left at the tip.
        widths: int (N,) 1 or 2 px.
    Returns:
        float32 (H, W) in [0, 1], the maximum over strands.
    """
    from skimage.draw import line_aa
    layer = np.zeros(shape, np.float32)
    rows, cols, vals = [], [], []
    for p0, d, length, curl, op, tip, width in zip(roots, directions, lengths, curls,
                                                    opacities, tips, widths):
        perp = np.array([-d[1], d[0]])
        p1 = p0 + d * length / 3 + perp * curl * length * 0.5
        p2 = p0 + d * 2 * length / 3 + perp * curl * length
        p3 = p0 + d * length + perp * curl * length * 0.6
        n = max(2, int(length / 4))
        t = np.linspace(0, 1, n + 1)[:, None]
        pts = ((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2
               + t ** 3 * p3)
        pts = np.round(pts).astype(int)
        offsets = [(0, 0)] if width == 1 else [(0, 0), (0, 1) if abs(d[0]) > abs(d[1]) else (1, 0)]
        for k in range(n):
            fade = op * (1 - (1 - tip) * (k + 0.5) / n)
            for oy, ox in offsets:
                rr, cc, val = line_aa(pts[k, 0] + oy, pts[k, 1] + ox, pts[k + 1, 0] + oy,
                                      pts[k + 1, 1] + ox)
                rows.append(rr)
                cols.append(cc)
                vals.append(val * fade)
    if rows:
        rr, cc, vv = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        keep = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        np.maximum.at(layer, (rr[keep], cc[keep]), vv[keep].astype(np.float32))
    return np.clip(layer, 0, 1)


def _grow(rng, points, normals, count, length_range, spread, inset, scale):
    """Random strand parameters for `count` strands rooted at `points`; returns draw_strands kwargs."""
    idx = rng.integers(len(points), size=count)
    angle = np.arctan2(normals[idx, 0], normals[idx, 1]) + rng.normal(0, spread, count)
    directions = np.stack([np.sin(angle), np.cos(angle)], axis=1)
    return dict(roots=points[idx] - directions * inset * scale,
                directions=directions,
                lengths=rng.uniform(*length_range, count) * scale + inset * scale,
                curls=rng.normal(0, 0.25, count),
                opacities=rng.uniform(0.35, 1.0, count),
                tips=rng.uniform(0.05, 0.6, count),
                widths=rng.choice([1, 2], size=count, p=[0.7, 0.3]))


def add_hair(rng, alpha, core, scale):
    """Long thin curved strands (1-2 px, partial opacity) growing out of one stretch of the boundary."""
    points, normals = _boundary_points(core)
    if len(points) == 0:
        return alpha
    centre = points[rng.integers(len(points))]
    reach = rng.uniform(0.25, 0.7) * min(core.shape)
    near = np.linalg.norm(points - centre, axis=1) < reach
    count = int(rng.integers(15, 60) * scale)
    strands = _grow(rng, points[near], normals[near], max(count, 5), (12, 60), 0.45, 4, scale)
    layer = draw_strands(core.shape, **strands)
    return alpha + (1 - alpha) * layer


def add_fur(rng, alpha, core, scale):
    """Many short fine strands (a fur fringe) along much of the boundary."""
    points, normals = _boundary_points(core)
    if len(points) == 0:
        return alpha
    centre = points[rng.integers(len(points))]
    reach = rng.uniform(0.4, 1.5) * min(core.shape)
    near = np.linalg.norm(points - centre, axis=1) < reach
    count = int(rng.uniform(0.6, 1.5) * near.sum())
    strands = _grow(rng, points[near], normals[near], max(count, 10), (3, 10), 0.6, 2, scale)
    strands['widths'] = np.ones_like(strands['widths'])
    strands['opacities'] *= 0.8
    layer = draw_strands(core.shape, **strands)
    return alpha + (1 - alpha) * layer


def make_alpha(rng, height, width):
    """A random alpha matte with realistic matting structure.

    A solid core shape, optionally with holes, gets sharp / soft / mixed / motion-blurred edges,
    maybe a translucent veil, and hair strands and/or a fur fringe (always at least one of them,
    so there are thin structures and many fractional values).

    Args:
        rng: numpy Generator (or int seed).
        height, width: ints in [MIN_SIZE, MAX_SIZE].
    Returns:
        float32 (H, W) in [0, 1].
    """
    _check_size(height, width)
    rng = np.random.default_rng(rng)
    scale = np.sqrt(height * width) / 256.0
    core = make_core(rng, height, width)
    if rng.random() < 0.35:
        core = _punch_holes(rng, core, scale)
    alpha = soften_edges(rng, core, scale)
    if rng.random() < 0.35:
        alpha = add_veil(rng, alpha, scale)
    hair, fur = rng.random() < 0.7, rng.random() < 0.6
    if not (hair or fur):
        hair, fur = (True, False) if rng.random() < 0.5 else (False, True)
    if fur:
        alpha = add_fur(rng, alpha, core, scale)
    if hair:
        alpha = add_hair(rng, alpha, core, scale)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- colours

@functools.lru_cache(maxsize=None)
def _load_photo(name):
    """A bundled skimage.data image as read-only float32 in [0, 1] ((H, W, 3), or (H, W) if gray)."""
    import skimage.data
    x = np.asarray(getattr(skimage.data, name)())
    x = (x[..., :3] if x.ndim == 3 else x).astype(np.float32) / 255.0
    x.setflags(write=False)
    return x


def background_photos():
    """The colour photos bundled with scikit-image (no download).

    Returns:
        list of read-only float32 arrays (H, W, 3) in [0, 1] (sizes differ).
    """
    return [_load_photo(name) for name in BACKGROUND_NAMES]


def _random_crop(rng, photo, height, width, min_fraction=0.4):
    """A random crop of `photo` with the aspect of (height, width), resized to it and maybe flipped."""
    ph, pw = photo.shape[:2]
    fit = min(ph / height, pw / width)  # largest crop with the target aspect
    f = fit * rng.uniform(min_fraction, 1.0)
    ch, cw = max(2, min(ph, int(round(height * f)))), max(2, min(pw, int(round(width * f))))
    y, x = rng.integers(ph - ch + 1), rng.integers(pw - cw + 1)
    out = _scikit_resize(np.asarray(photo[y:y + ch, x:x + cw]), (height, width))
    return out[:, ::-1] if rng.random() < 0.5 else out


def make_background(rng, height, width, photos=None):
    """A background: random crop of a bundled photo, resized, flipped and colour jittered.

    Returns:
        float32 (H, W, 3) in [0, 1].
    """
    _check_size(height, width)
    rng = np.random.default_rng(rng)
    photos = background_photos() if photos is None else photos
    x = _random_crop(rng, photos[rng.integers(len(photos))], height, width)
    x = x * rng.uniform(0.8, 1.2, 3) + rng.uniform(-0.05, 0.05)
    return np.clip(x, 0, 1).astype(np.float32)


def _colourise(gray, colours):
    """Map gray (H, W) in [0, 1] through a piecewise-linear gradient of colours (K, 3)."""
    k = len(colours) - 1
    pos = np.clip(gray, 0, 1) * k
    i = np.minimum(pos.astype(int), k - 1)
    t = (pos - i)[..., None]
    return (1 - t) * colours[i] + t * colours[i + 1]


def make_foreground(rng, height, width):
    """A textured foreground colour image, distinct from the photo backgrounds.

    One of: a colourised bundled gray texture (grass, gravel, brick, ...), multi-scale colour
    noise, or warped stripes; then smooth shading and fine grain.

    Returns:
        float32 (H, W, 3) in [0, 1].
    """
    _check_size(height, width)
    rng = np.random.default_rng(rng)
    scale = np.sqrt(height * width) / 256.0
    kind = rng.choice(['texture', 'noise', 'stripes'], p=[0.45, 0.3, 0.25])
    colours = np.stack([_random_colour(rng) for _ in range(int(rng.integers(2, 4)))])
    if kind == 'texture':
        tex = _load_photo(TEXTURE_NAMES[rng.integers(len(TEXTURE_NAMES))])
        gray = _random_crop(rng, tex, height, width, min_fraction=0.25)
        gray = (gray - gray.mean()) / max(gray.std(), 1e-3) * rng.uniform(0.15, 0.3) + 0.5
        x = _colourise(gray, colours)
    elif kind == 'noise':
        x = np.zeros((height, width, 3), np.float32) + colours[0]
        for feature in (60, 20, 6):
            x += rng.uniform(0.1, 0.35) * (_smooth_noise(rng, height, width, feature * scale, 3) - 0.5)
    else:
        yy, xx = np.mgrid[:height, :width].astype(np.float32)
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 30) * scale
        warp = 8 * scale * _smooth_noise(rng, height, width, 50 * scale)
        phase = (xx * np.cos(angle) + yy * np.sin(angle) + warp) * 2 * np.pi / period
        x = _colourise(0.5 + 0.5 * np.sin(phase), colours)
    shading = 0.7 + 0.5 * _smooth_noise(rng, height, width, 80 * scale)
    x = x * shading[..., None] + rng.normal(0, 0.02, (height, width, 3))
    return np.clip(x, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- dataset

def write_composition_dataset(root, count, rng, size=(256, 256), n_backgrounds=None):
    """Write a synthetic dataset in the Adobe composition layout.

    Writes ``root/fg/NNNN.png`` (RGB) and ``root/alpha/NNNN.png`` (gray) for ``count`` samples
    of ``size``, and ``root/bg/NNNN.png`` (RGB): ``n_backgrounds`` (default ``count``) random
    crops of the bundled photos, each 1-1.5 times the foreground size on each side. Prints nothing.

    Args:
        root: output folder (created if missing; files of the same names are replaced).
        count: number of foreground / alpha pairs, >= 1.
        rng: numpy Generator (or int seed).
        size: (height, width) of the foregrounds.
        n_backgrounds: number of backgrounds, >= 1.
    Returns:
        root.
    """
    if len(size) != 2:
        raise ValueError(f'size must be (height, width), got {size!r}')
    height, width = size
    _check_size(height, width)
    n_backgrounds = count if n_backgrounds is None else n_backgrounds
    for name, v in (('count', count), ('n_backgrounds', n_backgrounds)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f'{name} must be a positive integer, got {v!r}')
    rng = np.random.default_rng(rng)
    digits = max(4, len(str(max(count, n_backgrounds) - 1)))
    for sub in ('fg', 'alpha', 'bg'):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for i in range(count):
        name = f'{i:0{digits}d}.png'
        write_png(os.path.join(root, 'alpha', name), make_alpha(rng, height, width))
        write_png(os.path.join(root, 'fg', name), make_foreground(rng, height, width))
    photos = background_photos()
    for i in range(n_backgrounds):
        s = rng.uniform(1.0, 1.5)
        bg = make_background(rng, int(np.ceil(height * s)), int(np.ceil(width * s)), photos)
        write_png(os.path.join(root, 'bg', f'{i:0{digits}d}.png'), bg)
    return root
