"""ReLU and casts of the CPU backend: oneDNN's ReLU, bfloat16 <-> float32 with gradients.

``relu(x)`` is ``F.relu(x)``: the same values and the same gradients. ReLU (the model's ReLUs
are fused into its convolutions, ``nnet.cpu.conv``; this one serves the rest) and ReLU's backward
(also that of the fused ReLUs) are oneDNN's eltwise ReLU forward and backward, for float32 and
bfloat16 arrays that are C-ordered or channels-last. ``relu(x, inplace=True)`` writes into x's
memory: for an x that nothing else uses, one full-size array less. Anything else goes to
``F.relu`` (a bfloat16 input cast to float32 first, ``as_float32``).
"""
import chainer
import chainer.functions as F
import numpy as np
from chainer import function_node

from nnet.cpu import config, dnnl, memory

ONEDNN_DTYPES = (np.dtype(np.float32), dnnl.BFLOAT16)  # what oneDNN's layers here take


def as_array(x):
    """The array of a Variable, or x itself."""
    return chainer.as_array(x) if isinstance(x, chainer.Variable) else x


def _empty(shape, like, dtype=None):
    """np.empty of an NCHW shape, in like's memory layout when that is channels-last."""
    dtype = like.dtype if dtype is None else dtype
    if like.strides[1] < like.strides[3] and like.shape[1] > 1:
        return memory.nhwc_empty(shape, dtype)
    return memory.empty(shape, dtype)


def _relu_layout(a):
    """dnnl's format tag of a 4-D array that lies channels-last or C-ordered, else None."""
    if memory.is_channels_last(a):
        return dnnl.TAG_ACDB
    return dnnl.TAG_ABCD if a.flags.c_contiguous else None


def _relu_primitives(shape, dtype, tag):
    """oneDNN's ReLU (forward, backward from the output) for an NCHW ``shape`` of ``dtype``
    laid out as ``tag``: y = max(x, 0); gx = gy where y > 0, else 0 (-0 for a negative gy,
    as gy * (y > 0) gives)."""
    def make():
        lib = dnnl.library()
        md = dnnl.MemoryDesc.tagged(shape, dnnl.DTYPES[np.dtype(dtype)], tag)
        relu = dnnl.ELTWISE_RELU_USE_DST_FOR_BWD
        fwd_pd, bwd_pd = dnnl._VP(), dnnl._VP()
        dnnl.check(lib.eltwise_forward_primitive_desc_create(
            dnnl.ctypes.byref(fwd_pd), lib.engine, dnnl.FORWARD_TRAINING, relu, md.handle,
            md.handle, 0.0, 0.0, lib.attr), 'eltwise forward')
        forward = dnnl.Primitive(fwd_pd, {dnnl.ARG_SRC: dnnl.QUERY_SRC_MD,
                                          dnnl.ARG_DST: dnnl.QUERY_DST_MD}, (md,))
        dnnl.check(lib.eltwise_backward_primitive_desc_create(
            dnnl.ctypes.byref(bwd_pd), lib.engine, relu, md.handle, md.handle, md.handle, 0.0,
            0.0, fwd_pd, lib.attr), 'eltwise backward')
        backward = dnnl.Primitive(bwd_pd, {dnnl.ARG_DIFF_SRC: dnnl.QUERY_DIFF_SRC_MD,
                                           dnnl.ARG_DIFF_DST: dnnl.QUERY_DIFF_DST_MD,
                                           dnnl.ARG_DST: dnnl.QUERY_DST_MD}, (md,))
        return forward, backward
    return dnnl.cached(('relu', tuple(shape), np.dtype(dtype), tag), make)


class ReLU(function_node.FunctionNode):
    """max(x, 0) of a float32 or bfloat16 x, C-ordered or channels-last (oneDNN); into x's own
    memory when ``inplace``."""

    def __init__(self, inplace=False):
        self.inplace = inplace

    def forward(self, inputs):
        x, = inputs
        y = x if self.inplace and x.flags.writeable else _empty(x.shape, x)
        forward, _ = _relu_primitives(x.shape, x.dtype, _relu_layout(x))
        forward({dnnl.ARG_SRC: x, dnnl.ARG_DST: y})
        self.retain_outputs((0,))
        return y,

    def backward(self, indexes, grad_outputs):
        y, = self.get_retained_outputs()
        return ReLUGrad(y.array).apply(grad_outputs)


class ReLUGrad(function_node.FunctionNode):
    """g where y > 0, else 0 (ReLU's backward; y its output, float32 or bfloat16, C-ordered or
    channels-last): oneDNN's in y's dtype and layout (g converted to them if it is not in
    them)."""

    def __init__(self, y):
        self.y = y

    def forward(self, inputs):
        g, = inputs
        y = self.y
        if g.dtype != y.dtype or _relu_layout(g) != _relu_layout(y):
            like = _empty(y.shape, y)
            like[...] = g
            g = like
        result = _empty(y.shape, y)
        _, backward = _relu_primitives(y.shape, y.dtype, _relu_layout(y))
        backward({dnnl.ARG_DIFF_DST: g, dnnl.ARG_DST: y, dnnl.ARG_DIFF_SRC: result})
        return result,

    def backward(self, indexes, grad_outputs):
        return ReLUGrad(self.y).apply(grad_outputs)


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
    return Cast(np.float32).apply((x,))[0] if as_array(x).dtype == dnnl.BFLOAT16 else x


def relu(x, inplace=False):
    """``F.relu(x)``. With ``inplace``, the result may share x's memory (x's values are then
    gone): only for an x that nothing else uses, such as a convolution's output."""
    arr = as_array(x)
    if config.onednn_array(arr, ONEDNN_DTYPES) and _relu_layout(arr) is not None:
        return ReLU(inplace).apply((x,))[0]
    return F.relu(as_float32(x))
