"""Datasets and augmentation for training (Chainer datasets).

Three dataset layouts (``layout``):

* **seed layout** (``SeedLayoutDataset``): ``ROOT/input/*.png`` images, ``ROOT/gt/*.png`` alpha
  mattes and ``ROOT/trimap/<set>/*.png`` trimaps with the same file names. ``image/``, ``alpha/``
  and top-level ``trimap*/`` folders are accepted too (the alphamatting.com naming). Each image
  is used with each of its trimaps; F and B, needed by the compositional loss, are estimated
  from I and alpha with pymatting's ``estimate_foreground_ml``.
* **stem layout** (``StemLayoutDataset``, Adobe's naming): ``ROOT/image/`` and ``ROOT/alpha/``
  paired by file stem (``x.jpg`` with ``x.png``), optionally ``ROOT/fg/`` (foreground colours;
  estimated where absent); no trimaps.
* **composition layout** (``make_composition_dataset``, Adobe's): ``ROOT/fg/``, ``ROOT/alpha/``
  and a background folder (``bg_dir``, else ``ROOT/bg/``).

Raw examples are dicts of full-size float32 HWC arrays. A *photograph* has image, alpha (H, W),
fg, bg and ``trimap`` (uint8 {0, 128, 255}, or None: made from the alpha). A *foreground*
(``ForegroundDataset``: every composition-layout example, and with ``bg_dir`` each photograph's
foreground once more) has fg, alpha, image None and the background paths; it is composited
I = alpha F + (1 - alpha) B over a background drawn afresh for every example.

``MattingTransform`` turns a raw example into a training example. As the paper augments: a trimap
from the ground truth by random dilation and erosion of its unknown band, a 320/480/640 crop
centred on an unknown pixel resized to ``size``, a random horizontal flip. Foregrounds also get,
in the manner of GCA-Matting (``utils.data.augment``): a random affine warp, colour jitter and, half
of the time, a second foreground layered behind them. The training example is a tuple of float32
CHW arrays ``(image (3,S,S) in [0,1], trimap (1,S,S) in {0, 128/255, 1}, alpha (1,S,S) in [0,1],
fg (3,S,S), bg (3,S,S))``, an ``Example``: the argument list of ``nnet.loss.MattingLoss``.
"""
import collections
import functools
import os

import chainer
import numpy as np
from PIL import Image

from utils.data.augment import (
    AUGMENTATIONS,
    background_window,
    cut_foreground,
    jitter_colour,
    layer_foregrounds,
    window,
)
from utils.data.trimap import erode_to_trimap
from utils.errors import InputError
from utils.images import (
    UNKNOWN,
    composite,
    estimate_foreground,
    hwc_to_chw,
    list_images,
    read_alpha,
    read_image,
    read_trimap,
    resize,
)

CROP_SIZES = (320, 480, 640)
# A training example: float32 CHW arrays of side S (see the module's docstring).
Example = collections.namedtuple('Example', 'image trimap alpha fg bg')
# One matte of a seed-layout dataset: the image's file name, the paths of its files, its trimap set.
SeedFile = collections.namedtuple('SeedFile', 'name image alpha trimap_set trimap')
LAYER_PROBABILITY = 0.5  # GCA-Matting's: a second foreground behind half of the examples


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
    """List the ``SeedFile`` (name, image path, alpha path, trimap set, trimap path) of each
    image and trimap set of a seed-layout dataset.

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
            out.append(SeedFile(f, os.path.join(image_dir, f), alpha, set_name, trimap))
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


def fit_background(bg, height, width):
    """Scale a background (H, W, C) float32 in [0, 1] up where smaller than (height, width), then
    crop its top-left (height, width).

    The scaling is bicubic (Pillow's, Keys' a = -0.5), clipped to [0, 1]: about 60x faster than
    scikit-image's order-3 spline.
    """
    h, w = bg.shape[:2]
    scale = max(height / h, width / w)
    if scale > 1:
        bg = resize(bg, int(np.ceil(h * scale)), int(np.ceil(w * scale)), Image.Resampling.BICUBIC)
        bg = np.clip(bg, 0, 1)
    return bg[:height, :width]


def stem_layout_files(root, exclude=()):
    """List (name, image path, alpha path, fg path or None) of a stem-layout dataset.

    Stem layout: ``ROOT/image/`` and ``ROOT/alpha/`` (and optionally ``ROOT/fg/``, the
    foreground colours) pair files by stem, as Adobe's release does (``x.jpg`` with ``x.png``).
    """
    image_dir, alpha_dir = _find_dir(root, 'image', 'input'), _find_dir(root, 'alpha', 'gt')
    fg_dir = os.path.join(root, 'fg')
    by_stem = {}
    for folder in (alpha_dir, fg_dir):
        by_stem[folder] = ({os.path.splitext(f)[0]: os.path.join(folder, f)
                            for f in list_images(folder)} if os.path.isdir(folder) else {})
    drop = set(exclude or ())
    out = []
    for f in list_images(image_dir):
        stem = os.path.splitext(f)[0]
        if f in drop or stem in drop:
            continue
        alpha = by_stem[alpha_dir].get(stem)
        if alpha is None:
            raise InputError(f'{alpha_dir}: ground-truth alpha missing for {f}')
        out.append((f, os.path.join(image_dir, f), alpha, by_stem[fg_dir].get(stem)))
    if not out:
        raise InputError(f'{image_dir}: no images')
    return out


def _floored(alpha, floor):
    """Alpha with values below ``floor`` set to 0 (noise of a measured matte's backdrop)."""
    if floor > 0:
        alpha = np.where(alpha < floor, np.float32(0), alpha)
    return alpha


@functools.lru_cache(maxsize=None)
def _stem_photo(image_path, alpha_path, fg_path, alpha_floor):
    """(image, alpha, F, B) of a stem-layout photograph; F read from ``fg_path`` where given."""
    image = read_image(image_path)
    alpha = _floored(read_alpha(alpha_path), alpha_floor)
    if image.shape[:2] != alpha.shape:
        raise InputError(f'{alpha_path}: size {alpha.shape} differs from image {image.shape[:2]}')
    fg, bg = estimate_foreground(image, alpha)
    if fg_path:
        fg = read_image(fg_path)
        if fg.shape != image.shape:
            raise InputError(f'{fg_path}: size {fg.shape[:2]} differs from image {image.shape[:2]}')
    return image, alpha, fg, bg


def _stem_fg_alpha(image_path, alpha_path, fg_path, alpha_floor):
    _, alpha, fg, _ = _stem_photo(image_path, alpha_path, fg_path, alpha_floor)
    return fg, alpha


class StemLayoutDataset(chainer.dataset.DatasetMixin):
    """Photographs with their ground truth and no trimaps (stem layout, see ``stem_layout_files``).

    Example: dict image (H,W,3), alpha (H,W), fg (H,W,3), bg (H,W,3) float32 in [0,1] and
    trimap None (made from the alpha); fg read from ``fg/`` where given, else estimated.
    Alpha below ``alpha_floor`` is set to 0.
    """

    def __init__(self, root, exclude=(), alpha_floor=0.0):
        self.files = stem_layout_files(root, exclude)
        self.alpha_floor = float(alpha_floor)

    def __len__(self):
        return len(self.files)

    def foregrounds(self):
        """[(name, loader)] with loader() -> (fg, alpha), for compositing."""
        return [(name, functools.partial(_stem_fg_alpha, image, alpha, fg, self.alpha_floor))
                for name, image, alpha, fg in self.files]

    def get_example(self, i):
        name, image_path, alpha_path, fg_path = self.files[i]
        image, alpha, fg, bg = _stem_photo(image_path, alpha_path, fg_path, self.alpha_floor)
        return {'name': name, 'image': image, 'alpha': alpha, 'fg': fg, 'bg': bg, 'trimap': None}


class ForegroundDataset(chainer.dataset.DatasetMixin):
    """Foregrounds to composite over backgrounds drawn afresh at every draw.

    ``MattingTransform`` composites I = alpha F + (1 - alpha) B over a window of one of
    ``background_paths``, drawn from the example's own seed, so no two draws share a
    background by design (the paper's 100 backgrounds per foreground, without a fixed list).

    Args:
        foregrounds: list of (name, loader) where loader() -> (fg (H,W,3), alpha (H,W)).
        background_paths: background image files.
        repeat: draws of each foreground per epoch (example count = repeat x foregrounds).
    Example: dict name, fg (H,W,3), alpha (H,W) float32 in [0,1], image None and
    backgrounds (the paths).
    """

    def __init__(self, foregrounds, background_paths, repeat=1):
        if not foregrounds:
            raise InputError('no foregrounds to composite')
        if not background_paths:
            raise InputError('no background images to composite over')
        self.foregrounds = list(foregrounds)
        self.background_paths = tuple(background_paths)
        self.repeat = int(repeat)

    def __len__(self):
        return len(self.foregrounds) * self.repeat

    def get_example(self, i):
        name, load = self.foregrounds[i // self.repeat]
        fg, alpha = load()
        return {'name': name, 'fg': fg, 'alpha': alpha, 'image': None, 'trimap': None,
                'backgrounds': self.background_paths}


def _read_fg_alpha(fg_path, alpha_path):
    fg, alpha = read_image(fg_path), read_alpha(alpha_path)
    if fg.shape[:2] != alpha.shape:
        raise InputError(f'{alpha_path}: size {alpha.shape} differs from foreground {fg.shape[:2]}')
    return fg, alpha


def _background_paths(bg_dir):
    return [os.path.join(bg_dir, f) for f in list_images(bg_dir)]


def make_composition_dataset(root, bg_dir=None, backgrounds_per_fg=1):
    """A ``ForegroundDataset`` of the composition layout: fg/, alpha/, and the backgrounds of
    ``bg_dir``, else of the root's own bg/."""
    fg_dir, alpha_dir = _find_dir(root, 'fg'), _find_dir(root, 'alpha')
    bg_dir = bg_dir or _find_dir(root, 'bg')
    foregrounds = []
    for f in list_images(fg_dir):
        alpha = os.path.join(alpha_dir, f)
        if not os.path.isfile(alpha):
            raise InputError(f'{alpha}: alpha missing for foreground {f}')
        foregrounds.append((f, functools.partial(_read_fg_alpha, os.path.join(fg_dir, f), alpha)))
    return ForegroundDataset(foregrounds, _background_paths(bg_dir), backgrounds_per_fg)


def make_recomposited_dataset(root, bg_dir, backgrounds_per_fg=1, names=None, exclude=()):
    """Seed-layout images' estimated foregrounds, to composite over the images in ``bg_dir``."""
    files = {f[0]: f for f in seed_layout_files(root, names=names, exclude=exclude)}
    foregrounds = [(name, functools.partial(_estimated_fg_alpha, image_path, alpha_path))
                   for name, image_path, alpha_path, _, _ in files.values()]
    return ForegroundDataset(foregrounds, _background_paths(bg_dir), backgrounds_per_fg)


def layout(root):
    """'composition' (fg/ alpha/, no images), 'seed' (images with trimap sets) or 'stem'
    (images and alphas paired by stem, no trimaps); InputError for a missing folder."""
    if not os.path.isdir(root):
        raise InputError(f'{root}: dataset folder not found')
    has_images = any(os.path.isdir(os.path.join(root, d)) for d in ('image', 'input'))
    if os.path.isdir(os.path.join(root, 'fg')) and not has_images:
        return 'composition'
    return 'seed' if find_trimap_sets(root) else 'stem'


def make_dataset(root, bg_dir=None, backgrounds_per_fg=1, trimap_sets=None, names=None,
                 exclude=(), alpha_floor=0.0):
    """The raw dataset of ``root``, whichever layout it has (see the module docstring).

    Photographs (seed and stem layouts) come as they are; with ``bg_dir`` their foregrounds
    are also composited over those backgrounds, ``backgrounds_per_fg`` draws per epoch.
    ``names`` / ``exclude`` select images by file name or stem (``names``: seed layout only);
    ``alpha_floor``: stem layout, alpha below it is set to 0.
    """
    kind = layout(root)
    if kind == 'composition':
        return make_composition_dataset(root, bg_dir, backgrounds_per_fg)
    if kind == 'stem':
        photos = StemLayoutDataset(root, exclude, alpha_floor)
        composites = (ForegroundDataset(photos.foregrounds(), _background_paths(bg_dir),
                                        backgrounds_per_fg) if bg_dir else None)
    else:
        photos = SeedLayoutDataset(root, trimap_sets, names, exclude)
        composites = (make_recomposited_dataset(root, bg_dir, backgrounds_per_fg, names, exclude)
                      if bg_dir else None)
    return photos if composites is None else chainer.datasets.ConcatenatedDataset(photos, composites)


def foreground_loaders(raw):
    """Every (name, loader) of the ``ForegroundDataset``s inside a raw dataset (concatenations
    and subsets looked into), each once: the partners ``MattingTransform`` layers foregrounds
    with."""
    if isinstance(raw, ForegroundDataset):
        return list(raw.foregrounds)
    parts = getattr(raw, '_datasets', None) or [getattr(raw, '_dataset', None)]
    found = {}
    for part in parts:
        if part is not None:
            for name, load in foreground_loaders(part):
                found.setdefault(getattr(load, 'args', name), (name, load))
    return list(found.values())


# --------------------------------------------------------------------------- augmentation
def generate_trimap(alpha, rng, kernel_range):
    """Trimap from a ground-truth alpha by random dilation and erosion of its unknown band.

    The definite foreground (alpha = 1) and background (alpha = 0) are each eroded by a random
    radius drawn from ``kernel_range`` (pixels, inclusive; foreground first); what remains is
    unknown (``utils.data.trimap.erode_to_trimap``).

    Returns:
        uint8 (H, W) in {0, 128, 255}.
    """
    low, high = kernel_range
    fg_radius = rng.integers(low, high + 1)
    bg_radius = rng.integers(low, high + 1)
    return erode_to_trimap(alpha, fg_radius, bg_radius)


def _centre(unknown, rng):
    """A random pixel (y, x) of the (H, W) bool ``unknown`` (any pixel where it has none)."""
    ys, xs = np.nonzero(unknown)
    if len(ys):
        k = rng.integers(len(ys))
        return int(ys[k]), int(xs[k])
    return int(rng.integers(unknown.shape[0])), int(rng.integers(unknown.shape[1]))


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
    cy, cx = _centre(unknown, rng)
    top = min(max(cy - crop // 2, 0), h - crop) if h >= crop else cy - crop // 2
    left = min(max(cx - crop // 2, 0), w - crop) if w >= crop else cx - crop // 2
    return [window(a, top + crop // 2, left + crop // 2, crop) for a in arrays]


def resize_to(array, size, nearest=False):
    """Resize (H, W[, C]) to (size, size): bilinear (Pillow's; antialiased when shrinking), or
    nearest neighbour, which keeps trimap values intact."""
    if array.shape[0] == size and array.shape[1] == size:
        return array
    return resize(array, size, size, nearest=nearest).astype(array.dtype, copy=False)


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
        augment: foreground augmentations, a subset of ``AUGMENTATIONS``: 'affine' (rotation,
            scale, shear), 'jitter' (hue, saturation, value), 'layer' (a second foreground
            behind, with probability ``LAYER_PROBABILITY``, drawn from ``partners``).
        partners: [(name, loader)] with loader() -> (fg, alpha), for 'layer'.
        seed: base seed (non-negative int).
    """

    def __init__(self, size=320, crop_sizes=CROP_SIZES, kernel_range=(3, 20),
                 generate_trimaps=True, flip=True, augment=(), partners=(), seed=0):
        unknown = set(augment) - set(AUGMENTATIONS)
        if unknown:
            raise ValueError(f'unknown augmentation {sorted(unknown)[0]!r}')
        self.size, self.crop_sizes, self.kernel_range = size, tuple(crop_sizes), kernel_range
        self.generate_trimaps, self.flip = generate_trimaps, flip
        self.augment, self.partners = frozenset(augment), list(partners)
        self.seed = int(seed)

    def _crop_size(self, shape, rng):
        crop = int(rng.choice(self.crop_sizes))
        return max(min(crop, *shape), min(self.size, crop))  # no larger than the image

    def _cut(self, fg, alpha, rng):
        """A foreground cut around one of its unknown pixels (``utils.data.augment.cut_foreground``)."""
        crop = self._crop_size(alpha.shape, rng)
        centre = _centre((alpha > 0) & (alpha < 1), rng)
        return cut_foreground(fg, alpha, centre, crop, self.size, rng,
                              affine='affine' in self.augment, flip=self.flip), crop

    def _composited(self, example, rng):
        """(image, alpha, fg, bg) at (S, S): the foreground, augmented, over a fresh background."""
        (fg, a), crop = self._cut(example['fg'], example['alpha'], rng)
        if 'jitter' in self.augment:
            fg = jitter_colour(fg, a, rng)
        if 'layer' in self.augment and self.partners and rng.random() < LAYER_PROBABILITY:
            _, load = self.partners[rng.integers(len(self.partners))]
            (fg2, a2), _ = self._cut(*load(), rng)
            if 'jitter' in self.augment:
                fg2 = jitter_colour(fg2, a2, rng)
            fg, a = layer_foregrounds(fg, a, fg2, a2)
        backgrounds = example['backgrounds']
        bg = background_window(read_image(backgrounds[rng.integers(len(backgrounds))]),
                               example['alpha'].shape, crop, self.size, rng)
        return composite(a, fg, bg), a, fg, bg

    def _photographed(self, example, rng):
        """(image, alpha, fg, bg[, trimap]) at (S, S): a crop of the photograph as it is."""
        alpha, trimap = example['alpha'], example['trimap']
        use_given = not self.generate_trimaps
        band = (trimap == UNKNOWN) if use_given else (alpha > 0) & (alpha < 1)
        arrays = [example['image'], alpha[:, :, None], example['fg'], example['bg']]
        if use_given:
            arrays.append(trimap[:, :, None])
        cropped = crop_around_unknown(arrays, band, self._crop_size(alpha.shape, rng), rng)
        image, a, fg, bg = (resize_to(x, self.size) for x in cropped[:4])
        out = [np.clip(image, 0, 1), np.clip(a[:, :, 0], 0, 1), fg, bg]
        if use_given:
            out.append(resize_to(cropped[4][:, :, 0], self.size, nearest=True))
        if self.flip and rng.random() < 0.5:
            out = [x[:, ::-1] for x in out]
        return out

    def __call__(self, example, key=(0,)):
        """``example``: a raw example; ``key``: tuple of non-negative ints seeding this call."""
        rng = np.random.default_rng([self.seed, *key])
        if not self.generate_trimaps and example['trimap'] is None:
            raise InputError(f'{example["name"]}: no trimap given and trimap generation is off')
        if example['image'] is None:
            image, a, fg, bg = self._composited(example, rng)
            trimap = generate_trimap(a, rng, self.kernel_range)
        else:
            image, a, fg, bg, *given = self._photographed(example, rng)
            trimap = given[0] if given else generate_trimap(a, rng, self.kernel_range)
        return Example(hwc_to_chw(image.astype(np.float32)),
                       hwc_to_chw((trimap.astype(np.float32) / 255.0)),
                       hwc_to_chw(a.astype(np.float32)),
                       hwc_to_chw(fg.astype(np.float32)),
                       hwc_to_chw(bg.astype(np.float32)))


class AugmentedDataset(chainer.dataset.DatasetMixin):
    """A raw dataset of N examples seen through a ``MattingTransform``, one augmentation per epoch.

    Index ``k = epoch * N + i`` is example i as augmented in that epoch (key (epoch, i)); indices
    below N are epoch 0. Training iterates over epochs 1, 2, ... (``utils.data.iterators``); validation
    reads epoch 0, the same crops every time. ``len`` is N.
    """

    def __init__(self, raw, transform):
        self.raw, self.transform = raw, transform

    def __len__(self):
        return len(self.raw)

    def get_example(self, k):
        epoch, i = divmod(int(k), len(self.raw))
        return self.transform(self.raw[i], key=(epoch, i))
