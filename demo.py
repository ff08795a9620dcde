"""Pull an alpha matte out of one photo with a trained DIM: ``bash scripts/demo.sh IMAGE TRIMAP``.

The whole image goes through the network in one pass at full resolution (as the paper tests);
trimap-known pixels keep 0 / 1. Written into --out_dir (each file atomically):

* ``<stem>_alpha.png``: the 8-bit alpha matte;
* ``<stem>_cutout.png``: RGBA, colours = foreground estimated from the image and the matte
  (pymatting's ``estimate_foreground_ml``; the image's own colours, with a warning, where
  pymatting cannot be imported), A = the matte;
* ``<stem>_over_<bgstem>.png``: that foreground composited, I = alpha F + (1 - alpha) B, over each
  background of --newimgs_dir (a file or a folder), scaled to cover the image and centre-cropped.

With no image and trimap it runs on the bundled imgs/chelsea_image.png and imgs/chelsea_trimap.png.
"""
import os
import sys
import time

import numpy as np

import options
from utils.checkpoint import load_model
from utils.utils import (UNKNOWN, InputError, composite, estimate_foreground, list_images,
                         read_image, read_trimap_reporting, refuse_overwriting_inputs, to_uint8,
                         write_png)


def resolve_inputs(args, parser):
    """(image path, trimap path) from the positional arguments or --img_path / --tri_path."""
    paths = []
    for positional, option, flag in (('img_path', 'img_opt', '--img_path'),
                                     ('tri_path', 'tri_opt', '--tri_path')):
        given, opt = getattr(args, positional), getattr(args, option)
        if opt is not None and given != parser.get_default(positional) and given != opt:
            raise InputError(f'{flag} {opt} and the positional {given} disagree: give one')
        paths.append(opt if opt is not None else given)
    image, trimap = paths
    image_is_default = image == parser.get_default('img_path')
    trimap_is_default = trimap == parser.get_default('tri_path')
    if trimap_is_default and not image_is_default:
        raise InputError(f'{image}: give its trimap too (demo.py IMAGE TRIMAP)')
    return image, trimap


def list_backgrounds(path):
    """Background files: ``path`` itself, or the images in the folder ``path``."""
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        files = [os.path.join(path, f) for f in list_images(path)]
        if not files:
            raise InputError(f'{path}: no background images (png, jpg, bmp, tif) in this folder')
        return files
    raise InputError(f'{path}: no such background file or folder (--newimgs_dir)')


def output_paths(out_dir, image_path, backgrounds):
    """{'alpha': path, 'cutout': path, background path: composite path} in --out_dir."""
    stem = os.path.splitext(os.path.basename(image_path))[0]
    paths = {'alpha': os.path.join(out_dir, f'{stem}_alpha.png'),
             'cutout': os.path.join(out_dir, f'{stem}_cutout.png')}
    stems = [os.path.splitext(os.path.basename(b))[0] for b in backgrounds]
    for bg, bg_stem in zip(backgrounds, stems):
        if stems.count(bg_stem) > 1:  # a.png and a.jpg: keep the extension in the name
            bg_stem = os.path.basename(bg).replace('.', '_')
        paths[bg] = os.path.join(out_dir, f'{stem}_over_{bg_stem}.png')
    return paths


def cover(background, height, width):
    """Scale a (h, w, 3) background to cover (height, width), then crop the centre.

    Returns:
        float32 (height, width, 3) in [0, 1].
    """
    from skimage.transform import resize
    h, w = background.shape[:2]
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    if (new_h, new_w) != (h, w):
        background = resize(background, (new_h, new_w, 3), order=1, mode='edge',
                            anti_aliasing=scale < 1)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.clip(background[top:top + height, left:left + width], 0, 1).astype(np.float32)


def run(args, parser):
    start = time.perf_counter()
    image_path, trimap_path = resolve_inputs(args, parser)
    backgrounds = list_backgrounds(args.newimgs_dir)
    outputs = output_paths(args.out_dir, image_path, backgrounds)
    refuse_overwriting_inputs(outputs.values(),
                              [image_path, trimap_path, args.ckpt_path] + backgrounds)
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise InputError(f'{args.out_dir}: --out_dir exists and is not a folder')

    image = read_image(image_path)
    trimap = read_trimap_reporting(trimap_path)
    if image.shape[:2] != trimap.shape:
        raise InputError(f'{trimap_path}: trimap is {trimap.shape[1]}x{trimap.shape[0]} but the '
                         f'image is {image.shape[1]}x{image.shape[0]} (width x height): '
                         'they must match')
    if not np.any(trimap == UNKNOWN):
        raise InputError(f'{trimap_path}: trimap has no unknown (128) pixels: nothing to matte')
    model = load_model(options.checked_checkpoint(args.ckpt_path), args.gpu_id,
                       expect_config={'width': args.width} if args.width else None)

    t = time.perf_counter()
    alpha = model.predict(image, trimap, refine=not args.no_refine)
    print(f'prediction: {time.perf_counter() - t:.2f} s ({image.shape[1]}x{image.shape[0]}, '
          f'{np.count_nonzero(trimap == UNKNOWN)} unknown pixels, width {model.config["width"]})')
    alpha8 = to_uint8(alpha)  # known pixels are exactly 0 / 255: predict keeps them
    write_png(outputs['alpha'], alpha8)
    print(f'wrote {outputs["alpha"]}')

    alpha = alpha8.astype(np.float32) / 255.0  # what the saved matte says
    try:
        fg, _ = estimate_foreground(image, alpha)
    except ImportError as e:  # pymatting (or its numba) is not installed
        reason = (str(e).splitlines() or [''])[0]
        print(f'warning: foreground colours not estimated ({reason}); the cutout and composites use '
              "the image's own colours", file=sys.stderr)
        fg = image
    write_png(outputs['cutout'], np.dstack([to_uint8(fg), alpha8]))
    print(f'wrote {outputs["cutout"]}')

    for bg_path in backgrounds:
        background = cover(read_image(bg_path), *image.shape[:2])
        write_png(outputs[bg_path], composite(alpha, fg, background))
        print(f'wrote {outputs[bg_path]}')
    print(f'total: {time.perf_counter() - start:.2f} s')


def main(argv=None):
    parser = options.demo_parser()
    args = parser.parse_args(argv)
    return options.run_reporting_errors(run, args, parser)


if __name__ == '__main__':
    sys.exit(main())
