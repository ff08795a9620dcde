"""What evaluate.py reports: mean rows, metrics.csv, summary.md, figure.png and the printed table.

Rows are dicts: name, trimap_set, method, the ``METRICS`` (floats) and seconds (float or None);
a method that declined an image has a row with ``refused`` (the reason) and no metrics. Means are
over the images a method scored (``MEAN`` rows, with how many it scored and refused) and, when
some method refused an image, also over the images every method scored (``MEAN_COMMON`` rows),
so that methods are compared on the same images. Every file is written atomically.
"""
import csv
import io

import numpy as np

from utils.images import atomic_write

METRICS = ('SAD', 'MSE', 'Grad', 'Conn')
MEAN_NAME = 'MEAN'  # the name column of mean rows (over the images each method scored)
COMMON_NAME = 'MEAN_COMMON'  # ... of mean rows over the images every method scored
ALL_SETS = 'ALL'  # the trimap-set column of per-method overall means
THUMBNAIL_SIDE = 160  # longest side of the figure's thumbnails, in pixels
MAX_FIGURE_ROWS = 40  # image x set rows shown in figure.png


def thumbnail(x):
    """Downscale (nearest) so that the longest side is at most THUMBNAIL_SIDE."""
    step = max(1, int(np.ceil(max(x.shape[:2]) / THUMBNAIL_SIDE)))
    return np.ascontiguousarray(x[::step, ::step])


def _means(rows, methods, sets, name):
    out = []
    for method in methods:
        for trimap_set in list(sets) + [ALL_SETS]:
            chosen = [r for r in rows if r['method'] == method
                      and (trimap_set == ALL_SETS or r['trimap_set'] == trimap_set)]
            if not chosen:
                continue
            scored = [r for r in chosen if not r.get('refused')]
            mean = {'name': name, 'trimap_set': trimap_set, 'method': method,
                    'n': len(scored), 'refused': len(chosen) - len(scored)}
            for key in METRICS + ('seconds',):
                values = [r[key] for r in scored if r[key] is not None]
                mean[key] = float(np.mean(values)) if values else None
            out.append(mean)
    return out


def mean_rows(rows, methods, sets):
    """``MEAN`` rows per method and set, then per method over all sets (over the images each
    method scored; ``n`` scored, ``refused`` declined); then, if any image was refused, the same
    over the images every method scored (``MEAN_COMMON``)."""
    out = _means(rows, methods, sets, MEAN_NAME)
    refused = {(r['name'], r['trimap_set']) for r in rows if r.get('refused')}
    if refused:
        common = [r for r in rows if (r['name'], r['trimap_set']) not in refused]
        out += _means(common, methods, sets, COMMON_NAME)
    return out


def write_csv(path, rows):
    """metrics.csv: a row per image, trimap set and method (then the mean rows). ``n`` and
    ``refused`` are the counts of mean rows; ``refused`` of an image row says why."""
    columns = ['name', 'trimap_set', 'method'] + list(METRICS) + ['seconds', 'n', 'refused']
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(columns)

    def cell(row, column):
        value = row.get(column)
        if value is None or isinstance(value, str):
            return value or ''
        return str(value) if isinstance(value, int) else f'{value:.6g}'
    for row in rows:
        writer.writerow([cell(row, c) for c in columns])
    text = buffer.getvalue()

    def write(tmp):
        with open(tmp, 'w', newline='') as f:
            f.write(text)
    atomic_write(path, write)


def _number(value, digits):
    return '-' if value is None else f'{value:.{digits}f}'


def summary_table(means):
    """Markdown tables of the mean rows: over the images each method scored, then (if any was
    refused) over the images every method scored."""
    tables = []
    for name, title in ((MEAN_NAME, 'Over the images each method scored'),
                        (COMMON_NAME, 'Over the images every method scored')):
        chosen = [m for m in means if m['name'] == name]
        if not chosen:
            continue
        lines = [f'{title}:', '',
                 '| method | trimap set | scored | refused | SAD | MSE | Grad | Conn | s / image |',
                 '|---|---|---:|---:|---:|---:|---:|---:|---:|']
        for m in chosen:
            trimap_set = 'all' if m['trimap_set'] == ALL_SETS else m['trimap_set']
            seconds = '' if m['seconds'] is None else f'{m["seconds"]:.2f}'
            lines.append(f'| {m["method"]} | {trimap_set} | {m["n"]} | {m["refused"]} '
                         f'| {_number(m["SAD"], 2)} | {_number(m["MSE"], 4)} '
                         f'| {_number(m["Grad"], 2)} | {_number(m["Conn"], 2)} | {seconds} |')
        tables.append('\n'.join(lines))
    return '\n\n'.join(tables)


def write_summary(path, means, dataset_name):
    """summary.md: what was scored and ``summary_table(means)``."""
    text = (f'Mean errors on `{dataset_name}`, in the units of the DIM paper\'s tables: SAD, '
            'Grad and Conn divided by 1000 as in the authors\' evaluate.m, MSE over the unknown '
            'pixels of alpha in [0, 1]; mattes scored as 8-bit PNGs with trimap-known pixels '
            'forced to 0 / 255. A method that could not give a matte for an image is counted '
            'as refused for it (metrics.csv says why) and left out of its means.\n\n'
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
        first = panel['preds'].get(methods[0])
        blank = np.ones_like(panel['gt'])
        error = blank if first is None else \
            np.abs(first.astype(np.float32) - panel['gt'].astype(np.float32)) / 255.0
        pictures = ([panel['image'], panel['trimap']] + [panel['preds'].get(m, blank)
                                                         for m in methods] + [panel['gt'], error])
        for ax, picture, title in zip(row, pictures, titles):
            if picture is blank:
                ax.imshow(np.full(blank.shape, 230, np.uint8), cmap='gray', vmin=0, vmax=255)
                ax.text(0.5, 0.5, 'refused', ha='center', va='center', fontsize=7,
                        transform=ax.transAxes)
            elif picture is error:
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
    """The mean rows as plain-text tables on stdout (as ``summary_table``)."""
    for name, title in ((MEAN_NAME, 'means over the images each method scored'),
                        (COMMON_NAME, 'means over the images every method scored')):
        chosen = [m for m in means if m['name'] == name]
        if not chosen:
            continue
        print(f'{title}:')
        print(f'{"method":<12} {"trimap set":<12} {"n":>4} {"refused":>7} {"SAD":>9} {"MSE":>8} '
              f'{"Grad":>9} {"Conn":>9} {"s/img":>7}')
        for m in chosen:
            seconds = '' if m['seconds'] is None else f'{m["seconds"]:.2f}'
            print(f'{m["method"]:<12} {m["trimap_set"]:<12} {m["n"]:>4} {m["refused"]:>7} '
                  f'{_number(m["SAD"], 3):>9} {_number(m["MSE"], 5):>8} '
                  f'{_number(m["Grad"], 3):>9} {_number(m["Conn"], 3):>9} {seconds:>7}')
