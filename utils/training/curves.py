"""Pictures of training runs: losses of consecutive phases, whole-photograph validation curves.

``scripts/plot_logs.py`` draws them from the command line; ``WholeImageValidation``
(``utils.training.extensions``) redraws its curve after every validation.
"""
import json
import os

from utils.errors import InputError
from utils.images import atomic_write

KEYS = ('main/loss', 'main/loss_alpha', 'main/loss_comp')


def read_log(log_root):
    """List of LogReport entries of ``log_root/log``."""
    path = os.path.join(log_root, 'log')
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f'{path}: cannot read the training log ({type(e).__name__})')


def _batch_size(root):
    """The ``batch_size`` in ``root/options.json`` (examples per iteration)."""
    path = os.path.join(root, 'options.json')
    try:
        with open(path) as f:
            return int(json.load(f)['batch_size'])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f'{path}: cannot read the batch size ({type(e).__name__})')


def read_whole_validation(run, examples=False):
    """(iterations, SAD means, Grad means, closed-form's {SAD, Grad}) of a RUN (see the docstring);
    with ``examples`` the first list is the training examples seen instead of iterations."""
    its, sad, grad, offset, closed_form = [], [], [], 0, None
    for root in run.split('+'):
        scale = _batch_size(root) if examples else 1
        path = os.path.join(root, 'whole_validation.json')
        try:
            with open(path) as f:
                history = json.load(f)
            validations = history['validations']
            closed_form = closed_form or history['closed_form']['mean']
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f'{path}: cannot read the whole-photograph validation ({type(e).__name__})')
        for v in validations:
            its.append(v['iteration'] * scale + offset)
            sad.append(v['mean']['SAD'])
            grad.append(v['mean']['Grad'])
        offset = its[-1] if its else offset
    return its, sad, grad, closed_form


def plot_whole_curves(curves, closed_form, out, target=0.7, examples=False):
    """Draw whole-photograph validation curves beside closed-form's scores and ``target`` x them.

    Args:
        curves: (label, iterations, SAD means, Grad means) per run.
        closed_form: closed-form matting's mean scores, {'SAD': .., 'Grad': ..}.
        out: PNG file to write (atomically).
        examples: the x values are examples seen (drawn on a log axis), not iterations.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, col in zip(axes, ('SAD', 'Grad'), (2, 3)):
        for curve in curves:
            ax.plot(curve[1], curve[col], 'o-', ms=3, label=curve[0])
        cf = closed_form[key]
        ax.axhline(cf, color='gray', ls='--', label=f'closed-form ({cf:.2f})')
        ax.axhline(target * cf, color='green', ls=':', label=f'{target} x closed-form')
        ax.set_xlabel('training examples seen' if examples else 'iteration')
        if examples:
            ax.set_xscale('log')
        ax.set_title(f'{key} of the held-back photographs, whole (mean)')
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, format='png', dpi=90))
    finally:
        plt.close(fig)


def plot_whole(runs, labels, out, examples=False):
    """The whole-photograph validation curves of ``runs`` (see the module docstring) into ``out``,
    against iterations or (``examples``) training examples seen."""
    read = [read_whole_validation(run, examples) for run in runs]
    plot_whole_curves([(label,) + r[:3] for label, r in zip(labels, read)], read[0][3], out,
                      examples=examples)


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
