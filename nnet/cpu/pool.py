"""2x2 max-pooling with indices, the matching unpooling and ReLU, fast and lean on CPU.

``max_pooling_2x2(x)`` is ``F.max_pooling_2d(x, 2, stride=2, return_indices=True)``,
``unpooling_2x2(x, indexes, outsize)`` is ``F.upsampling_2d(x, indexes, ksize=2, stride=2,
outsize=outsize)`` and ``relu(x)`` is ``F.relu(x)``: the same values and the same gradients. For
NumPy arrays (pooling: even H and W) they run as the ``FunctionNode``s below: a few whole-array
NumPy passes over the four strided views of each 2x2 window instead of Chainer's im2col/col2im,
int8 window indices (0 = top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right; the first
maximum in that order, as ``argmax`` picks it), outputs in the input's memory layout
(channels-last stays channels-last), and the work split by rows over a few Python threads
(NumPy releases the GIL; ReLU's backward too). ``relu(x, inplace=True)`` writes into
x's memory: for an x that nothing else uses (a convolution's output), one full-size array less.

Anything else (CuPy, odd sizes) goes to the stock functions, and so does everything on the
fallback backend or under ``nnet.cpu.stock_path()``.
"""
import concurrent.futures
import os
import threading

import chainer
import chainer.functions as F
import numpy as np
from chainer import function_node

from nnet.cpu import config, memory

THREADS = None  # threads for the row chunks (None: the usable cores)
THREAD_CHUNK = 1 << 16  # elements below which the work is not split
_POOL = None  # (threads, executor, pid)
_LOCK = threading.Lock()


def _threads():
    return THREADS or len(os.sched_getaffinity(0))


def _by_rows(rows, total_size, fn):
    """fn(r0, r1) over chunks of ``rows`` rows, on several threads when there is enough work."""
    global _POOL
    nt = _threads()
    n_chunks = max(1, min(rows, 4 * nt, total_size // THREAD_CHUNK))
    step = -(-rows // n_chunks)
    chunks = [(r, min(r + step, rows)) for r in range(0, rows, step)]
    if nt <= 1 or len(chunks) <= 1 or not _LOCK.acquire(blocking=False):
        for r0, r1 in chunks:
            fn(r0, r1)
        return
    try:
        if _POOL is None or _POOL[0] != nt or _POOL[2] != os.getpid():  # (new after a fork)
            _POOL = (nt, concurrent.futures.ThreadPoolExecutor(nt, 'nnet_cpu'), os.getpid())
        for f in [_POOL[1].submit(fn, r0, r1) for r0, r1 in chunks]:
            f.result()
    finally:
        _LOCK.release()


def _corners(a):
    """The four (N, C, H/2, W/2) strided views of a's 2x2 windows, in index order."""
    n, c, h, w = a.shape
    a6 = a.reshape(n, c, h // 2, 2, w // 2, 2)
    return a6[:, :, :, 0, :, 0], a6[:, :, :, 0, :, 1], a6[:, :, :, 1, :, 0], a6[:, :, :, 1, :, 1]


def _empty(shape, like, dtype=None):
    """np.empty of an NCHW shape, in like's memory layout when that is channels-last."""
    dtype = like.dtype if dtype is None else dtype
    if like.strides[1] < like.strides[3] and like.shape[1] > 1:
        n, c, h, w = shape
        return memory.empty((n, h, w, c), dtype).transpose(0, 3, 1, 2)
    return memory.empty(shape, dtype)


def _pool(x):
    """(max over each 2x2 window, int8 index of its first maximum)."""
    n, c, h, w = x.shape
    y = _empty((n, c, h // 2, w // 2), x)
    indexes = _empty((n, c, h // 2, w // 2), x, np.int8)

    def rows(r0, r1):
        a, b, cc, d = _corners(x[:, :, 2 * r0:2 * r1])
        top = np.maximum(a, b)
        bottom = np.maximum(cc, d)
        i_top = (b > a).view(np.int8)  # 0 or 1: ties keep the first
        i_bottom = (d > cc).view(np.int8)
        i_bottom += 2
        np.maximum(top, bottom, out=y[:, :, r0:r1])
        indexes[:, :, r0:r1] = np.where(bottom > top, i_bottom, i_top)

    _by_rows(h // 2, x.size, rows)
    return y, indexes


def _scatter(x, indexes):
    """(N, C, 2h, 2w) zeros with x[n, c, i, j] at window (i, j)'s position indexes[n, c, i, j].

    Written as bit masks (value AND all-ones / all-zeros) so that every value, NaN, inf and -0.0
    included, lands unchanged and the other positions are +0.0, exactly like F.upsampling_2d.
    """
    n, c, h, w = x.shape
    out = _empty((n, c, 2 * h, 2 * w), x)
    ints = {4: np.int32, 8: np.int64}.get(x.itemsize)

    def rows(r0, r1):
        xs, idx, o = x[:, :, r0:r1], indexes[:, :, r0:r1], out[:, :, 2 * r0:2 * r1]
        if ints is None:
            o[...] = 0
            for k, view in enumerate(_corners(o)):
                np.copyto(view, xs, where=(idx == k))
            return
        for k, view in enumerate(_corners(o.view(ints))):
            mask = (idx == k).view(np.int8)
            np.negative(mask, out=mask)  # 0 or -1 (all bits set once widened)
            np.bitwise_and(xs.view(ints), mask, out=view)

    _by_rows(h, out.size, rows)
    return out


def _gather(g, indexes):
    """(N, C, H/2, W/2): g at each 2x2 window's position indexes."""
    n, c, h, w = g.shape
    out = _empty((n, c, h // 2, w // 2), g)

    def rows(r0, r1):
        a, b, cc, d = _corners(g[:, :, 2 * r0:2 * r1])
        o, idx = out[:, :, r0:r1], indexes[:, :, r0:r1]
        o[...] = a
        for k, view in ((1, b), (2, cc), (3, d)):
            np.copyto(o, view, where=(idx == k))

    _by_rows(h // 2, g.size, rows)
    return out


class MaxPooling2x2(function_node.FunctionNode):
    """y = 2x2/stride-2 max-pooling of x (even H, W); ``self.indexes`` after forward."""

    indexes = None

    def forward(self, inputs):
        x, = inputs
        y, self.indexes = _pool(x)
        return y,

    def backward(self, indexes, grad_outputs):
        return Unpooling2x2(self.indexes).apply(grad_outputs)


class Unpooling2x2(function_node.FunctionNode):
    """Each value to its window's position ``indexes`` in a zero (N, C, 2H, 2W) array."""

    def __init__(self, indexes):
        self.indexes = indexes

    def forward(self, inputs):
        x, = inputs
        return _scatter(x, self.indexes),

    def backward(self, indexes, grad_outputs):
        return Gather2x2(self.indexes).apply(grad_outputs)


class Gather2x2(function_node.FunctionNode):
    """The value at each window's position ``indexes`` (the adjoint of ``Unpooling2x2``)."""

    def __init__(self, indexes):
        self.indexes = indexes

    def forward(self, inputs):
        g, = inputs
        return _gather(g, self.indexes),

    def backward(self, indexes, grad_outputs):
        return Unpooling2x2(self.indexes).apply(grad_outputs)


class ReLU(function_node.FunctionNode):
    """max(x, 0), by row chunks over the threads; into x's own memory when ``inplace``."""

    def __init__(self, inplace=False):
        self.inplace = inplace

    def forward(self, inputs):
        x, = inputs
        y = x if self.inplace and x.flags.writeable else _empty(x.shape, x)

        def rows(r0, r1):
            np.maximum(x[:, :, r0:r1], 0, out=y[:, :, r0:r1])

        _by_rows(x.shape[2], x.size, rows)
        self.retain_outputs((0,))
        return y,

    def backward(self, indexes, grad_outputs):
        y, = self.get_retained_outputs()
        return ReLUGrad(y.array).apply(grad_outputs)


class ReLUGrad(function_node.FunctionNode):
    """g where y > 0, else 0 (ReLU's backward; y its output), by row chunks over the threads."""

    def __init__(self, y):
        self.y = y

    def forward(self, inputs):
        g, = inputs
        out = _empty(g.shape, g)

        def rows(r0, r1):
            np.multiply(g[:, :, r0:r1], self.y[:, :, r0:r1] > 0, out=out[:, :, r0:r1])

        _by_rows(g.shape[2], g.size, rows)
        return out,

    def backward(self, indexes, grad_outputs):
        return ReLUGrad(self.y).apply(grad_outputs)


def _numpy_float(a):
    return (getattr(chainer.config, 'fast_cpu', True) and type(a) is np.ndarray
            and a.dtype.kind == 'f' and a.ndim == 4 and config.backend() == 'onednn')


def _array(x):
    return chainer.as_array(x) if isinstance(x, chainer.Variable) else x


def max_pooling_2x2(x):
    """``F.max_pooling_2d(x, 2, stride=2, return_indices=True)``: (y, indexes)."""
    arr = _array(x)
    if _numpy_float(arr) and arr.shape[2] % 2 == 0 and arr.shape[3] % 2 == 0:
        node = MaxPooling2x2()
        y, = node.apply((x,))
        return y, node.indexes
    return F.max_pooling_2d(x, 2, stride=2, return_indices=True)


def unpooling_2x2(x, indexes, outsize):
    """``F.upsampling_2d(x, indexes, ksize=2, stride=2, outsize=outsize)``."""
    arr = _array(x)
    if (_numpy_float(arr) and type(indexes) is np.ndarray and indexes.shape == arr.shape
            and tuple(outsize) == (2 * arr.shape[2], 2 * arr.shape[3])):
        return Unpooling2x2(indexes).apply((x,))[0]
    return F.upsampling_2d(x, indexes, ksize=2, stride=2, outsize=outsize)


def relu(x, inplace=False):
    """``F.relu(x)``. With ``inplace``, the result may share x's memory (x's values are then
    gone): only for an x that nothing else uses, such as a convolution's output."""
    if _numpy_float(_array(x)):
        return ReLU(inplace).apply((x,))[0]
    return F.relu(x)
