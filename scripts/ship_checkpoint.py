"""Write a checkpoint as it is shipped: parameters stored as float16 (half the bytes; cast back to
float32 on loading), config unchanged.

    python -m scripts.ship_checkpoint SRC.npz DST.npz [--identity_refinement]

``--identity_refinement`` is for a checkpoint whose refinement stage has not been trained yet
(stage 1 only): its last layer is set to zero, so the refinement passes the encoder-decoder's
alpha through unchanged instead of adding an untrained residual.
"""
import argparse
import json
import sys

import numpy as np

from utils.errors import InputError, run_reporting_errors
from utils.images import atomic_write
from utils.training.checkpoint import CONFIG_KEY, load_checkpoint, model_arrays

SHIPPED_DTYPE = np.float16


def write_shipped(src, dst, identity_refinement=False):
    """Read checkpoint ``src``, write it to ``dst`` with float16 parameters (atomic).
    Returns the largest absolute parameter change the cast made."""
    model = load_checkpoint(src)
    if identity_refinement:
        model.refinement.refine_pred.W.array[...] = 0
        model.refinement.refine_pred.b.array[...] = 0
    arrays = model_arrays(model)
    finfo = np.finfo(SHIPPED_DTYPE)
    worst = 0.0
    for name, value in arrays.items():
        if np.abs(value).max(initial=0) > finfo.max:
            raise InputError(f'{src}: parameter {name} exceeds the float16 range')
        arrays[name] = value.astype(SHIPPED_DTYPE)
        worst = max(worst, float(np.abs(arrays[name].astype(np.float32) - value).max(initial=0)))
    arrays[CONFIG_KEY] = np.array(json.dumps(model.config))

    def write(tmp):
        with open(tmp, 'wb') as f:
            np.savez_compressed(f, **arrays)
    atomic_write(dst, write)
    return worst


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('src', help='checkpoint written by train.py')
    p.add_argument('dst', help='shipped checkpoint to write')
    p.add_argument('--identity_refinement', action='store_true',
                   help='zero the refinement\'s last layer (for a stage-1-only checkpoint)')
    args = p.parse_args(argv)

    def run():
        worst = write_shipped(args.src, args.dst, args.identity_refinement)
        print(f'wrote {args.dst} (float16; largest parameter change {worst:.2e})')
    return run_reporting_errors(run)


if __name__ == '__main__':
    sys.exit(main())
