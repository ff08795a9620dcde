"""The CPU backend of the model's layers: oneDNN convolutions (float32 or bfloat16 operands, ReLU
fused), oneDNN max-pooling and unpooling, and one fallback, stock Chainer functions, where
oneDNN cannot load.

The model (nnet/model.py) imports its layers from here and nothing here imports the model.
NumPy arrays only: CuPy arrays always go to Chainer's own functions (cuDNN). See
``nnet.cpu.config`` for the backend choice (``DIM_CPU_BACKEND=fallback``) and the precision
(``set_precision('bf16')``), ``nnet.cpu.conv`` for how the convolutions run.
"""
import contextlib

import chainer

from nnet.cpu.config import (backend, bf16_available, bf16_missing, get_precision,  # noqa: F401
                             precision, set_precision)
from nnet.cpu.conv import Convolution2D, convolution_2d  # noqa: F401
from nnet.cpu.memory import keep_freed_memory  # noqa: F401
from nnet.cpu.pool import max_pooling_2x2, relu, unpooling_2x2  # noqa: F401

# ``chainer.using_config('fast_cpu', False)`` (or ``stock_path()``) sends every layer of this
# package to the stock Chainer functions, whatever the backend.
chainer.global_config.fast_cpu = True


@contextlib.contextmanager
def stock_path():
    """Within this context convolutions, poolings and ReLUs run Chainer's stock functions."""
    with chainer.using_config('fast_cpu', False):
        yield
