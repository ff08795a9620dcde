"""Running a command-line face: the user's problems as one line on stderr and an exit code."""
import sys

from utils.utils import InputError


def run_reporting_errors(run, *args, errors=(), interrupted='interrupted'):
    """Call ``run(*args)`` and turn the user's problems into one line on stderr and an exit code.

    InputError, OSError (writing: permissions, full disk) and ``errors`` give 'error: ...' and 1;
    Ctrl-C prints ``interrupted`` and gives 130; otherwise the exit code is what ``run`` returns
    (None: 0). Before running, freed memory is kept for reuse
    (``nnet.fast_conv.keep_freed_memory``: faster CPU layers).
    """
    from nnet.fast_conv import keep_freed_memory
    keep_freed_memory()
    try:
        code = run(*args)
    except (InputError, OSError) + tuple(errors) as e:
        print(f'error: {e}'.splitlines()[0], file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'\n{interrupted}', file=sys.stderr)
        return 130
    return code or 0
