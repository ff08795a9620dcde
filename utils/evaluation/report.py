"""What evaluate.py reports: mean rows, metrics.csv, summary.md, figure.png and the printed table.

Rows are dicts: name, trimap_set, method, the ``METRICS`` (floats) and seconds (float or None).
Every file is written atomically.
"""
import csv
import io

import numpy as np

from utils.images import atomic_write

METRICS = ('SAD', 'MSE', 'Grad', 'Conn')
MEAN_NAME = 'MEAN'  # the name column of mean rows
ALL_SETS = 'ALL'  # the trimap-set column of per-method overall means
THUMBNAIL_SIDE = 160  # longest side of the figure's thumbnails, in pixels
MAX_FIGURE_ROWS = 40  # image x set rows shown in figure.png


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
    """metrics.csv: a row per image, trimap set and method (then the mean rows)."""
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


def write_summary(path, means, dataset_name):
    """summary.md: what was scored and ``summary_table(means)``."""
    text = (f'Mean errors on `{dataset_name}` '
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
    """The mean rows as a plain-text table on stdout."""
    print(f'{"method":<12} {"trimap set":<12} {"n":>4} {"SAD":>9} {"MSE":>8} {"Grad":>9} '
          f'{"Conn":>9} {"s/img":>7}')
    for m in means:
        seconds = '' if m['seconds'] is None else f'{m["seconds"]:.2f}'
        print(f'{m["method"]:<12} {m["trimap_set"]:<12} {m["n"]:>4} {m["SAD"]:>9.3f} '
              f'{m["MSE"]:>8.5f} {m["Grad"]:>9.3f} {m["Conn"]:>9.3f} {seconds:>7}')
