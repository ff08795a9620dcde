"""2x2 max-pooling with indices and the matching index unpooling on oneDNN, channels-last.

``max_pooling_2d`` and ``upsampling_2d`` take the arguments of Chainer's and give the same values
and the same gradients; 2x2 windows at stride 2 run here:

* Pooling and unpooling of float32 or bfloat16 NumPy arrays (pooling: even H and W) are
  oneDNN's max-pooling forward and backward primitives, channels-last, in the input's dtype.
  The indices are oneDNN's workspace: uint8, the window position of the first maximum (0 =
  top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right, the order in which Chainer's
  indices count), so the unpooling is the pooling's backward primitive. Unpooling's own
  backward, a gather that oneDNN has no primitive for, is three of its primitives (see
  ``_gather``).

Anything else (CuPy, other dtypes, odd sizes, other windows, indices from elsewhere) goes to the
stock functions, and so does everything where ``chainer.config.dim_cpu_backend`` keeps oneDNN
out (``nnet.cpu.config``; a bfloat16 input cast to float32 first, ``as_float32``).
"""
import chainer.functions as F
import numpy as np
from chainer import function_node

from nnet.cpu import config, dnnl, memory
from nnet.cpu.activation import ONEDNN_DTYPES, as_array, as_float32


def _channels_last(a):
    """a itself when it lies channels-last (NHWC), else a channels-last copy."""
    if memory.is_channels_last(a):
        return a
    out = memory.nhwc_empty(a.shape, a.dtype)
    np.copyto(out, a)
    return out


def _window_mds(shape, dtype):
    """Channels-last descriptors of an NCHW ``shape`` of ``dtype`` (float32, bfloat16 or
    uint8) and of its 2x2/stride-2 pooling, (full, half)."""
    n, c, h, w = shape
    dt = dnnl.DTYPES[np.dtype(dtype)]
    return (dnnl.MemoryDesc.tagged(shape, dt, dnnl.TAG_ACDB),
            dnnl.MemoryDesc.tagged((n, c, h // 2, w // 2), dt, dnnl.TAG_ACDB))


def _pooling_primitives(shape, dtype=np.float32):
    """oneDNN's 2x2/stride-2 max-pooling (forward, backward) for an NCHW ``shape`` of
    ``dtype`` (float32 or bfloat16), all channels-last. Its workspace is our ``indexes``:
    uint8, the output's layout, the window position 0..3 of the first maximum (row-major, as
    described at the top). None (and a warning) if a library keeps it otherwise."""
    def make():
        lib = dnnl.library()
        src, dst = _window_mds(shape, dtype)
        two, zero = dnnl.Dims(2, 2), dnnl.Dims(0, 0)
        fwd_pd, bwd_pd = dnnl._VP(), dnnl._VP()
        dnnl.check(lib.pooling_forward_primitive_desc_create(
            dnnl.ctypes.byref(fwd_pd), lib.engine, dnnl.FORWARD_TRAINING, dnnl.POOLING_MAX,
            src.handle, dst.handle, two, two, zero, zero, zero, lib.attr), 'pooling forward')
        forward = dnnl.Primitive(fwd_pd, {dnnl.ARG_SRC: dnnl.QUERY_SRC_MD,
                                          dnnl.ARG_DST: dnnl.QUERY_DST_MD,
                                          dnnl.ARG_WORKSPACE: dnnl.QUERY_WORKSPACE_MD},
                                 (src, dst))
        dnnl.check(lib.pooling_backward_primitive_desc_create(
            dnnl.ctypes.byref(bwd_pd), lib.engine, dnnl.POOLING_MAX, src.handle, dst.handle,
            two, two, zero, zero, zero, fwd_pd, lib.attr), 'pooling backward')
        backward = dnnl.Primitive(bwd_pd, {dnnl.ARG_DIFF_SRC: dnnl.QUERY_DIFF_SRC_MD,
                                           dnnl.ARG_DIFF_DST: dnnl.QUERY_DIFF_DST_MD,
                                           dnnl.ARG_WORKSPACE: dnnl.QUERY_WORKSPACE_MD},
                                  (src, dst))
        _, workspace = _window_mds(shape, np.uint8)
        if not dnnl.md_equal(forward.md(dnnl.ARG_WORKSPACE), workspace.handle):
            config.warn_once('pool-workspace', f'oneDNN at {lib.path} keeps max-pooling indices '
                                               'in another layout; pooling uses stock Chainer')
            return False
        return forward, backward
    return dnnl.cached(('maxpool2x2', tuple(shape), np.dtype(dtype)), make) or None


def _gather_primitives(shape, dtype):
    """(multiply, average) for an NCHW ``shape`` of ``dtype``, channels-last: oneDNN's
    elementwise product of two such arrays and its 2x2/stride-2 average pooling."""
    def make():
        lib = dnnl.library()
        full, half = _window_mds(shape, dtype)
        mul_pd, avg_pd = dnnl._VP(), dnnl._VP()
        dnnl.check(lib.binary_primitive_desc_create(
            dnnl.ctypes.byref(mul_pd), lib.engine, dnnl.BINARY_MUL, full.handle, full.handle,
            full.handle, lib.attr), 'binary multiply')
        multiply = dnnl.Primitive(mul_pd, {dnnl.ARG_SRC: dnnl.QUERY_SRC_MD,
                                           dnnl.ARG_SRC_1: (dnnl.QUERY_SRC_MD, 1),
                                           dnnl.ARG_DST: dnnl.QUERY_DST_MD}, (full,))
        two, zero = dnnl.Dims(2, 2), dnnl.Dims(0, 0)
        dnnl.check(lib.pooling_forward_primitive_desc_create(
            dnnl.ctypes.byref(avg_pd), lib.engine, dnnl.FORWARD_INFERENCE,
            dnnl.POOLING_AVG_INCLUDE_PADDING, full.handle, half.handle, two, two, zero, zero,
            zero, lib.attr), 'average pooling')
        average = dnnl.Primitive(avg_pd, {dnnl.ARG_SRC: dnnl.QUERY_SRC_MD,
                                          dnnl.ARG_DST: dnnl.QUERY_DST_MD}, (full, half))
        return multiply, average
    return dnnl.cached(('gather2x2', tuple(shape), np.dtype(dtype)), make)


def _gather(g, indexes):
    """(N, C, H/2, W/2), channels-last: g (N, C, H, W) at each 2x2 window's position
    ``indexes``. The unpooling of 4s marks the positions (4 there, 0 elsewhere), g times that
    mask is 4 g or 0, and the 2x2 average of a window is then exactly g at its position
    (scaling by 4 and 1/4 is exact in float32 and bfloat16; a NaN or infinity elsewhere in the
    window spreads to it). Three passes of oneDNN, 3-7x faster than NumPy's strided copies."""
    g = _channels_last(g)
    _, unpool = _pooling_primitives(g.shape, g.dtype)
    multiply, average = _gather_primitives(g.shape, g.dtype)
    out = memory.nhwc_empty(indexes.shape, g.dtype)
    out.fill(4)
    mask = memory.nhwc_empty(g.shape, g.dtype)
    unpool({dnnl.ARG_DIFF_DST: out, dnnl.ARG_WORKSPACE: indexes, dnnl.ARG_DIFF_SRC: mask})
    multiply({dnnl.ARG_SRC: mask, dnnl.ARG_SRC_1: g, dnnl.ARG_DST: mask})  # (in place)
    average({dnnl.ARG_SRC: mask, dnnl.ARG_DST: out})
    return out


class MaxPooling2x2(function_node.FunctionNode):
    """y = 2x2/stride-2 max-pooling of float32 or bfloat16 x (even H, W; oneDNN), x's dtype,
    channels-last; ``self.indexes`` (uint8, channels-last) after forward."""

    indexes = None

    def forward(self, inputs):
        x, = inputs
        n, c, h, w = x.shape
        y = memory.nhwc_empty((n, c, h // 2, w // 2), x.dtype)
        self.indexes = memory.nhwc_empty(y.shape, np.uint8)
        forward, _ = _pooling_primitives(x.shape, x.dtype)
        forward({dnnl.ARG_SRC: _channels_last(x), dnnl.ARG_DST: y,
                 dnnl.ARG_WORKSPACE: self.indexes})
        return y,

    def backward(self, indexes, grad_outputs):
        return Unpooling2x2(self.indexes).apply(grad_outputs)


class Unpooling2x2(function_node.FunctionNode):
    """Each value (float32 or bfloat16) to its window's position ``indexes`` (from
    ``MaxPooling2x2``) in a zero (N, C, 2H, 2W) channels-last array of x's dtype: oneDNN's
    max-pooling backward."""

    def __init__(self, indexes):
        self.indexes = indexes

    def forward(self, inputs):
        x, = inputs
        n, c, h, w = x.shape
        out = memory.nhwc_empty((n, c, 2 * h, 2 * w), x.dtype)
        _, backward = _pooling_primitives(out.shape, x.dtype)
        backward({dnnl.ARG_DIFF_DST: _channels_last(x), dnnl.ARG_WORKSPACE: self.indexes,
                  dnnl.ARG_DIFF_SRC: out})
        return out,

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


def _onednn_pooling(a, shape):
    """Whether oneDNN pools ``a`` (float32 or bfloat16 NumPy), of input ``shape`` (even H,
    W)."""
    return (config.onednn_array(a, ONEDNN_DTYPES) and min(a.shape) > 0
            and shape[2] % 2 == 0 and shape[3] % 2 == 0
            and _pooling_primitives(tuple(shape), a.dtype) is not None)


def _is_2x2(ksize, stride, pad):
    """Whether pooling arguments are 2x2 windows at stride 2 without padding."""
    def pair(v):
        return (v, v) if np.isscalar(v) else tuple(v)
    return pair(ksize) == (2, 2) and pair(2 if stride is None else stride) == (2, 2) \
        and pair(pad) == (0, 0)


def max_pooling_2d(x, ksize, stride=None, pad=0, cover_all=True, return_indices=False):
    """``F.max_pooling_2d``, the same arguments and results; 2x2 windows at stride 2 on oneDNN.

    With ``return_indices``: (y, indexes), the indexes for ``upsampling_2d`` (oneDNN's uint8
    window positions where oneDNN pooled, Chainer's int32 ones where Chainer did).
    """
    arr = as_array(x)
    if _is_2x2(ksize, stride, pad) and _onednn_pooling(arr, arr.shape):
        node = MaxPooling2x2()
        y, = node.apply((x,))
        return (y, node.indexes) if return_indices else y
    return F.max_pooling_2d(as_float32(x), ksize, stride=stride, pad=pad, cover_all=cover_all,
                            return_indices=return_indices)


def upsampling_2d(x, indexes, ksize, stride=None, pad=0, outsize=None, cover_all=True):
    """``F.upsampling_2d`` (index unpooling), the same arguments and results; 2x2 windows at
    stride 2 with oneDNN's indices (``max_pooling_2d``) on oneDNN."""
    arr = as_array(x)
    n, c, h, w = arr.shape
    if (_is_2x2(ksize, stride, pad) and outsize is not None
            and tuple(outsize) == (2 * h, 2 * w) and _onednn_pooling(arr, (n, c, 2 * h, 2 * w))
            and type(indexes) is np.ndarray and indexes.dtype == np.uint8
            and indexes.shape == arr.shape and memory.is_channels_last(indexes)):
        return Unpooling2x2(indexes).apply((x,))[0]
    return F.upsampling_2d(as_float32(x), indexes, ksize, stride=stride, pad=pad,
                           outsize=outsize, cover_all=cover_all)
