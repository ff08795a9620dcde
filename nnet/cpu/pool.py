"""2x2 max-pooling with indices, the matching unpooling and ReLU, fast and lean on CPU.

``max_pooling_2x2(x)`` is ``F.max_pooling_2d(x, 2, stride=2, return_indices=True)``,
``unpooling_2x2(x, indexes, outsize)`` is ``F.upsampling_2d(x, indexes, ksize=2, stride=2,
outsize=outsize)`` and ``relu(x)`` is ``F.relu(x)``: the same values and the same gradients.

* Pooling and unpooling of float32 or bfloat16 NumPy arrays (pooling: even H and W) are
  oneDNN's max-pooling forward and backward primitives, channels-last, in the input's dtype.
  The indices are oneDNN's workspace: uint8, the window position of the first maximum (0 =
  top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right, the order in which Chainer's
  indices count), so the unpooling is the pooling's backward primitive. Unpooling's own
  backward (a gather, which oneDNN has no primitive for) is a few whole-array NumPy passes over
  the four strided views of each 2x2 window, split by rows over a few Python threads (NumPy
  releases the GIL).
* ReLU (the model's ReLUs are fused into its convolutions, ``nnet.cpu.conv``; this one serves
  the rest) and ReLU's backward run the same way in NumPy (bfloat16 ones on their bits).
  ``relu(x, inplace=True)`` writes into x's memory: for an x that nothing else uses, one
  full-size array less.

Anything else (CuPy, other dtypes, odd sizes, indices from elsewhere) goes to the stock
functions, and so does everything on the fallback backend or under ``nnet.cpu.stock_path()``
(a bfloat16 input cast to float32 first, ``as_float32``).
"""
import concurrent.futures
import os
import threading

import chainer
import chainer.functions as F
import numpy as np
from chainer import function_node

from nnet.cpu import config, dnnl, memory

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
        return memory.nhwc_empty(shape, dtype)
    return memory.empty(shape, dtype)


def _channels_last(a):
    """a itself when it lies channels-last (NHWC), else a channels-last copy."""
    if memory.is_channels_last(a):
        return a
    out = memory.nhwc_empty(a.shape, a.dtype)
    np.copyto(out, a)
    return out


def _pooling_primitives(shape, dtype=np.float32):
    """oneDNN's 2x2/stride-2 max-pooling (forward, backward) for an NCHW ``shape`` of
    ``dtype`` (float32 or bfloat16), all channels-last. Its workspace is our ``indexes``:
    uint8, the output's layout, the window position 0..3 of the first maximum (row-major, as
    described at the top). None (and a warning) if a library keeps it otherwise."""
    def make():
        lib = dnnl.library()
        n, c, h, w = shape
        dt = dnnl.DTYPES[np.dtype(dtype)]
        src = dnnl.MemoryDesc.tagged(shape, dt, dnnl.TAG_ACDB)
        dst = dnnl.MemoryDesc.tagged((n, c, h // 2, w // 2), dt, dnnl.TAG_ACDB)
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
        workspace = dnnl.MemoryDesc.tagged((n, c, h // 2, w // 2), dnnl.U8, dnnl.TAG_ACDB)
        if not dnnl.md_equal(forward.md(dnnl.ARG_WORKSPACE), workspace.handle):
            config.warn_once('pool-workspace', f'oneDNN at {lib.path} keeps max-pooling indices '
                                               'in another layout; pooling uses stock Chainer')
            return False
        return forward, backward
    return dnnl.cached(('maxpool2x2', tuple(shape), np.dtype(dtype)), make) or None


def _bits(a):
    """A bfloat16 array's uint16 view (NumPy's own loops copy and compare it); others as are."""
    return a.view(np.uint16) if a.dtype == dnnl.BFLOAT16 else a


def _gather(g, indexes):
    """(N, C, H/2, W/2): g at each 2x2 window's position indexes."""
    n, c, h, w = g.shape
    result = _empty((n, c, h // 2, w // 2), g)
    g, out = _bits(g), _bits(result)

    def rows(r0, r1):
        a, b, cc, d = _corners(g[:, :, 2 * r0:2 * r1])
        o, idx = out[:, :, r0:r1], indexes[:, :, r0:r1]
        o[...] = a
        for k, view in ((1, b), (2, cc), (3, d)):
            np.copyto(o, view, where=(idx == k))

    _by_rows(h // 2, g.size, rows)
    return result


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
    """g where y > 0, else 0 (ReLU's backward; y its output), by row chunks over the threads.
    g and y float32, or both bfloat16 (then masked as bits: a bfloat16 is > 0 where its bits,
    read as int16, are)."""

    def __init__(self, y):
        self.y = y

    def forward(self, inputs):
        g, = inputs
        result = _empty(g.shape, g)
        g, out, y = _bits(g), _bits(result), self.y
        if y.dtype == dnnl.BFLOAT16:
            y = y.view(np.int16)

        def rows(r0, r1):
            np.multiply(g[:, :, r0:r1], y[:, :, r0:r1] > 0, out=out[:, :, r0:r1])

        _by_rows(g.shape[2], g.size, rows)
        return result,

    def backward(self, indexes, grad_outputs):
        return ReLUGrad(self.y).apply(grad_outputs)


def _numpy_4d(a, dtype_ok):
    """Whether ``a`` is a 4-D NumPy array whose dtype passes ``dtype_ok`` and this package's
    own layers run (the oneDNN backend, not ``stock_path()``)."""
    return (getattr(chainer.config, 'fast_cpu', True) and type(a) is np.ndarray
            and dtype_ok(a.dtype) and a.ndim == 4 and config.backend() == 'onednn')


def _onednn_pooling(a, shape):
    """Whether oneDNN pools ``a`` (float32 or bfloat16 NumPy), of input ``shape`` (even H,
    W)."""
    return (_numpy_4d(a, lambda dt: dt in (np.float32, dnnl.BFLOAT16)) and min(a.shape) > 0
            and shape[2] % 2 == 0 and shape[3] % 2 == 0
            and _pooling_primitives(tuple(shape), a.dtype) is not None)


def _array(x):
    return chainer.as_array(x) if isinstance(x, chainer.Variable) else x


class Cast(function_node.FunctionNode):
    """x as ``dtype`` (float32 <-> bfloat16: ``F.cast`` gives no gradient to a bfloat16 x)."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, inputs):
        x, = inputs
        self.in_dtype = x.dtype
        return x.astype(self.dtype),

    def backward(self, indexes, grad_outputs):
        return Cast(self.in_dtype).apply(grad_outputs)


def as_float32(x):
    """x, or a float32 cast of a bfloat16 x (for Chainer's own functions)."""
    return Cast(np.float32).apply((x,))[0] if _array(x).dtype == dnnl.BFLOAT16 else x


def max_pooling_2x2(x):
    """``F.max_pooling_2d(x, 2, stride=2, return_indices=True)``: (y, indexes)."""
    arr = _array(x)
    if _onednn_pooling(arr, arr.shape):
        node = MaxPooling2x2()
        y, = node.apply((x,))
        return y, node.indexes
    return F.max_pooling_2d(as_float32(x), 2, stride=2, return_indices=True)


def unpooling_2x2(x, indexes, outsize):
    """``F.upsampling_2d(x, indexes, ksize=2, stride=2, outsize=outsize)``."""
    arr = _array(x)
    n, c, h, w = arr.shape
    if (tuple(outsize) == (2 * h, 2 * w) and _onednn_pooling(arr, (n, c, 2 * h, 2 * w))
            and type(indexes) is np.ndarray and indexes.dtype == np.uint8
            and indexes.shape == arr.shape and memory.is_channels_last(indexes)):
        return Unpooling2x2(indexes).apply((x,))[0]
    return F.upsampling_2d(as_float32(x), indexes, ksize=2, stride=2, outsize=outsize)


def relu(x, inplace=False):
    """``F.relu(x)``. With ``inplace``, the result may share x's memory (x's values are then
    gone): only for an x that nothing else uses, such as a convolution's output."""
    if _numpy_4d(_array(x), lambda dt: dt.kind == 'f'):
        return ReLU(inplace).apply((x,))[0]
    return F.relu(x)
