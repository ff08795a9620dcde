"""Running a command-line face: the user's problems as one line on stderr and an exit code."""
import contextlib
import sys

from utils.interrupts import INTERRUPTED, raise_from_now_on, release_quietly
from utils.utils import InputError


def run_reporting_errors(run, *args, errors=(), interrupted='interrupted'):
    """Call ``run(*args)`` and turn the user's problems into one line on stderr and an exit code.

    InputError, OSError (writing: permissions, full disk) and ``errors`` give 'error: ...' and 1;
    Ctrl-C prints ``interrupted`` and gives 130 (raising KeyboardInterrupt again after a script's
    ``utils.interrupts.quiet_while_importing``); otherwise the exit code is what ``run`` returns
    (None: 0). Before running, freed memory is kept for reuse (``nnet.cpu.keep_freed_memory``:
    faster CPU layers) and the first argument's ``--precision``, when it has one, is applied
    (``use_precision``).
    """
    from nnet.cpu import keep_freed_memory
    raise_from_now_on()
    keep_freed_memory()
    try:
        with use_precision(args[0] if args else None):
            code = run(*args)
    except (InputError, OSError) + tuple(errors) as e:
        print(f'error: {e}'.splitlines()[0], file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        release_quietly(e)
        print(f'\n{interrupted}', file=sys.stderr)
        return INTERRUPTED
    return code or 0


def use_precision(args):
    """A context that runs the CPU backend (nnet.cpu) in ``args.precision`` (no-op without
    one); raises InputError for bf16 on a GPU."""
    from nnet.cpu import precision
    name = getattr(args, 'precision', None)
    if name is None:
        return contextlib.nullcontext()
    if name == 'bf16' and args.gpu_id >= 0:
        raise InputError('--precision bf16 is for the CPU only (on a GPU the layers are '
                         "Chainer's own functions in float32)")
    return precision(name)
