"""Export a checkpoint to ONNX: ``bash scripts/export_onnx.sh [CKPT] OUT.onnx`` (this module's face).

The conversion itself is ``utils.inference.onnx``.
"""
from utils.errors import quiet_while_importing

quiet_while_importing(__name__)  # (first: Ctrl-C during the imports below ends quietly)

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from nnet.model import DOWNSAMPLING  # noqa: E402
from options import DEFAULT_CHECKPOINT  # noqa: E402
from utils.errors import InputError, run_reporting_errors  # noqa: E402
from utils.inference.onnx import INPUTS, OPSET, OUTPUTS, export_dim  # noqa: E402
from utils.training.checkpoint import checked_checkpoint, load_model  # noqa: E402


def main(argv=None):
    shipped = DEFAULT_CHECKPOINT
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(
        prog='scripts/export_onnx.sh',
        description='Write a checkpoint as an ONNX model (opset 11) for any height and width '
                    f'that are multiples of {DOWNSAMPLING}, its pre-processing in the metadata.')
    parser.add_argument('paths', nargs='+', metavar='[CKPT] OUT.onnx',
                        help=f'checkpoint (default: {os.path.relpath(shipped, root)}) and the '
                             'ONNX file to write')
    args = parser.parse_args(argv)
    if len(args.paths) > 2:
        parser.error('give at most a checkpoint and an output file')
    ckpt, out = args.paths if len(args.paths) == 2 else (shipped, args.paths[0])

    def run():
        if not out.endswith('.onnx'):
            raise InputError(f'{out}: the output should end in .onnx')
        if os.path.exists(out) and os.path.realpath(out) == os.path.realpath(ckpt):
            raise InputError(f'{out}: output would overwrite the checkpoint')
        start = time.perf_counter()
        model = load_model(checked_checkpoint(ckpt, shipped))
        size = export_dim(model, out, os.path.basename(ckpt))
        print(f'wrote {out} ({size / 2 ** 20:.1f} MB, width {model.config["width"]:g}, opset '
              f'{OPSET}, inputs {", ".join(INPUTS)} -> outputs {", ".join(OUTPUTS)}; '
              f'{time.perf_counter() - start:.1f} s)')
    return run_reporting_errors(run)


if __name__ == '__main__':
    sys.exit(main())
