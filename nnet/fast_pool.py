"""2x2 max-pooling with indices and the matching unpooling, fast on CPU.

``max_pooling_2x2(x)`` is ``F.max_pooling_2d(x, 2, stride=2, return_indices=True)`` and
``unpooling_2x2(x, indexes, outsize)`` is ``F.upsampling_2d(x, indexes, ksize=2, stride=2,
outsize=outsize)``: the same values, and the same gradients. For NumPy arrays with even H and W
they run as the ``FunctionNode``s below -- a few whole-array NumPy passes over the four strided
views of each 2x2 window instead of Chainer's im2col/col2im -- with int8 window indices
(0 = top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right, the first maximum in that order,
as ``argmax`` picks it). Anything else (CuPy, odd sizes) goes to the stock functions.
"""
import chainer
import chainer.functions as F
import numpy as np
from chainer import function_node


def _corners(a):
    """The four (N, C, H/2, W/2) strided views of a's 2x2 windows, in index order."""
    n, c, h, w = a.shape
    a6 = a.reshape(n, c, h // 2, 2, w // 2, 2)
    return a6[:, :, :, 0, :, 0], a6[:, :, :, 0, :, 1], a6[:, :, :, 1, :, 0], a6[:, :, :, 1, :, 1]


def _pool(x):
    """(max over each 2x2 window, int8 index of its first maximum)."""
    a, b, c, d = _corners(x)
    top = np.maximum(a, b)
    bottom = np.maximum(c, d)
    i_top = (b > a).view(np.int8)  # 0 or 1: ties keep the first
    i_bottom = (d > c).view(np.int8)
    i_bottom += 2
    y = np.maximum(top, bottom)
    indexes = np.where(bottom > top, i_bottom, i_top)
    return y, indexes


def _scatter(x, indexes):
    """(N, C, 2h, 2w) zeros with x[n, c, i, j] at window (i, j)'s position indexes[n, c, i, j].

    Written as bit masks (value AND all-ones / all-zeros) so that every value, NaN, inf and -0.0
    included, lands unchanged and the other positions are +0.0, exactly like F.upsampling_2d.
    """
    n, c, h, w = x.shape
    if x.itemsize == 4:
        ints = np.int32
    elif x.itemsize == 8:
        ints = np.int64
    else:
        out = np.zeros((n, c, 2 * h, 2 * w), x.dtype)
        for k, view in enumerate(_corners(out)):
            np.copyto(view, x, where=(indexes == k))
        return out
    out = np.empty((n, c, 2 * h, 2 * w), x.dtype)
    xi = x.view(ints)
    for k, view in enumerate(_corners(out.view(ints))):
        mask = (indexes == k).view(np.int8)
        np.negative(mask, out=mask)  # 0 or -1 (all bits set once widened)
        np.bitwise_and(xi, mask, out=view)
    return out


def _gather(g, indexes):
    """(N, C, H/2, W/2): g at each 2x2 window's position indexes."""
    a, b, c, d = _corners(g)
    out = np.array(a)
    for k, view in ((1, b), (2, c), (3, d)):
        np.copyto(out, view, where=(indexes == k))
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


def _numpy_float(a):
    return type(a) is np.ndarray and a.dtype.kind == 'f' and a.ndim == 4


def max_pooling_2x2(x):
    """``F.max_pooling_2d(x, 2, stride=2, return_indices=True)``: (y, indexes)."""
    arr = chainer.as_array(x) if isinstance(x, chainer.Variable) else x
    if _numpy_float(arr) and arr.shape[2] % 2 == 0 and arr.shape[3] % 2 == 0:
        node = MaxPooling2x2()
        y, = node.apply((x,))
        return y, node.indexes
    return F.max_pooling_2d(x, 2, stride=2, return_indices=True)


def unpooling_2x2(x, indexes, outsize):
    """``F.upsampling_2d(x, indexes, ksize=2, stride=2, outsize=outsize)``."""
    arr = chainer.as_array(x) if isinstance(x, chainer.Variable) else x
    if (_numpy_float(arr) and type(indexes) is np.ndarray and indexes.shape == arr.shape
            and tuple(outsize) == (2 * arr.shape[2], 2 * arr.shape[3])):
        return Unpooling2x2(indexes).apply((x,))[0]
    return F.upsampling_2d(x, indexes, ksize=2, stride=2, outsize=outsize)
