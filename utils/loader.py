"""Datasets and augmentation for training (Chainer datasets).

Two dataset layouts:

* **seed layout** (``make_seed_dataset``): ``ROOT/input/*.png`` images, ``ROOT/gt/*.png`` alpha
  mattes and ``ROOT/trimap/<set>/*.png`` trimaps with the same file names. ``image/``, ``alpha/``
  and top-level ``trimap*/`` folders are accepted too (the alphamatting.com naming). Each image
  is used with each of its trimaps; F and B, needed by the compositional loss, are estimated
  from I and alpha with pymatting's ``estimate_foreground_ml``. With ``bg_dir`` the estimated
  foregrounds are also re-composited over new backgrounds (``make_recomposited_dataset``).
* **composition layout** (``make_composition_dataset``, Adobe's): ``ROOT/fg/``, ``ROOT/alpha/``
  and a background folder (``ROOT/bg/``, or ``bg_dir`` where that is absent); each foreground is
  composited with ``backgrounds_per_fg`` backgrounds as in the paper's code: the background is
  scaled up (bicubic, Pillow's) where smaller than the foreground, cropped to its size,
  I = alpha F + (1 - alpha) B.

Raw examples are dicts of full-size float32 HWC arrays: image, alpha (H, W), fg, bg and
``trimap`` (uint8 {0, 128, 255} or None). ``MattingTransform`` turns one into a training
example, as the paper augments: a trimap from the ground truth by random dilation and erosion of
its unknown band, a 320/480/640 crop centred on an unknown pixel resized to ``size``, a random
horizontal flip. The training example is a tuple of float32 CHW arrays
``(image (3,S,S) in [0,1], trimap (1,S,S) in {0, 128/255, 1}, alpha (1,S,S) in [0,1],
fg (3,S,S), bg (3,S,S))``, the argument list of ``nnet.loss.MattingLoss``.
"""
import functools
import os

import chainer
import numpy as np
from PIL import Image

from utils.trimap import erode_to_trimap
from utils.utils import (UNKNOWN, InputError, composite, estimate_foreground, hwc_to_chw,
                         list_images, read_alpha, read_image, read_trimap)

CROP_SIZES = (320, 480, 640)


# --------------------------------------------------------------------------- raw datasets
def _find_dir(root, *names):
    for name in names:
        path = os.path.join(root, name)
        if os.path.isdir(path):
            return path
    raise InputError(f'{root}: no {" or ".join(n + "/" for n in names)} folder')


def find_trimap_sets(root):
    """{set name: folder} for ``root/trimap/<set>/`` or top-level ``root/trimap*/`` folders."""
    nested = os.path.join(root, 'trimap')
    if os.path.isdir(nested) and not list_images(nested):
        sets = {d: os.path.join(nested, d) for d in sorted(os.listdir(nested))
                if os.path.isdir(os.path.join(nested, d))}
    else:
        sets = {d: os.path.join(root, d) for d in sorted(os.listdir(root))
                if d.startswith('trimap') and os.path.isdir(os.path.join(root, d))}
    return sets


def seed_layout_files(root, trimap_sets=None, names=None, exclude=()):
    """List (name, image path, alpha path, trimap set, trimap path) of a seed-layout dataset.

    Args:
        root: dataset folder.
        trimap_sets: trimap set names to use (default: all).
        names: image file names or stems to keep (default: all).
        exclude: image file names or stems to leave out.
    Raises:
        InputError: missing folders, an image without alpha or trimap, no images at all.
    """
    if not os.path.isdir(root):
        raise InputError(f'{root}: dataset folder not found')
    image_dir = _find_dir(root, 'input', 'image')
    alpha_dir = _find_dir(root, 'gt', 'alpha')
    sets = find_trimap_sets(root)
    if not sets:
        raise InputError(f'{root}: no trimap/<set>/ or trimap*/ folders')
    if trimap_sets:
        unknown = [s for s in trimap_sets if s not in sets]
        if unknown:
            raise InputError(f'{root}: no trimap set {unknown[0]} (have: {", ".join(sets)})')
        sets = {s: sets[s] for s in trimap_sets}
    files = list_images(image_dir)
    if names:
        keep = set(names)
        files = [f for f in files if f in keep or os.path.splitext(f)[0] in keep]
    drop = set(exclude or ())
    files = [f for f in files if f not in drop and os.path.splitext(f)[0] not in drop]
    if not files:
        raise InputError(f'{image_dir}: no images' + (' with the requested names' if names else ''))
    out = []
    for f in files:
        alpha = os.path.join(alpha_dir, f)
        if not os.path.isfile(alpha):
            raise InputError(f'{alpha}: ground-truth alpha missing for {f}')
        for set_name, folder in sets.items():
            trimap = os.path.join(folder, f)
            if not os.path.isfile(trimap):
                raise InputError(f'{trimap}: trimap missing for {f}')
            out.append((f, os.path.join(image_dir, f), alpha, set_name, trimap))
    return out


@functools.lru_cache(maxsize=None)
def _estimated_fg_bg(image_path, alpha_path):
    """(image, alpha, F, B) with F and B estimated by pymatting (cached: it takes ~1 s)."""
    image, alpha = read_image(image_path), read_alpha(alpha_path)
    if image.shape[:2] != alpha.shape:
        raise InputError(f'{alpha_path}: size {alpha.shape} differs from image {image.shape[:2]}')
    return (image, alpha) + estimate_foreground(image, alpha)


def _estimated_fg_alpha(image_path, alpha_path):
    _, alpha, fg, _ = _estimated_fg_bg(image_path, alpha_path)
    return fg, alpha


class SeedLayoutDataset(chainer.dataset.DatasetMixin):
    """Images with their ground truth and given trimaps (seed layout); one example per trimap.

    Example: dict image (H,W,3), alpha (H,W), fg (H,W,3), bg (H,W,3) float32 in [0,1] and
    trimap (H,W) uint8 {0,128,255}; fg and bg estimated from image and alpha.
    """

    def __init__(self, root, trimap_sets=None, names=None, exclude=()):
        self.files = seed_layout_files(root, trimap_sets, names, exclude)

    def __len__(self):
        return len(self.files)

    def get_example(self, i):
        name, image_path, alpha_path, _, trimap_path = self.files[i]
        image, alpha, fg, bg = _estimated_fg_bg(image_path, alpha_path)
        trimap = read_trimap(trimap_path, warn=False)
        if trimap.shape != alpha.shape:
            raise InputError(f'{trimap_path}: size {trimap.shape} differs from image {alpha.shape}')
        return {'name': name, 'image': image, 'alpha': alpha, 'fg': fg, 'bg': bg, 'trimap': trimap}


def _resize(array, height, width, resample):
    """(H, W[, C]) float32 -> (height, width[, C]) float32 by Pillow's ``resample`` filter, one
    channel at a time (Pillow's float32 images have one channel). Downscaling widens the filter
    by the scale factor (antialiased)."""
    planes = array[:, :, None] if array.ndim == 2 else array
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[:, :, c], np.float32))
                               .resize((width, height), resample))
                    for c in range(planes.shape[2])], axis=2)
    return out[:, :, 0] if array.ndim == 2 else out


def fit_background(bg, height, width):
    """Scale a background (H, W, C) float32 in [0, 1] up where smaller than (height, width), then
    crop its top-left (height, width).

    The scaling is bicubic (Pillow's, Keys' a = -0.5), clipped to [0, 1]: about 60x faster than
    scikit-image's order-3 spline, whose upscale of a 500x375 background to a 1620x1080 portrait
    took most of the time the training loader spent on an example.
    """
    h, w = bg.shape[:2]
    scale = max(height / h, width / w)
    if scale > 1:
        bg = _resize(bg, int(np.ceil(h * scale)), int(np.ceil(w * scale)),
                     Image.Resampling.BICUBIC)
        bg = np.clip(bg, 0, 1)
    return bg[:height, :width]


class CompositionDataset(chainer.dataset.DatasetMixin):
    """Foregrounds composited over backgrounds: I = alpha F + (1 - alpha) B.

    Args:
        foregrounds: list of (name, loader) where loader() -> (fg (H,W,3), alpha (H,W)).
        background_paths: background image files.
        backgrounds_per_fg: N, backgrounds per foreground (example count = N x foregrounds).
        seed: picks which backgrounds go with which foreground (fixed for the dataset).
    Example: dict image, alpha, fg, bg (full size, float32 [0,1]) and trimap None.
    """

    def __init__(self, foregrounds, background_paths, backgrounds_per_fg=1, seed=0):
        if not foregrounds:
            raise InputError('no foregrounds to composite')
        if not background_paths:
            raise InputError('no background images to composite over')
        self.foregrounds = foregrounds
        self.background_paths = background_paths
        self.per_fg = int(backgrounds_per_fg)
        order = np.random.default_rng(seed).permutation(
            max(len(background_paths), len(foregrounds) * self.per_fg))
        self.bg_index = order % len(background_paths)

    def __len__(self):
        return len(self.foregrounds) * self.per_fg

    def get_example(self, i):
        name, load = self.foregrounds[i // self.per_fg]
        fg, alpha = load()
        bg = read_image(self.background_paths[self.bg_index[i % len(self.bg_index)]])
        bg = fit_background(bg, *alpha.shape)
        return {'name': name, 'image': composite(alpha, fg, bg), 'alpha': alpha,
                'fg': fg, 'bg': bg, 'trimap': None}


def _read_fg_alpha(fg_path, alpha_path):
    fg, alpha = read_image(fg_path), read_alpha(alpha_path)
    if fg.shape[:2] != alpha.shape:
        raise InputError(f'{alpha_path}: size {alpha.shape} differs from foreground {fg.shape[:2]}')
    return fg, alpha


def make_composition_dataset(root, bg_dir=None, backgrounds_per_fg=1, seed=0):
    """A ``CompositionDataset`` of the composition layout (fg/, alpha/, and bg/ or ``bg_dir``)."""
    fg_dir, alpha_dir = _find_dir(root, 'fg'), _find_dir(root, 'alpha')
    if os.path.isdir(os.path.join(root, 'bg')) or not bg_dir:
        bg_dir = _find_dir(root, 'bg')
    foregrounds = []
    for f in list_images(fg_dir):
        alpha = os.path.join(alpha_dir, f)
        if not os.path.isfile(alpha):
            raise InputError(f'{alpha}: alpha missing for foreground {f}')
        foregrounds.append((f, functools.partial(_read_fg_alpha, os.path.join(fg_dir, f), alpha)))
    backgrounds = [os.path.join(bg_dir, f) for f in list_images(bg_dir)]
    return CompositionDataset(foregrounds, backgrounds, backgrounds_per_fg, seed)


def make_recomposited_dataset(root, bg_dir, backgrounds_per_fg=1, names=None, exclude=(), seed=0):
    """Seed-layout images' estimated foregrounds composited over the images in ``bg_dir``."""
    files = {f[0]: f for f in seed_layout_files(root, names=names, exclude=exclude)}
    foregrounds = [(name, functools.partial(_estimated_fg_alpha, image_path, alpha_path))
                   for name, image_path, alpha_path, _, _ in files.values()]
    backgrounds = [os.path.join(bg_dir, f) for f in list_images(bg_dir)]
    return CompositionDataset(foregrounds, backgrounds, backgrounds_per_fg, seed)


def make_dataset(root, bg_dir=None, backgrounds_per_fg=1, trimap_sets=None, names=None,
                 exclude=(), seed=0):
    """The raw dataset of ``root``, whichever layout it has (see the module docstring).

    ``names`` / ``exclude`` select images of a seed-layout dataset by file name or stem.
    """
    if not os.path.isdir(root):
        raise InputError(f'{root}: dataset folder not found')
    if os.path.isdir(os.path.join(root, 'fg')):
        return make_composition_dataset(root, bg_dir, backgrounds_per_fg, seed)
    originals = SeedLayoutDataset(root, trimap_sets, names, exclude)
    if not bg_dir:
        return originals
    return chainer.datasets.ConcatenatedDataset(
        originals, make_recomposited_dataset(root, bg_dir, backgrounds_per_fg, names, exclude, seed))


# --------------------------------------------------------------------------- augmentation
def generate_trimap(alpha, rng, kernel_range):
    """Trimap from a ground-truth alpha by random dilation and erosion of its unknown band.

    The definite foreground (alpha = 1) and background (alpha = 0) are each eroded by a random
    radius drawn from ``kernel_range`` (pixels, inclusive; foreground first); what remains is
    unknown (``utils.trimap.erode_to_trimap``).

    Returns:
        uint8 (H, W) in {0, 128, 255}.
    """
    low, high = kernel_range
    fg_radius = rng.integers(low, high + 1)
    bg_radius = rng.integers(low, high + 1)
    return erode_to_trimap(alpha, fg_radius, bg_radius)


def crop_around_unknown(arrays, unknown, crop, rng):
    """Crop ``crop`` x ``crop`` windows around a random unknown pixel.

    The window is centred on that pixel, then shifted to lie inside the image where the image is
    large enough (so the pixel stays inside but not always central); sides smaller than the
    crop are padded with zeros.

    Args:
        arrays: list of (H, W[, C]) arrays of the same H, W.
        unknown: (H, W) bool, candidate centres (all pixels when empty).
    Returns:
        list of (crop, crop[, C]) arrays.
    """
    h, w = unknown.shape
    ys, xs = np.nonzero(unknown)
    if len(ys):
        k = rng.integers(len(ys))
        cy, cx = ys[k], xs[k]
    else:
        cy, cx = rng.integers(h), rng.integers(w)
    top = min(max(cy - crop // 2, 0), h - crop) if h >= crop else cy - crop // 2
    left = min(max(cx - crop // 2, 0), w - crop) if w >= crop else cx - crop // 2
    out = []
    for a in arrays:
        window = np.zeros((crop, crop) + a.shape[2:], a.dtype)
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + crop, h), min(left + crop, w)
        window[y0 - top:y1 - top, x0 - left:x1 - left] = a[y0:y1, x0:x1]
        out.append(window)
    return out


def resize_to(array, size, nearest=False):
    """Resize (H, W[, C]) to (size, size): bilinear (Pillow's; antialiased when shrinking), or
    nearest neighbour, which keeps trimap values intact."""
    if array.shape[0] == size and array.shape[1] == size:
        return array
    if nearest:
        ys = (np.arange(size) * array.shape[0] / size).astype(int)
        xs = (np.arange(size) * array.shape[1] / size).astype(int)
        return array[ys][:, xs]
    return _resize(array, size, size, Image.Resampling.BILINEAR).astype(array.dtype, copy=False)


class MattingTransform:
    """Raw example -> training example (see the module docstring), its randomness drawn from a key.

    Every call seeds its own generator from (seed, *key), so an augmentation is a function of the
    example and its key alone: the same in whichever process, thread or MPI rank computes it, in
    whatever order (``AugmentedDataset`` keys training examples by (epoch, index): a new
    augmentation every epoch; validation by (index,): the same crop every time).

    Args:
        size: output side S (320 in the paper).
        crop_sizes: crop sides to choose from before resizing to S.
        kernel_range: (min, max) erosion radius in pixels for trimap generation, at output scale.
        generate_trimaps: make trimaps from alpha (else use the dataset's trimap, which must exist).
        flip: random horizontal flips.
        seed: base seed (non-negative int).
    """

    def __init__(self, size=320, crop_sizes=CROP_SIZES, kernel_range=(3, 20),
                 generate_trimaps=True, flip=True, seed=0):
        self.size, self.crop_sizes, self.kernel_range = size, tuple(crop_sizes), kernel_range
        self.generate_trimaps, self.flip = generate_trimaps, flip
        self.seed = int(seed)

    def __call__(self, example, key=(0,)):
        """``example``: a raw example; ``key``: tuple of non-negative ints seeding this call."""
        rng = np.random.default_rng([self.seed, *key])
        alpha = example['alpha']
        trimap = example['trimap']
        if not self.generate_trimaps and trimap is None:
            raise InputError(f'{example["name"]}: no trimap given and trimap generation is off')
        use_given = not self.generate_trimaps
        band = (trimap == UNKNOWN) if use_given else (alpha > 0) & (alpha < 1)
        crop = int(rng.choice(self.crop_sizes))
        crop = max(min(crop, *alpha.shape), min(self.size, crop))  # no larger than the image
        arrays = [example['fg'], example['bg'], alpha[:, :, None], example['image']]
        if use_given:
            arrays.append(trimap[:, :, None])
        cropped = crop_around_unknown(arrays, band, crop, rng)
        fg, bg, a = (resize_to(x, self.size) for x in cropped[:3])
        a = np.clip(a[:, :, 0], 0, 1)
        if example.get('trimap') is None:  # composited: keep I = alpha F + (1 - alpha) B exact
            image = composite(a, fg, bg)
        else:
            image = np.clip(resize_to(cropped[3], self.size), 0, 1)
        if use_given:
            t = resize_to(cropped[4][:, :, 0], self.size, nearest=True)
        else:
            t = generate_trimap(a, rng, self.kernel_range)
        if self.flip and rng.random() < 0.5:
            image, t, a, fg, bg = (x[:, ::-1] for x in (image, t, a, fg, bg))
        return (hwc_to_chw(image.astype(np.float32)),
                hwc_to_chw((t.astype(np.float32) / 255.0)),
                hwc_to_chw(a.astype(np.float32)),
                hwc_to_chw(fg.astype(np.float32)),
                hwc_to_chw(bg.astype(np.float32)))


class AugmentedDataset(chainer.dataset.DatasetMixin):
    """A raw dataset of N examples seen through a ``MattingTransform``, one augmentation per epoch.

    Index ``k = epoch * N + i`` is example i as augmented in that epoch (key (epoch, i)); indices
    below N are epoch 0. Training iterates over epochs 1, 2, ... (``utils.iterators``); validation
    reads epoch 0, the same crops every time. ``len`` is N.
    """

    def __init__(self, raw, transform):
        self.raw, self.transform = raw, transform

    def __len__(self):
        return len(self.raw)

    def get_example(self, k):
        epoch, i = divmod(int(k), len(self.raw))
        return self.transform(self.raw[i], key=(epoch, i))
