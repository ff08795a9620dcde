"""Plot the losses of consecutive training runs (e.g. the three stages) into one picture.

``python -m scripts.plot_logs LOG_ROOT [LOG_ROOT ...] --out FILE.png``: each LOG_ROOT's ``log`` (Chainer's
LogReport JSON) is drawn after the previous one on a common iteration axis, with the stages marked.

``python -m scripts.plot_logs --whole RUN [RUN ...] --labels A B --out FILE.png``: the whole-photograph
validation curves (``whole_validation.json``, SAD and Gradient error) of several runs side by side,
beside closed-form matting's scores; a RUN is one log root or consecutive ones joined by ``+``
(``logs/vgg16/s1_160+logs/vgg16/s1_320``), drawn one after another; ``--examples`` draws them
against the training examples seen (log axis) instead of iterations.
"""
import argparse
import sys

from utils.errors import InputError, run_reporting_errors
from utils.training.curves import plot, plot_whole


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('log_roots', nargs='+', help='training log folders, in order (with '
                        '--whole: runs, each a folder or folders joined by +)')
    parser.add_argument('--out', required=True, help='PNG file to write')
    parser.add_argument('--whole', action='store_true',
                        help='plot the whole-photograph validation curves of the runs instead')
    parser.add_argument('--labels', nargs='+', help='with --whole: a legend label per run')
    parser.add_argument('--examples', action='store_true',
                        help='with --whole: against training examples seen (log axis), from each '
                             'folder\'s options.json batch size')
    args = parser.parse_args(argv)

    def run():
        labels = args.labels or args.log_roots
        if len(labels) != len(args.log_roots):
            raise InputError(f'--labels: {len(labels)} labels for {len(args.log_roots)} runs')
        if args.whole:
            plot_whole(args.log_roots, labels, args.out, args.examples)
        else:
            plot(args.log_roots, args.out)
        print(f'wrote {args.out}')
    return run_reporting_errors(run)


if __name__ == '__main__':
    sys.exit(main())
