"""Plot the losses of consecutive training runs (e.g. the three stages) into one picture.

``python -m utils.plot_logs LOG_ROOT [LOG_ROOT ...] --out FILE.png``: each LOG_ROOT's ``log`` (Chainer's
LogReport JSON) is drawn after the previous one on a common iteration axis, with the stages marked.
"""
import argparse
import json
import os
import sys

from utils.utils import InputError, atomic_write

KEYS = ('main/loss', 'main/loss_alpha', 'main/loss_comp')


def read_log(log_root):
    """List of LogReport entries of ``log_root/log``."""
    path = os.path.join(log_root, 'log')
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f'{path}: cannot read the training log ({type(e).__name__})')


def plot(log_roots, out):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.6))
    offset = 0
    colours = {'main/loss': 'C0', 'main/loss_alpha': 'C1', 'main/loss_comp': 'C2'}
    for k, root in enumerate(log_roots):
        entries = read_log(root)
        for key in KEYS:
            points = [(e['iteration'] + offset, e[key]) for e in entries if key in e]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, color=colours[key], label=key.split('/')[1] if k == 0 else None)
        end = entries[-1]['iteration'] + offset if entries else offset
        ax.axvline(end, color='0.7', lw=0.8)
        ax.text((offset + end) / 2, 1.0, os.path.basename(os.path.normpath(root)),
                transform=ax.get_xaxis_transform(), ha='center', va='bottom', fontsize=8)
        offset = end
    ax.set_xlabel('iteration (stages one after another)')
    ax.set_ylabel('loss (unknown pixels)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, format='png', dpi=100))
    finally:
        plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('log_roots', nargs='+', help='training log folders, in order')
    parser.add_argument('--out', required=True, help='PNG file to write')
    args = parser.parse_args(argv)
    try:
        plot(args.log_roots, args.out)
    except InputError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
