"""Pull alpha mattes out of photos with a trained DIM.

    bash scripts/demo.sh IMAGE TRIMAP           one photo
    bash scripts/demo.sh IMAGE --mask MASK      one photo, trimap made from a segmentation mask
    bash scripts/demo.sh IMAGES_DIR TRIMAPS_DIR every image with the trimap of the same stem
    bash scripts/demo.sh IMAGES_DIR --mask MASKS_DIR

The whole image goes through the network in one pass at full resolution (as the paper tests);
trimap-known pixels keep 0 / 1. Written into --out_dir (each file atomically; see
``utils.inference.pipeline``): ``<stem>_alpha.png``, ``<stem>_cutout.png`` (RGBA, estimated foreground
colours), ``<stem>_over_<bgstem>.png`` per background of --backgrounds and, with --mask,
``<stem>_trimap.png``. ``--backend onnxruntime`` runs the same pipeline through onnxruntime.
Folders: see ``utils.inference.folders`` (progress, failures skipped and listed, complete outputs skipped).

With no image and trimap it runs on the bundled imgs/astronaut_image.png and imgs/astronaut_trimap.png.
"""
from utils.errors import quiet_while_importing

quiet_while_importing(__name__)  # (first: Ctrl-C during the imports below ends quietly)

import os
import sys
import time

import options
from utils.data.trimap import default_band
from utils.errors import InputError, run_reporting_errors
from utils.images import refuse_overwriting_inputs
from utils.inference import folders, pipeline
from utils.inference.backends import load_backend


def resolve_inputs(args, parser):
    """(image path, trimap path or None, mask path or None) from the arguments."""
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
    if args.mask:
        if not trimap_is_default:
            raise InputError(f'{trimap} and --mask {args.mask}: give a trimap or a mask, not both')
        if image_is_default:
            raise InputError(f'--mask {args.mask}: give the image it belongs to '
                             '(demo.py IMAGE --mask MASK)')
        return image, None, args.mask
    if args.band is not None:
        raise InputError('--band goes with --mask')
    if trimap_is_default and not image_is_default:
        raise InputError(f'{image}: give its trimap too (demo.py IMAGE TRIMAP, or --mask MASK)')
    return image, trimap, None


def check_folders(image, trimap, mask):
    """Whether this is folder mode: the image path is a folder (then so must the other be)."""
    guide, what = (mask, '--mask') if mask else (trimap, 'trimap')
    if not os.path.isdir(image):
        if os.path.isdir(guide):
            raise InputError(f'{guide}: {what} is a directory but {image} is not: give two '
                             'files or two folders')
        return False
    if not os.path.isdir(guide):
        raise InputError(f'{image}: is a directory, so folder mode: give the folder of its '
                         f'{what}s too, not {guide}')
    return True


def run(args, parser):
    start = time.perf_counter()
    image_path, trimap_path, mask_path = resolve_inputs(args, parser)
    folder_mode = check_folders(image_path, trimap_path, mask_path)
    bg_paths = pipeline.list_backgrounds(args.backgrounds)
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise InputError(f'{args.out_dir}: --out_dir exists and is not a folder')
    protected = [args.ckpt_path, args.onnx] + bg_paths
    if not folder_mode:
        outputs = pipeline.output_paths(args.out_dir, image_path, bg_paths,
                                        with_trimap=bool(mask_path))
        refuse_overwriting_inputs(outputs.values(), [image_path, trimap_path, mask_path]
                                  + protected)
        # read and check the inputs before the (slower) model, so mistakes are reported at once
        image, trimap = pipeline.read_inputs(image_path, trimap_path, mask_path, args.band)
    backgrounds = pipeline.read_backgrounds(bg_paths)
    backend = load_backend(args.backend, args.ckpt_path, options.DEFAULT_CHECKPOINT, args.onnx,
                           args.gpu_id, args.width)
    refine = not args.no_refine
    if folder_mode:
        code = folders.run_folder(backend, image_path, mask_path or trimap_path, bool(mask_path),
                                  args.out_dir, backgrounds, protected, args.band, refine,
                                  args.overwrite)
        print(f'total: {time.perf_counter() - start:.1f} s')
        return code
    info = pipeline.matte_and_write(backend, image, trimap, outputs, backgrounds, refine,
                                    write_trimap=bool(mask_path))
    band = args.band or default_band(trimap.shape)
    band = f', trimap from the mask with a {band} px band' if mask_path else ''
    print(f'prediction: {info["seconds"]:.2f} s ({info["width"]}x{info["height"]}, '
          f'{info["unknown"]} unknown pixels, {backend.description}{band})')
    for path in info['written']:
        print(f'wrote {path}')
    print(f'total: {time.perf_counter() - start:.2f} s')


def main(argv=None):
    parser = options.demo_parser()
    args = parser.parse_args(argv)
    return run_reporting_errors(options.with_precision(run), args, parser)


if __name__ == '__main__':
    sys.exit(main())
