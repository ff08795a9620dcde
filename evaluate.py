"""Score matting methods on a dataset: ``bash scripts/evaluate.sh DATASET_ROOT [options]``.

For every image x trimap set and every method (``dim``: a trained checkpoint; ``closed_form`` and
``knn``: pymatting; ``pred_dir``: mattes made elsewhere) the matte is scored with SAD, MSE, Grad
and Conn as the authors' evaluation code does (``utils.evaluation.metrics``, 0..255 scale). Every matte is
scored as a saved PNG matte would be: trimap-known pixels forced to 0 / 255, then rounded to
8 bits; the ground truth is read as 8-bit too.

Written into --out_dir, atomically: ``metrics.csv`` (a row per image, trimap set and method, then
mean rows per method and set and per method overall), ``summary.md`` (the means as a Markdown
table) and ``figure.png`` (image | trimap | each method's matte | ground truth | error of the
first method), with ``utils.evaluation.report``. The images go through ``utils.inference.pipeline`` (reading,
checks, the saved matte) and ``dim`` through ``utils.inference.backends`` (``--backend onnxruntime``
scores an exported model).
"""
from utils.errors import quiet_while_importing

quiet_while_importing(__name__)  # (first: Ctrl-C during the imports below ends quietly)

import collections
import os
import sys
import time

import numpy as np

import options
from utils.errors import InputError, run_reporting_errors
from utils.evaluation.metrics import evaluate_all
from utils.evaluation.report import (
    mean_rows,
    print_table,
    thumbnail,
    write_csv,
    write_figure,
    write_summary,
)
from utils.images import UNKNOWN, read_alpha, refuse_overwriting_inputs, to_uint8, write_png
from utils.inference.backends import load_backend
from utils.inference.pipeline import read_inputs, saved_matte
from utils.loader import seed_layout_files

PRED_DIR_METHOD = 'pred_dir'
# One matte to score: a ``utils.loader.SeedFile``'s fields and its --pred_dir prediction (or None).
Entry = collections.namedtuple('Entry', 'name image alpha trimap_set trimap prediction')


def image_size(path):
    """(height, width) of an image file from its header."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception as e:  # PIL raises many types for broken files
        raise InputError(f'{path}: cannot be read as an image ({type(e).__name__}: {e})'
                         .splitlines()[0])
    return height, width


def find_prediction(pred_dir, trimap_set, name):
    """PRED_DIR/<set>/<name> or PRED_DIR/<name> (or <stem>.png in either), else InputError."""
    stem_png = os.path.splitext(name)[0] + '.png'
    candidates = [os.path.join(pred_dir, trimap_set, name), os.path.join(pred_dir, name),
                  os.path.join(pred_dir, trimap_set, stem_png), os.path.join(pred_dir, stem_png)]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise InputError(f'{candidates[0]}: no prediction for {name} (trimap set {trimap_set}) in '
                     f'--pred_dir (looked for <set>/<name> and <name>)')


def list_examples(args):
    """``Entry`` per matte (a ``SeedFile`` and its --pred_dir prediction path or None), checked up
    front (names exist, sizes agree) so that a long run does not stop half way."""
    files = []
    for root in args.dataset_root:
        try:
            files += seed_layout_files(root, args.trimap_sets, args.names)
        except InputError:
            if not args.names or len(args.dataset_root) == 1:
                raise
            seed_layout_files(root, args.trimap_sets)  # a broken root is an error, not skipped
    found = {f.name for f in files} | {os.path.splitext(f.name)[0] for f in files}
    missing = [n for n in args.names or () if n not in found]
    if missing:
        raise InputError(f'--names {missing[0]}: no such image in {" ".join(args.dataset_root)}')
    if args.pred_dir and not os.path.isdir(args.pred_dir):
        raise InputError(f'{args.pred_dir}: --pred_dir folder not found')
    examples = []
    for name, image, alpha, trimap_set, trimap in files:
        pred = find_prediction(args.pred_dir, trimap_set, name) if args.pred_dir else None
        size = image_size(image)
        for path in (alpha, trimap, pred):
            if path is not None and image_size(path) != size:
                h, w = image_size(path)
                raise InputError(f'{path}: {w}x{h} differs from its image {image} '
                                 f'({size[1]}x{size[0]}, width x height)')
        examples.append(Entry(name, image, alpha, trimap_set, trimap, pred))
    return examples


def make_methods(args):
    """{method name: predict(image, trimap, example) -> alpha (H, W) in [0, 1]}, in order."""
    names = list(dict.fromkeys(args.method or ([] if args.pred_dir else ['dim'])))
    if args.pred_dir:
        names.append(PRED_DIR_METHOD)
    if not names:
        raise InputError('nothing to evaluate: give --method and/or --pred_dir')
    methods = {}
    for name in names:
        if name == 'dim':
            methods[name] = dim_method(args)
        elif name == 'closed_form':
            from pymatting import estimate_alpha_cf
            methods[name] = pymatting_method(name, estimate_alpha_cf)
        elif name == 'knn':
            from pymatting import estimate_alpha_knn
            methods[name] = pymatting_method(name, estimate_alpha_knn)
        else:
            methods[name] = lambda image, trimap, example: read_alpha(example.prediction)
    return methods


def dim_method(args):
    """The checkpoint (or --onnx model) through ``utils.inference.backends``, as the demo runs it."""
    backend = load_backend(args.backend, args.ckpt_path, options.DEFAULT_CHECKPOINT, args.onnx,
                           args.gpu_id, args.width)
    return lambda image, trimap, example: backend.predict(image, trimap, refine=not args.no_refine)


def pymatting_method(name, estimate):
    """pymatting's estimate_alpha_* on float64 image and trimap in [0, 1]."""
    def predict(image, trimap, example):
        if not np.any(trimap == UNKNOWN):  # nothing to solve (pymatting's solver would fail)
            return trimap / 255.0
        try:
            return estimate(image.astype(np.float64), trimap.astype(np.float64) / 255.0)
        except ValueError as e:  # e.g. a trimap without background or foreground pixels
            raise InputError(f'{example.trimap}: {name} failed ({e})'.splitlines()[0])
    return predict


def run(args):
    start = time.perf_counter()
    examples = list_examples(args)
    methods = make_methods(args)
    outputs = [os.path.join(args.out_dir, f) for f in ('metrics.csv', 'summary.md', 'figure.png')]
    saved = {}
    if args.save_dir:
        for name, _, _, trimap_set, _, _ in examples:
            for method in methods:
                saved[name, trimap_set, method] = os.path.join(
                    args.save_dir, method, trimap_set, os.path.splitext(name)[0] + '.png')
    inputs = [p for e in examples for p in (e.image, e.alpha, e.trimap, e.prediction) if p]
    refuse_overwriting_inputs(outputs + list(saved.values()), inputs + [args.ckpt_path])

    rows, panels = [], []
    total = len(examples) * len(methods)
    done = 0
    for example in examples:
        name, image_path, alpha_path, trimap_set, trimap_path, _ = example
        image, trimap = read_inputs(image_path, trimap_path, require_unknown=False)
        gt = to_uint8(read_alpha(alpha_path))
        panel = {'name': name, 'trimap_set': trimap_set, 'image': thumbnail(image),
                 'trimap': thumbnail(trimap), 'gt': thumbnail(gt), 'preds': {}}
        for method, predict in methods.items():
            t = time.perf_counter()
            alpha = predict(image, trimap, example)
            seconds = time.perf_counter() - t if method != PRED_DIR_METHOD else None
            matte = saved_matte(alpha, trimap)
            scores = evaluate_all(matte, gt, trimap)
            rows.append({'name': name, 'trimap_set': trimap_set, 'method': method,
                         'seconds': seconds, **scores})
            panel['preds'][method] = thumbnail(matte)
            if args.save_dir:
                write_png(saved[name, trimap_set, method], matte)
            done += 1
            took = '' if seconds is None else f' in {seconds:.2f} s'
            print(f'[{done}/{total}] {name} {trimap_set} {method}: SAD {scores["SAD"]:.3f} '
                  f'MSE {scores["MSE"]:.5f} Grad {scores["Grad"]:.3f} Conn {scores["Conn"]:.3f}'
                  f'{took} (elapsed {time.perf_counter() - start:.0f} s)', flush=True)
        panels.append(panel)

    sets = list(dict.fromkeys(e[3] for e in examples))
    means = mean_rows(rows, list(methods), sets)
    write_csv(outputs[0], rows + means)
    write_summary(outputs[1], means, ' + '.join(os.path.basename(os.path.normpath(r))
                                               for r in args.dataset_root))
    write_figure(outputs[2], panels, list(methods))
    print()
    print_table(means)
    for path in outputs:
        print(f'wrote {path}')
    if args.save_dir:
        print(f'mattes saved under {args.save_dir}/<method>/<set>/')
    print(f'total: {time.perf_counter() - start:.1f} s')


def main(argv=None):
    args = options.evaluate_parser().parse_args(argv)
    return run_reporting_errors(options.with_precision(run), args)


if __name__ == '__main__':
    sys.exit(main())
