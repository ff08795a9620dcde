"""The CPU backend's two settings, in ``chainer.config``: which path runs, and in which precision.

* ``chainer.config.dim_cpu_backend`` (as Chainer's ``use_ideep``):
  'auto' (the default): oneDNN where its library loads and works (``nnet.cpu.dnnl``), else
  Chainer's stock functions, with one warning line the first time it matters;
  'never': Chainer's stock functions; 'always': oneDNN, an error where it cannot load.
  The environment variable ``DIM_CPU_BACKEND`` sets the default (``fallback`` is 'never').
* ``chainer.config.dim_cpu_precision``: 'fp32' (default) or 'bf16': convolutions take bfloat16
  operands (inputs, weights, output gradients rounded to nearest even), accumulate in float32 and
  return float32 outputs and gradients, except the activations between the model's layers and
  their gradients, which stay bfloat16 (``nnet.cpu.conv``); weights, their gradients, optimizer
  state and losses stay float32. bf16 needs oneDNN and a CPU it has bfloat16 convolutions for
  (AVX-512): elsewhere it runs float32 and says so once (``nnet.cpu.conv.effective_precision``).

``with precision('bf16'):`` is ``chainer.using_config('dim_cpu_precision', 'bf16')`` with the
name checked. Both settings apply to NumPy arrays only: CuPy arrays always go through Chainer's
own functions.
"""
import contextlib
import os
import sys

import chainer
import numpy as np

from nnet.cpu import dnnl

BACKENDS = ('never', 'auto', 'always')
PRECISIONS = ('fp32', 'bf16')
ENVIRONMENT_NAMES = {'fallback': 'never', 'onednn': 'auto'}  # DIM_CPU_BACKEND's older values
_WARNED = set()


def _default_backend():
    value = os.environ.get('DIM_CPU_BACKEND', 'auto').strip().lower()
    value = ENVIRONMENT_NAMES.get(value, value)
    return value if value in BACKENDS else 'auto'


chainer.global_config.dim_cpu_backend = _default_backend()
chainer.global_config.dim_cpu_precision = 'fp32'


def warn_once(key, message):
    if key not in _WARNED:
        _WARNED.add(key)
        print(f'warning: {message}', file=sys.stderr)


def use_onednn():
    """Whether this package's layers run on oneDNN now (``dim_cpu_backend``, see above)."""
    setting = chainer.config.dim_cpu_backend
    if setting not in BACKENDS:
        raise ValueError(f'chainer.config.dim_cpu_backend {setting!r}: use one of '
                         f'{", ".join(BACKENDS)}')
    if setting == 'never':
        return False
    if dnnl.library() is not None:
        return True
    if setting == 'always':
        raise RuntimeError(f'oneDNN is not available ({dnnl.load_error()}) and '
                           "chainer.config.dim_cpu_backend is 'always'")
    warn_once('fallback', f'oneDNN is not available ({dnnl.load_error()}); CPU layers use '
                          'stock Chainer functions (slower)')
    return False


def backend():
    """'onednn' or 'fallback': the path the layers take now (for reports)."""
    return 'onednn' if use_onednn() else 'fallback'


def onednn_array(a, dtypes):
    """Whether oneDNN takes ``a``: a 4-D NumPy array of one of ``dtypes``, oneDNN in use."""
    return type(a) is np.ndarray and a.dtype in dtypes and a.ndim == 4 and use_onednn()


def requested_precision():
    """The precision asked for (``dim_cpu_precision``); see ``nnet.cpu.conv.effective_precision``
    for the one that runs."""
    name = chainer.config.dim_cpu_precision
    if name not in PRECISIONS:
        raise ValueError(f'precision {name!r}: use one of {", ".join(PRECISIONS)}')
    return name


def set_precision(name):
    """Set the CPU convolutions' precision for the process: 'fp32' or 'bf16'. Returns the
    previous one."""
    if name not in PRECISIONS:
        raise ValueError(f'precision {name!r}: use one of {", ".join(PRECISIONS)}')
    before, chainer.global_config.dim_cpu_precision = chainer.global_config.dim_cpu_precision, name
    return before


@contextlib.contextmanager
def precision(name):
    """``with precision('bf16'):`` runs the block's CPU convolutions in that precision."""
    if name not in PRECISIONS:
        raise ValueError(f'precision {name!r}: use one of {", ".join(PRECISIONS)}')
    with chainer.using_config('dim_cpu_precision', name):
        yield
