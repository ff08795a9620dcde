"""Small checks shared by several test modules."""
import numpy as np


def rel_err(a, b):
    """Largest absolute difference relative to the largest magnitude of the reference b."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def one_error_line(stderr):
    """Whether a command's stderr is exactly one 'error: ...' line and no traceback."""
    lines = stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith('error: ') and 'Traceback' not in stderr
