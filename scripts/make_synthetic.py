"""Write a synthetic matting dataset: ``python -m scripts.make_synthetic OUT_DIR [--count N]``.

fg/, alpha/ and bg/ PNGs in the Adobe composition layout, drawn by ``utils.data.synthetic``.
"""
import argparse
import os
import sys

import numpy as np

from utils.data.synthetic import MAX_SIZE, MIN_SIZE, write_composition_dataset
from utils.errors import InputError, run_reporting_errors


def main(argv=None):
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog='python -m scripts.make_synthetic',
        description='Write a synthetic matting dataset (fg/, alpha/, bg/ PNGs, Adobe composition '
                    'layout) made from random shapes, hair, fur and the photos bundled with '
                    'scikit-image. No download needed.')
    parser.add_argument('out_dir', metavar='OUT_DIR', help='output folder (created if missing)')
    parser.add_argument('--count', type=int, default=12, help='number of fg/alpha pairs (default 12)')
    parser.add_argument('--size', type=int, nargs=2, default=(256, 256), metavar=('H', 'W'),
                        help=f'foreground height and width, {MIN_SIZE}-{MAX_SIZE} (default 256 256)')
    parser.add_argument('--backgrounds', type=int, default=None, metavar='N',
                        help='number of backgrounds (default: same as --count)')
    parser.add_argument('--seed', type=int, default=0, help='random seed, >= 0 (default 0)')
    args = parser.parse_args(argv)

    def run():
        if args.count < 1:
            raise InputError(f'--count must be >= 1, got {args.count}')
        if args.backgrounds is not None and args.backgrounds < 1:
            raise InputError(f'--backgrounds must be >= 1, got {args.backgrounds}')
        if not all(MIN_SIZE <= v <= MAX_SIZE for v in args.size):
            raise InputError(f'--size values must be between {MIN_SIZE} and {MAX_SIZE}, '
                             f'got {args.size[0]} {args.size[1]}')
        if args.seed < 0:
            raise InputError(f'--seed must be >= 0, got {args.seed}')
        if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
            raise InputError(f'{args.out_dir}: exists and is not a folder')
        write_composition_dataset(args.out_dir, args.count, np.random.default_rng(args.seed),
                                  size=tuple(args.size), n_backgrounds=args.backgrounds)
        print(f'wrote {args.count} samples and {args.backgrounds or args.count} backgrounds '
              f'to {args.out_dir}')
    return run_reporting_errors(run)


if __name__ == '__main__':
    sys.exit(main())
