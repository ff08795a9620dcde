"""Score matting methods on a dataset: ``bash scripts/evaluate.sh DATASET_ROOT [options]``.

For every image x trimap set and every method (``dim``: a trained checkpoint; ``closed_form`` and
``knn``: pymatting; ``pred_dir``: mattes made elsewhere) the matte is scored with SAD, MSE, Grad
and Conn as the authors' evaluation code does (``utils.metrics``, 0..255 scale). Every matte is
scored as a saved PNG matte would be: trimap-known pixels forced to 0 / 255, then rounded to
8 bits; the ground truth is read as 8-bit too.

Written into --out_dir, atomically: ``metrics.csv`` (a row per image, trimap set and method, then
mean rows per method and set and per method overall), ``summary.md`` (the means as a Markdown
table) and ``figure.png`` (image | trimap | each method's matte | ground truth | error of the
first method).
"""
import csv
import io
import os
import sys
import time

import numpy as np

import options
from utils.checkpoint import load_model
from utils.loader import seed_layout_files
from utils.metrics import as_saved_matte, evaluate_all
from utils.utils import (UNKNOWN, InputError, atomic_write, read_alpha,
                         read_image, read_trimap_reporting, refuse_overwriting_inputs, to_uint8,
                         write_png)

METRICS = ('SAD', 'MSE', 'Grad', 'Conn')
PRED_DIR_METHOD = 'pred_dir'
MEAN_NAME = 'MEAN'  # the name column of mean rows
ALL_SETS = 'ALL'  # the trimap-set column of per-method overall means
THUMBNAIL_SIDE = 160  # longest side of the figure's thumbnails, in pixels
MAX_FIGURE_ROWS = 40  # image x set rows shown in figure.png


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
    """Dataset entries (name, image, alpha, set, trimap, prediction path or None), checked up
    front (names exist, sizes agree) so that a long run does not stop half way."""
    files = seed_layout_files(args.dataset_root, args.trimap_sets, args.names)
    found = {f[0] for f in files} | {os.path.splitext(f[0])[0] for f in files}
    missing = [n for n in args.names or () if n not in found]
    if missing:
        raise InputError(f'--names {missing[0]}: no such image in {args.dataset_root}')
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
        examples.append((name, image, alpha, trimap_set, trimap, pred))
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
            methods[name] = lambda image, trimap, example: read_alpha(example[5])
    return methods


def dim_method(args):
    """The checkpoint's DIM.predict (as the demo loads it)."""
    model = load_model(options.checked_checkpoint(args.ckpt_path), args.gpu_id,
                       expect_config={'width': args.width} if args.width else None)
    return lambda image, trimap, example: model.predict(image, trimap, refine=not args.no_refine)


def pymatting_method(name, estimate):
    """pymatting's estimate_alpha_* on float64 image and trimap in [0, 1]."""
    def predict(image, trimap, example):
        if not np.any(trimap == UNKNOWN):  # nothing to solve (pymatting's solver would fail)
            return trimap / 255.0
        try:
            return estimate(image.astype(np.float64), trimap.astype(np.float64) / 255.0)
        except ValueError as e:  # e.g. a trimap without background or foreground pixels
            raise InputError(f'{example[4]}: {name} failed ({e})'.splitlines()[0])
    return predict


def thumbnail(x):
    """Downscale (nearest) so that the longest side is at most THUMBNAIL_SIDE."""
    step = max(1, int(np.ceil(max(x.shape[:2]) / THUMBNAIL_SIDE)))
    return np.ascontiguousarray(x[::step, ::step])


def mean_rows(rows, methods, sets):
    """Mean rows per method and set, then per method over all sets."""
    out = []
    for method in methods:
        for trimap_set in list(sets) + [ALL_SETS]:
            chosen = [r for r in rows if r['method'] == method
                      and (trimap_set == ALL_SETS or r['trimap_set'] == trimap_set)]
            if not chosen:
                continue
            mean = {'name': MEAN_NAME, 'trimap_set': trimap_set, 'method': method}
            for key in METRICS + ('seconds',):
                values = [r[key] for r in chosen if r[key] is not None]
                mean[key] = float(np.mean(values)) if values else None
            mean['n'] = len(chosen)
            out.append(mean)
    return out


def write_csv(path, rows):
    columns = ['name', 'trimap_set', 'method'] + list(METRICS) + ['seconds']
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row[c] if c in ('name', 'trimap_set', 'method') else
                         '' if row[c] is None else f'{row[c]:.6g}' for c in columns])
    text = buffer.getvalue()

    def write(tmp):
        with open(tmp, 'w', newline='') as f:
            f.write(text)
    atomic_write(path, write)


def summary_table(means):
    """Markdown table of the mean rows."""
    lines = ['| method | trimap set | images | SAD | MSE | Grad | Conn | s / image |',
             '|---|---|---:|---:|---:|---:|---:|---:|']
    for m in means:
        seconds = '' if m['seconds'] is None else f'{m["seconds"]:.2f}'
        trimap_set = 'all' if m['trimap_set'] == ALL_SETS else m['trimap_set']
        lines.append(f'| {m["method"]} | {trimap_set} | {m["n"]} | {m["SAD"]:.2f} '
                     f'| {m["MSE"]:.4f} | {m["Grad"]:.2f} | {m["Conn"]:.2f} | {seconds} |')
    return '\n'.join(lines)


def write_summary(path, means, args):
    text = (f'Mean errors on `{os.path.basename(os.path.normpath(args.dataset_root))}` '
            '(SAD, Grad and Conn divided by 1000 as in the authors\' evaluate.m; MSE over unknown '
            'pixels; mattes scored as 8-bit PNGs with trimap-known pixels forced to 0 / 255).\n\n'
            + summary_table(means) + '\n')

    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)
    atomic_write(path, write)


def write_figure(path, panels, methods):
    """One row per image x set: image | trimap | each method | ground truth | |error| (first)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    shown = panels[:MAX_FIGURE_ROWS]
    titles = ['image', 'trimap'] + list(methods) + ['ground truth', f'|error| {methods[0]}']
    aspect = max(p['image'].shape[0] / p['image'].shape[1] for p in shown)
    cell = 1.6
    fig, axes = plt.subplots(len(shown), len(titles), squeeze=False,
                             figsize=(cell * len(titles), cell * aspect * len(shown) + 0.4))
    for row, panel in zip(axes, shown):
        first = panel['preds'][methods[0]]
        error = np.abs(first.astype(np.float32) - panel['gt'].astype(np.float32)) / 255.0
        pictures = ([panel['image'], panel['trimap']] + [panel['preds'][m] for m in methods]
                    + [panel['gt'], error])
        for ax, picture, title in zip(row, pictures, titles):
            if picture is error:
                ax.imshow(picture, cmap='magma', vmin=0, vmax=1, interpolation='nearest')
            elif picture.ndim == 2:
                ax.imshow(picture, cmap='gray', vmin=0, vmax=255, interpolation='nearest')
            else:
                ax.imshow(picture, interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if ax is row[0]:
                ax.set_ylabel(f'{panel["name"]}\n{panel["trimap_set"]}', fontsize=7)
        for ax, title in zip(axes[0], titles):
            ax.set_title(title, fontsize=8)
    if len(panels) > len(shown):
        fig.suptitle(f'first {len(shown)} of {len(panels)} image x trimap rows', fontsize=8)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=100))
    finally:
        plt.close(fig)


def print_table(means):
    print(f'{"method":<12} {"trimap set":<12} {"n":>4} {"SAD":>9} {"MSE":>8} {"Grad":>9} '
          f'{"Conn":>9} {"s/img":>7}')
    for m in means:
        seconds = '' if m['seconds'] is None else f'{m["seconds"]:.2f}'
        print(f'{m["method"]:<12} {m["trimap_set"]:<12} {m["n"]:>4} {m["SAD"]:>9.3f} '
              f'{m["MSE"]:>8.5f} {m["Grad"]:>9.3f} {m["Conn"]:>9.3f} {seconds:>7}')


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
    inputs = [p for example in examples for p in example[1:3] + example[4:]]
    refuse_overwriting_inputs(outputs + list(saved.values()), inputs + [args.ckpt_path])

    rows, panels = [], []
    total = len(examples) * len(methods)
    done = 0
    for example in examples:
        name, image_path, alpha_path, trimap_set, trimap_path, _ = example
        image = read_image(image_path)
        gt = to_uint8(read_alpha(alpha_path))
        trimap = read_trimap_reporting(trimap_path)
        panel = {'name': name, 'trimap_set': trimap_set, 'image': thumbnail(image),
                 'trimap': thumbnail(trimap), 'gt': thumbnail(gt), 'preds': {}}
        for method, predict in methods.items():
            t = time.perf_counter()
            alpha = predict(image, trimap, example)
            seconds = time.perf_counter() - t if method != PRED_DIR_METHOD else None
            matte = as_saved_matte(alpha, trimap)
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
    write_summary(outputs[1], means, args)
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
    return options.run_reporting_errors(run, args)


if __name__ == '__main__':
    sys.exit(main())
