"""Score matting methods on a dataset: ``bash scripts/evaluate.sh DATASET_ROOT [options]``, or on
Composition-1k as Adobe ships it: ``bash scripts/evaluate.sh --comp1k TEST_SET --voc JPEGIMAGES``
(its composites built by Adobe's rule, ``utils.evaluation.comp1k``).

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

A method that cannot give a matte for an image (closed-form on a trimap without background, a
matte missing from --pred_dir) is recorded as refused for that image, with one line saying why,
and the evaluation goes on; its means are over the images it scored. Exit status: 0 when every
matte was scored or refused; 1 when an input is broken (an unreadable file, sizes that differ,
a name not found), found before anything is scored.
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
from utils.evaluation import comp1k
from utils.evaluation.metrics import evaluate_all
from utils.evaluation.report import (
    METRICS,
    mean_rows,
    print_table,
    thumbnail,
    write_csv,
    write_figure,
    write_summary,
)
from utils.images import (UNKNOWN, read_alpha, read_trimap_reporting, refuse_overwriting_inputs,
                          to_uint8, write_png)
from utils.inference.backends import load_backend
from utils.inference.pipeline import read_inputs, saved_matte
from utils.inference.folders import progress_line
from utils.loader import SeedFile, seed_layout_files

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


class Declined(Exception):
    """A method could not give a matte for one image: recorded for it, and the evaluation goes on."""


def find_prediction(pred_dir, trimap_set, name):
    """PRED_DIR/<set>/<name> or PRED_DIR/<name> (or <stem>.png in either), else None."""
    stem_png = os.path.splitext(name)[0] + '.png'
    candidates = [os.path.join(pred_dir, trimap_set, name), os.path.join(pred_dir, name),
                  os.path.join(pred_dir, trimap_set, stem_png), os.path.join(pred_dir, stem_png)]
    for path in candidates:
        if os.path.isfile(path):
            return path
    return None


def dataset_files(args):
    """The ``SeedFile`` of every matte to score: of the seed-layout roots, or of Composition-1k
    (``--comp1k``: its ``image`` a ``utils.evaluation.comp1k.Composite``, built when scored)."""
    if bool(args.comp1k) == bool(args.dataset_root):
        raise InputError('give the datasets to score: DATASET_ROOT ... or --comp1k TEST_SET '
                         '--voc JPEGIMAGES (one of the two)')
    if args.comp1k:
        if not args.voc:
            raise InputError('--comp1k needs --voc: PASCAL VOC 2012\'s JPEGImages folder')
        composites = comp1k.list_composites(args.comp1k, args.voc, args.names)
        return [SeedFile(c.name, c, c.alpha, comp1k.TRIMAP_SET, c.trimap) for c in composites]
    if args.voc or args.comp1k_cache:
        raise InputError('--voc and --comp1k_cache go with --comp1k')
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
    return files


def list_examples(args):
    """``Entry`` per matte (a ``SeedFile`` and its --pred_dir prediction path or None), checked up
    front (names exist, sizes agree) so that a long run does not stop half way."""
    files = dataset_files(args)
    if args.pred_dir and not os.path.isdir(args.pred_dir):
        raise InputError(f'{args.pred_dir}: --pred_dir folder not found')
    examples = []
    for name, image, alpha, trimap_set, trimap in files:
        pred = find_prediction(args.pred_dir, trimap_set, name) if args.pred_dir else None
        image_file = image.fg if isinstance(image, comp1k.Composite) else image
        size = image_size(image_file)
        for path in (alpha, trimap):
            if image_size(path) != size:
                h, w = image_size(path)
                raise InputError(f'{path}: {w}x{h} differs from its image {image_file} '
                                 f'({size[1]}x{size[0]}, width x height)')
        examples.append(Entry(name, image, alpha, trimap_set, trimap, pred))
    return examples


def build_composites(examples, cache_dir):
    """--comp1k_cache: every composite written once into ``cache_dir`` (with a progress line);
    the entries then read them as image files."""
    out, start = [], time.perf_counter()
    for i, e in enumerate(examples):
        if isinstance(e.image, comp1k.Composite):
            e = e._replace(image=comp1k.cached_composite(e.image, cache_dir))
            print(f'\r{progress_line(i + 1, len(examples), e.name, "composite", start)}',
                  end='', flush=True)
        out.append(e)
    print()
    return out


def read_example(example):
    """(image float32 (H, W, 3) in [0, 1], trimap uint8 (H, W)) of an entry."""
    if isinstance(example.image, comp1k.Composite):
        image = comp1k.make_composite(example.image).astype(np.float32) / 255.0
        return image, read_trimap_reporting(example.trimap)
    return read_inputs(example.image, example.trimap, require_unknown=False)


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
            methods[name] = prediction_method(args.pred_dir)
    return methods


def dim_method(args):
    """The checkpoint (or --onnx model) through ``utils.inference.backends``, as the demo runs it."""
    backend = load_backend(args.backend, args.ckpt_path, options.DEFAULT_CHECKPOINT, args.onnx,
                           args.gpu_id, args.width)
    return lambda image, trimap, example: backend.predict(image, trimap, refine=not args.no_refine)


def prediction_method(pred_dir):
    """The matte another program wrote into --pred_dir for this image (declined if absent,
    unreadable or not the image's size)."""
    def predict(image, trimap, example):
        if example.prediction is None:
            raise Declined(f'no matte in {pred_dir} (looked for <set>/<name> and <name>)')
        try:
            alpha = read_alpha(example.prediction)
        except InputError as e:
            raise Declined(str(e))
        if alpha.shape != trimap.shape:
            raise Declined(f'{example.prediction}: {alpha.shape[1]}x{alpha.shape[0]}, the image '
                           f'is {trimap.shape[1]}x{trimap.shape[0]} (width x height)')
        return alpha
    return predict


def pymatting_method(name, estimate):
    """pymatting's estimate_alpha_* on float64 image and trimap in [0, 1]."""
    def predict(image, trimap, example):
        if not np.any(trimap == UNKNOWN):  # nothing to solve (pymatting's solver would fail)
            return trimap / 255.0
        try:
            return estimate(image.astype(np.float64), trimap.astype(np.float64) / 255.0)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
            # e.g. a trimap without background (or foreground) pixels
            raise Declined(f'{name} failed ({e})'.splitlines()[0])
    return predict


def run(args):
    start = time.perf_counter()
    examples = list_examples(args)
    methods = make_methods(args)
    if args.comp1k_cache:
        examples = build_composites(examples, args.comp1k_cache)
        start = time.perf_counter()
    outputs = [os.path.join(args.out_dir, f) for f in ('metrics.csv', 'summary.md', 'figure.png')]
    saved = {}
    if args.save_dir:
        for name, _, _, trimap_set, _, _ in examples:
            for method in methods:
                saved[name, trimap_set, method] = os.path.join(
                    args.save_dir, method, trimap_set, os.path.splitext(name)[0] + '.png')
    inputs = [p for e in examples for p in (e.image, e.alpha, e.trimap, e.prediction)
              if isinstance(p, str)]
    refuse_overwriting_inputs(outputs + list(saved.values()), inputs + [args.ckpt_path])

    rows, panels = [], []
    total = len(examples) * len(methods)
    done = 0

    def pace():
        elapsed = time.perf_counter() - start
        return f'elapsed {elapsed:.0f} s, about {elapsed / done * (total - done):.0f} s left'
    for example in examples:
        name, _, alpha_path, trimap_set, _, _ = example
        image, trimap = read_example(example)
        gt = to_uint8(read_alpha(alpha_path))
        panel = {'name': name, 'trimap_set': trimap_set, 'image': thumbnail(image),
                 'trimap': thumbnail(trimap), 'gt': thumbnail(gt), 'preds': {}}
        for method, predict in methods.items():
            done += 1
            t = time.perf_counter()
            try:
                alpha = predict(image, trimap, example)
            except Declined as e:
                rows.append({'name': name, 'trimap_set': trimap_set, 'method': method,
                             'refused': str(e), 'seconds': None,
                             **{k: None for k in METRICS}})
                print(f'[{done}/{total}] {name} {trimap_set} {method}: refused: {e} ({pace()})',
                      flush=True)
                continue
            seconds = time.perf_counter() - t if method != PRED_DIR_METHOD else None
            matte = saved_matte(alpha, trimap)
            scores = evaluate_all(matte, gt, trimap)
            rows.append({'name': name, 'trimap_set': trimap_set, 'method': method,
                         'seconds': seconds, **scores})
            panel['preds'][method] = thumbnail(matte)
            if args.save_dir:
                write_png(saved[name, trimap_set, method], matte)
            took = '' if seconds is None else f' in {seconds:.2f} s'
            print(f'[{done}/{total}] {name} {trimap_set} {method}: SAD {scores["SAD"]:.3f} '
                  f'MSE {scores["MSE"]:.5f} Grad {scores["Grad"]:.3f} Conn {scores["Conn"]:.3f}'
                  f'{took} ({pace()})', flush=True)
        panels.append(panel)

    sets = list(dict.fromkeys(e[3] for e in examples))
    means = mean_rows(rows, list(methods), sets)
    write_csv(outputs[0], rows + means)
    dataset_name = (f'Composition-1k ({len(examples)} composites)' if args.comp1k else
                    ' + '.join(os.path.basename(os.path.normpath(r)) for r in args.dataset_root))
    write_summary(outputs[1], means, dataset_name)
    write_figure(outputs[2], panels, list(methods))
    print()
    print_table(means)
    for path in outputs:
        print(f'wrote {path}')
    if args.save_dir:
        print(f'mattes saved under {args.save_dir}/<method>/<set>/')
    refused = [r for r in rows if r.get('refused')]
    if refused:
        print(f'{len(refused)} of {total} mattes refused by their method, left out of its means '
              f'(why: the refused column of {outputs[0]})')
    print(f'total: {time.perf_counter() - start:.1f} s')


def main(argv=None):
    args = options.evaluate_parser().parse_args(argv)
    return run_reporting_errors(options.with_precision(run), args)


if __name__ == '__main__':
    sys.exit(main())
