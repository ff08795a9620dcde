"""Ctrl-C in the command-line scripts: one line and exit code 130 at any moment, no traceback.

While a script is still importing its libraries (a second or more: Chainer, scikit-image),
Ctrl-C ends it at once: nothing has been written yet, so nothing is lost. Once it runs
(``utils.cli.run_reporting_errors``), Ctrl-C raises KeyboardInterrupt again, so that training
stops cleanly and says how to resume; ``release_quietly`` then keeps the objects that Ctrl-C
caught half-built from printing their finalizers' errors. This module imports only the standard
library.
"""
import gc
import os
import signal
import sys
import traceback

INTERRUPTED = 130  # the exit code of a process ended by Ctrl-C (128 + SIGINT)


def _end_now(signum, frame):
    if os.environ.get('OMPI_COMM_WORLD_RANK', os.environ.get('PMI_RANK', '0')) == '0':
        print('\ninterrupted', file=sys.stderr, flush=True)
    os._exit(INTERRUPTED)


def quiet_while_importing(module_name):
    """In a script's ``__main__`` (``module_name``), make Ctrl-C end the process at once until
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
