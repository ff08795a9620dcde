"""The CPU backend of the model's layers: oneDNN convolutions (float32 or bfloat16 operands, ReLU
fused), oneDNN max-pooling and index unpooling, and Chainer's stock functions where oneDNN
cannot load or is not wanted.

The functions and links here take the arguments of Chainer's (``convolution_2d``,
``Convolution2D``, ``max_pooling_2d``, ``upsampling_2d``, ``relu``; ``Conv2DActiv`` as
chainercv's) and choose their path inside, by ``chainer.config.dim_cpu_backend`` and
``chainer.config.dim_cpu_precision`` (``nnet.cpu.config``), as Chainer's own functions choose
iDeep. The model (nnet/model.py) imports its layers from here and nothing here imports the
model. NumPy arrays only: CuPy arrays always go to Chainer's own functions.

Modules, each importing only those before it: ``memory`` (recycled buffers, layouts), ``dnnl``
(the library through ctypes), ``config`` (the settings), ``activation`` (ReLU, casts), ``pool``
(pooling, unpooling), ``conv`` (convolutions).
"""
import contextlib

import chainer

from nnet.cpu.activation import relu  # noqa: F401
from nnet.cpu.config import backend, precision, set_precision, use_onednn  # noqa: F401
from nnet.cpu.conv import (Conv2DActiv, Convolution2D, bf16_available, bf16_missing,  # noqa: F401
                           convolution_2d, effective_precision)
from nnet.cpu.memory import keep_freed_memory  # noqa: F401
from nnet.cpu.pool import max_pooling_2d, upsampling_2d  # noqa: F401


@contextlib.contextmanager
def stock_path():
    """Within this context convolutions, poolings and ReLUs run Chainer's stock functions
    (``chainer.config.dim_cpu_backend = 'never'``)."""
    with chainer.using_config('dim_cpu_backend', 'never'):
        yield
