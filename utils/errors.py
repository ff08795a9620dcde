"""How a command-line face ends: the user's problems as one line on stderr and an exit code.

* ``InputError``: a problem with the user's input (a file, an option); its message is the line.
* ``run_reporting_errors``: runs a face's work and turns InputError, OSError and Ctrl-C into
  'error: ...' and exit code 1, or the interrupted message and 130, never a traceback.
* Ctrl-C while a face is still importing its libraries (a second or more: Chainer,
  scikit-image) ends it at once (``quiet_while_importing``): nothing has been written yet.
  Once it runs, Ctrl-C raises KeyboardInterrupt again, so that training stops cleanly and says
  how to resume; ``release_quietly`` keeps the objects it caught half-built from printing their
  finalizers' errors.
* Under an MPI launcher every process runs the same face: the launcher's rank 0 alone prints
  (``launcher_rank``; ``utils.training.distributed`` reports the errors of a running job).

This module imports only the standard library (the faces import it first).
"""
import gc
import os
import signal
import sys
import traceback

INTERRUPTED = 130  # the exit code of a process ended by Ctrl-C (128 + SIGINT)


class InputError(Exception):
    """A problem with the user's input: the faces print its message as one line and exit 1."""


def _launcher_value(names, default):
    for name in names:
        if os.environ.get(name, '').isdigit():
            return int(os.environ[name])
    return default


def launcher_rank():
    """This process's rank as the MPI launcher set it in the environment (0 outside MPI)."""
    return _launcher_value(('OMPI_COMM_WORLD_RANK', 'PMIX_RANK', 'PMI_RANK'), 0)


def launcher_size():
    """The number of processes the MPI launcher started (1 outside MPI)."""
    return _launcher_value(('OMPI_COMM_WORLD_SIZE', 'PMI_SIZE'), 1)


def _end_now(signum, frame):
    if launcher_rank() == 0:
        print('\ninterrupted', file=sys.stderr, flush=True)
    os._exit(INTERRUPTED)


def quiet_while_importing(module_name):
    """In a face's ``__main__`` (``module_name``), make Ctrl-C end the process at once until
    ``raise_from_now_on``. An ignored SIGINT (nohup, a shell's background job) stays ignored."""
    if module_name == '__main__' and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _end_now)


def raise_from_now_on():
    """Ctrl-C raises KeyboardInterrupt again (a no-op unless ``quiet_while_importing`` ran)."""
    if signal.getsignal(signal.SIGINT) is _end_now:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def release_quietly(interrupt):
    """Free what the frames ``interrupt`` (a KeyboardInterrupt) stopped still hold, silencing
    their finalizers' errors.

    Ctrl-C can land inside a library's constructor; the half-built object's ``__del__`` then
    fails on a missing attribute (imageio's PillowPlugin does) and Python prints that as a
    traceback after the one-line message. Only these objects are released in silence.
    """
    saved = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        traceback.clear_frames(interrupt.__traceback__)  # (the running frame itself stays)
        gc.collect()
    finally:
        sys.unraisablehook = saved


def run_reporting_errors(run, *args, errors=(), interrupted='interrupted'):
    """Call ``run(*args)`` and turn the user's problems into one line on stderr and an exit code.

    InputError, OSError (writing: permissions, full disk) and ``errors`` give 'error: ...' and 1;
    Ctrl-C prints ``interrupted`` and gives 130; otherwise the exit code is what ``run`` returns
    (None: 0). Only the launcher's rank 0 prints. Before running, freed memory is kept for reuse
    (``nnet.cpu.keep_freed_memory``: faster CPU layers).
    """
    from nnet.cpu import keep_freed_memory
    raise_from_now_on()
    keep_freed_memory()
    try:
        code = run(*args)
    except (InputError, OSError) + tuple(errors) as e:
        return _say(f'error: {e}'.splitlines()[0], 1)
    except KeyboardInterrupt as e:
        release_quietly(e)
        return _say(f'\n{interrupted}', INTERRUPTED)
    return code or 0


def _say(line, code):
    if launcher_rank() == 0:
        print(line, file=sys.stderr, flush=True)
    return code
