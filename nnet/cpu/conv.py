"""2-D convolution on oneDNN: drop-ins for ``F.convolution_2d`` and ``L.Convolution2D``.

NumPy float32 inputs (no dilation, one group) go through the ``FunctionNode``s below, closed under
differentiation like Chainer's own (forward, input gradient and weight gradient call each other
for every higher-order gradient), each one oneDNN primitive:

* activations are handed to oneDNN as they lie in memory; the primitives read and write
  channels-last (NHWC) arrays, seen from NumPy and Chainer as (N, C, H, W) views, so a layer's
  output feeds the next one (and ReLU, pooling, the backward pass) without a copy. Inputs in
  another layout are reordered once (oneDNN reorder).
* below AVX-512 the weight gradient alone reads its input and output gradient in the blocked
  layout oneDNN picks for them (reordered per call): there its channels-last kernel is 2-4x
  slower.
* weights are reordered per call into the layout the primitive picked (format ``any``); the
  weight gradient is reordered back into the weights' own layout (``Convolution2D`` keeps them
  as (kh, kw, Cin, Cout) in memory); the bias gradient comes out of the same primitive.
* precision 'bf16' (``nnet.cpu.config``): inputs, output gradients and weights are converted to
  bfloat16 by a reorder (round to nearest even) unless they are bfloat16 already, the primitive
  accumulates in float32 and writes float32 outputs and gradients, or bfloat16 ones
  (``nnet.cpu.dnnl.BFLOAT16``, ml_dtypes' NumPy dtype) where the caller asks for them with
  ``keep_bf16`` (the model does for the activations between its layers, as PyTorch's autocast
  does: half the memory, no conversions; the input gradient then is bfloat16 too, x's dtype).
  The bfloat16 copy of a float32 input is kept for the weight gradient while its graph is
  alive.
* inference on one image whose input must be converted (bf16, or not channels-last) runs in
  bands of output rows when the converted copy would exceed ``BAND_BYTES``: only a band's
  rows are converted at a time.
* outputs and converted copies of 8 MB and more come from ``nnet.cpu.memory.empty``
  (recycled buffers).
* ``relu=True`` fuses the ReLU that follows the convolution into it (oneDNN's ReLU post-op;
  its backward masks the output gradient with the output). The post-op maps NaN to 0, where
  ``F.relu`` keeps NaN.
* primitives, reorders included, are cached by shape, layout, precision and fusion.

Anything else (CuPy, float64, the fallback backend) is ``F.convolution_2d``. On the fallback,
inference (no backprop) on NumPy arrays runs it on bands of output rows, so that its im2col
buffer stays under ``FALLBACK_COL_BYTES`` at any image size (a 1920x1080 picture would need
13 GB in one piece).
"""
import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
from chainer import function_node

from nnet.cpu import config, dnnl, memory
from nnet.cpu.activation import ReLUGrad, as_float32, relu as relu_function

FALLBACK_COL_BYTES = 256 << 20
# Inference on one image whose input must be converted (bf16, or not channels-last): above this
# size of the converted copy, the convolution runs in bands of output rows (bounded memory).
BAND_BYTES = 16 << 20


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _dt(precision):
    return dnnl.BF16 if precision == 'bf16' else dnnl.F32


def _geometry(in_size, ksize, stride, pad):
    """(output size, right/bottom padding) as Chainer counts them (cover_all=False)."""
    out, pad_r = [], []
    for size, k, s, p in zip(in_size, ksize, stride, pad):
        o = (size + 2 * p - k) // s + 1
        out.append(o)
        pad_r.append((o - 1) * s + k - size - p)
    return tuple(out), tuple(pad_r)


def _nhwc_md(shape, dt):
    return dnnl.MemoryDesc.tagged(shape, dt, dnnl.TAG_ACDB)


def _any_md(shape, dt):
    return dnnl.MemoryDesc.tagged(shape, dt, dnnl.TAG_ANY)


def _dims(v):
    return dnnl.Dims(*v)


def _to(a, prim, arg, key):
    """Array ``a`` (float32, any strides) as primitive ``prim`` wants argument ``arg``: ``a``
    itself when the layouts agree, else a reordered (and converted) copy."""
    want = prim.md(arg)
    have = dnnl.MemoryDesc.of(a)
    if dnnl.md_equal(have.handle, want):
        return a
    out = dnnl.aligned_empty(dnnl.md_size(want))
    dnnl.reorder(have, want, key + (arg, a.shape, a.strides))({dnnl.ARG_SRC: a, dnnl.ARG_DST: out})
    return out


def _from(buf, prim, arg, out, key):
    """Primitive output ``buf`` (laid out as ``prim.md(arg)``) as the float32 array ``out``
    (any dense layout): ``out`` reordered into, or a view of ``buf`` where the layouts agree."""
    have = dnnl.MemoryDesc.of(out)
    if dnnl.md_equal(have.handle, prim.md(arg)):
        return np.lib.stride_tricks.as_strided(buf.view(np.float32), out.shape, out.strides)
    dnnl.reorder(prim.md(arg), have, key + (arg, 'out', out.strides))(
        {dnnl.ARG_SRC: buf, dnnl.ARG_DST: out})
    return out


# ---------------------------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------------------------
def _forward_pd(x_shape, w_shape, bias, stride, pad, precision, training, pad_r=None,
                relu=False, dst_dt=dnnl.F32):
    lib = dnnl.library()
    (n, c, h, w), (co, _, kh, kw) = x_shape, w_shape
    (ho, wo), geometric_pad_r = _geometry((h, w), (kh, kw), stride, pad)
    if pad_r is None:
        pad_r = geometric_pad_r
    else:  # (bands: another padding at the bottom / right)
        ho, wo = ((size + p + q - k) // s + 1 for size, p, q, k, s in
                  zip((h, w), pad, pad_r, (kh, kw), stride))
    dt = _dt(precision)
    src, dst = _nhwc_md(x_shape, dt), _nhwc_md((n, co, ho, wo), dst_dt)
    wts = _any_md(w_shape, dt)
    b = dnnl.MemoryDesc.tagged((co,), dnnl.F32, dnnl.TAG_A) if bias else None
    pd = dnnl._VP()
    dnnl.check(lib.convolution_forward_primitive_desc_create(
        dnnl.ctypes.byref(pd), lib.engine,
        dnnl.FORWARD_TRAINING if training else dnnl.FORWARD_INFERENCE, dnnl.CONVOLUTION_DIRECT,
        src.handle, wts.handle, b.handle if b else None, dst.handle, _dims(stride), _dims((0, 0)),
        _dims(pad), _dims(pad_r), lib.attr_relu if relu else lib.attr), 'convolution forward')
    return pd, (src, wts, b, dst)


def forward_primitive(x_shape, w_shape, bias, stride, pad, precision, training=False,
                      pad_r=None, relu=False, dst_dt=dnnl.F32):
    key = ('fwd', x_shape, w_shape, bias, stride, pad, precision, training, pad_r, relu, dst_dt)

    def make():
        pd, keep = _forward_pd(x_shape, w_shape, bias, stride, pad, precision, training, pad_r,
                               relu, dst_dt)
        args = {dnnl.ARG_SRC: dnnl.QUERY_SRC_MD, dnnl.ARG_WEIGHTS: dnnl.QUERY_WEIGHTS_MD,
                dnnl.ARG_DST: dnnl.QUERY_DST_MD}
        if bias:
            args[dnnl.ARG_BIAS] = (dnnl.QUERY_WEIGHTS_MD, 1)
        return dnnl.Primitive(pd, args, keep)
    return key, dnnl.cached(key, make)


def grad_x_primitive(gy_shape, w_shape, in_size, stride, pad, precision, dsrc_dt=dnnl.F32):
    key = ('bwd_d', gy_shape, w_shape, in_size, stride, pad, precision, dsrc_dt)

    def make():
        lib = dnnl.library()
        n, co = gy_shape[:2]
        c = w_shape[1]
        x_shape = (n, c) + tuple(in_size)
        hint, keep = _forward_pd(x_shape, w_shape, False, stride, pad, precision, True)
        _, pad_r = _geometry(in_size, w_shape[2:], stride, pad)
        dt = _dt(precision)
        dsrc, dwts, ddst = (_nhwc_md(x_shape, dsrc_dt), _any_md(w_shape, dt),
                            _nhwc_md(gy_shape, dt))
        pd = dnnl._VP()
        dnnl.check(lib.convolution_backward_data_primitive_desc_create(
            dnnl.ctypes.byref(pd), lib.engine, dnnl.CONVOLUTION_DIRECT, dsrc.handle, dwts.handle,
            ddst.handle, _dims(stride), _dims((0, 0)), _dims(pad), _dims(pad_r), hint, lib.attr),
            'convolution backward data')
        prim = dnnl.Primitive(pd, {dnnl.ARG_DIFF_SRC: dnnl.QUERY_DIFF_SRC_MD,
                                   dnnl.ARG_WEIGHTS: dnnl.QUERY_WEIGHTS_MD,
                                   dnnl.ARG_DIFF_DST: dnnl.QUERY_DIFF_DST_MD},
                              keep + (dsrc, dwts, ddst))
        lib.primitive_desc_destroy(hint)
        return prim
    return key, dnnl.cached(key, make)


def blocked_weight_gradient():
    """Whether the weight gradient reads x and gy in a blocked layout of oneDNN's choice (then
    reordered per call) instead of channels-last: below AVX-512, where oneDNN 3.2's
    channels-last weight gradient (jit:avx2) is 2-4x slower than its blocked one, reorders
    included (measured on an AVX2-only AMD EPYC)."""
    return not dnnl.has_avx512()


def grad_w_primitive(x_shape, gy_shape, w_shape, bias, stride, pad, precision):
    key = ('bwd_w', x_shape, gy_shape, w_shape, bias, stride, pad, precision)

    def make():
        lib = dnnl.library()
        hint, keep = _forward_pd(x_shape, w_shape, bias, stride, pad, precision, True)
        _, pad_r = _geometry(x_shape[2:], w_shape[2:], stride, pad)
        dt = _dt(precision)
        act_md = _any_md if blocked_weight_gradient() else _nhwc_md
        src, dwts, ddst = act_md(x_shape, dt), _any_md(w_shape, dnnl.F32), act_md(gy_shape, dt)
        db = dnnl.MemoryDesc.tagged((w_shape[0],), dnnl.F32, dnnl.TAG_A) if bias else None
        pd = dnnl._VP()
        dnnl.check(lib.convolution_backward_weights_primitive_desc_create(
            dnnl.ctypes.byref(pd), lib.engine, dnnl.CONVOLUTION_DIRECT, src.handle, dwts.handle,
            db.handle if db else None, ddst.handle, _dims(stride), _dims((0, 0)), _dims(pad),
            _dims(pad_r), hint, lib.attr), 'convolution backward weights')
        args = {dnnl.ARG_SRC: dnnl.QUERY_SRC_MD,
                dnnl.ARG_DIFF_WEIGHTS: dnnl.QUERY_DIFF_WEIGHTS_MD,
                dnnl.ARG_DIFF_DST: dnnl.QUERY_DIFF_DST_MD}
        if bias:
            args[dnnl.ARG_DIFF_BIAS] = (dnnl.QUERY_DIFF_WEIGHTS_MD, 1)
        prim = dnnl.Primitive(pd, args, keep + (src, dwts, ddst, db))
        lib.primitive_desc_destroy(hint)
        return prim
    return key, dnnl.cached(key, make)


def bf16_primitives_exist():
    """Whether oneDNN has bfloat16 forward, input-gradient and weight-gradient convolutions on
    this CPU (it answers 'unimplemented' where the CPU lacks the instructions they need)."""
    x, w, size, one = (1, 16, 8, 8), (16, 16, 3, 3), (8, 8), (1, 1)
    try:
        forward_primitive(x, w, True, one, one, 'bf16', training=True)
        grad_x_primitive(x, w, size, one, one, 'bf16')
        grad_w_primitive(x, x, w, True, one, one, 'bf16')
    except dnnl.DnnlError:
        return False
    return True


_BF16_MISSING = []  # (the answer, once known)


def bf16_missing():
    """Why 'bf16' cannot run in bfloat16 here (one phrase), or None where it can: it needs
    oneDNN in use and bfloat16 convolutions for this CPU (oneDNN 3.2 has them from AVX-512 on;
    none on an AVX2-only CPU or under ``ONEDNN_MAX_CPU_ISA=AVX2``). Decided once per backend
    setting, by creating the three bf16 primitives."""
    if not config.use_onednn():
        return 'bf16 needs oneDNN'
    if not _BF16_MISSING:
        _BF16_MISSING.append(None if bf16_primitives_exist() else
                             'oneDNN has no bfloat16 convolutions for this CPU (AVX-512 is needed)')
    return _BF16_MISSING[0]


def bf16_available():
    """Whether 'bf16' runs in bfloat16 here (see ``bf16_missing``)."""
    return bf16_missing() is None


def effective_precision():
    """The precision the CPU convolutions run in now: ``chainer.config.dim_cpu_precision``, or
    'fp32' where bf16 is not available (said once)."""
    requested = config.requested_precision()
    if requested == 'bf16' and not bf16_available():
        config.warn_once('bf16', f'{bf16_missing()}; running float32 instead of bf16')
        return 'fp32'
    return requested


# ---------------------------------------------------------------------------------------------
# The three computations
# ---------------------------------------------------------------------------------------------
def _needs_copy(x, precision):
    """Whether the primitive cannot read x as it is (another dtype, or not channels-last)."""
    return x.dtype != dnnl.NUMPY_DTYPES[_dt(precision)] or not memory.is_channels_last(x)


def conv_forward(x, W, b, stride, pad, precision, training=False, relu=False,
                 out_dtype=np.float32):
    """y (N, Cout, Ho, Wo) of ``out_dtype`` (float32 or bfloat16), channels-last (max(y, 0)
    with ``relu``); and x as the primitive read it (for gW)."""
    n, co = x.shape[0], W.shape[0]
    (ho, wo), _ = _geometry(x.shape[2:], W.shape[2:], stride, pad)
    dst_dt = dnnl.DTYPES[np.dtype(out_dtype)]
    copy_bytes = x.size * (2 if precision == 'bf16' else 4)
    if (not training and n == 1 and stride == (1, 1) and copy_bytes > BAND_BYTES
            and _needs_copy(x, precision) and ho > 1):
        return _forward_in_bands(x, W, b, pad, precision, relu, out_dtype), None
    key, prim = forward_primitive(x.shape, W.shape, b is not None, stride, pad, precision,
                                  training, relu=relu, dst_dt=dst_dt)
    y = memory.nhwc_empty((n, co, ho, wo), out_dtype)
    src = _to(x, prim, dnnl.ARG_SRC, key)
    bufs = {dnnl.ARG_SRC: src, dnnl.ARG_WEIGHTS: _to(W, prim, dnnl.ARG_WEIGHTS, key),
            dnnl.ARG_DST: y}
    if b is not None:
        bufs[dnnl.ARG_BIAS] = np.ascontiguousarray(b)
    prim(bufs)
    return y, src


def _forward_in_bands(x, W, b, pad, precision, relu, out_dtype):
    """Inference, one image: the stride-1 convolution by bands of output rows, each band's
    input rows converted into a buffer of about BAND_BYTES (not the whole input at once)."""
    _, c, h, w = x.shape
    co, _, kh, kw = W.shape
    (ho, wo), (_, pad_right) = _geometry((h, w), (kh, kw), (1, 1), pad)
    y = memory.nhwc_empty((1, co, ho, wo), out_dtype)
    row_bytes = c * w * (2 if precision == 'bf16' else 4)
    rows = int(max(kh, BAND_BYTES // row_bytes - (kh - 1)))
    weights = {}
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        lo, hi = r0 - pad[0], r1 - 1 - pad[0] + kh  # the input rows they need
        a, z = max(lo, 0), min(hi, h)
        xb = x[:, :, a:z]
        key, prim = forward_primitive(xb.shape, W.shape, b is not None, (1, 1),
                                      (a - lo, pad[1]), precision, False, (hi - z, pad_right),
                                      relu, dnnl.DTYPES[np.dtype(out_dtype)])
        if key not in weights:  # (a few band shapes: first, middle, last)
            weights[key] = _to(W, prim, dnnl.ARG_WEIGHTS, key)
        bufs = {dnnl.ARG_SRC: _to(xb, prim, dnnl.ARG_SRC, key), dnnl.ARG_DST: y[:, :, r0:r1],
                dnnl.ARG_WEIGHTS: weights[key]}
        if b is not None:
            bufs[dnnl.ARG_BIAS] = np.ascontiguousarray(b)
        prim(bufs)
    return y


def conv_grad_x(gy, W, stride, pad, in_size, precision, gy_low=None, out_dtype=np.float32):
    """gx (N, Cin, H, W) of ``out_dtype`` (float32 or bfloat16: x's dtype), channels-last."""
    key, prim = grad_x_primitive(gy.shape, W.shape, tuple(in_size), stride, pad, precision,
                                 dnnl.DTYPES[np.dtype(out_dtype)])
    gx = memory.nhwc_empty((gy.shape[0], W.shape[1]) + tuple(in_size), out_dtype)
    g = gy_low if gy_low is not None else _to(gy, prim, dnnl.ARG_DIFF_DST, key)
    prim({dnnl.ARG_DIFF_DST: g, dnnl.ARG_WEIGHTS: _to(W, prim, dnnl.ARG_WEIGHTS, key),
          dnnl.ARG_DIFF_SRC: gx})
    return gx


def conv_grad_w(x, gy, w_shape, stride, pad, bias, precision, x_low=None, gy_low=None,
                w_layout=None):
    """(gW (Cout, Cin, kh, kw) float32, laid out in memory as the array ``w_layout`` (the
    weights) or in C order; gb (Cout,) float32 or None)."""
    key, prim = grad_w_primitive(x.shape, gy.shape, tuple(w_shape), bias, stride, pad, precision)
    src = x_low if x_low is not None else _to(x, prim, dnnl.ARG_SRC, key)
    g = gy_low if gy_low is not None else _to(gy, prim, dnnl.ARG_DIFF_DST, key)
    gw_buf = dnnl.aligned_empty(dnnl.md_size(prim.md(dnnl.ARG_DIFF_WEIGHTS)))
    bufs = {dnnl.ARG_SRC: src, dnnl.ARG_DIFF_DST: g, dnnl.ARG_DIFF_WEIGHTS: gw_buf}
    gb = None
    if bias:
        gb = bufs[dnnl.ARG_DIFF_BIAS] = np.empty(w_shape[0], np.float32)
    prim(bufs)
    out = memory.empty(w_shape) if w_layout is None else memory.empty_as(w_layout)
    return _from(gw_buf, prim, dnnl.ARG_DIFF_WEIGHTS, out, key), gb


# ---------------------------------------------------------------------------------------------
# FunctionNodes
# ---------------------------------------------------------------------------------------------
class Convolution2DFunction(function_node.FunctionNode):
    """y = conv(x, W) (+ b) on oneDNN, and max(y, 0) with ``relu`` (the ReLU fused into the
    primitive: no pass of its own). Inputs (x, W) or (x, W, b), NumPy: x float32 or bfloat16,
    W and b float32; y of ``out_dtype`` (float32 or bfloat16)."""

    def __init__(self, stride=1, pad=0, precision='fp32', relu=False, out_dtype=np.float32):
        self.stride, self.pad, self.precision = _pair(stride), _pair(pad), precision
        self.relu, self.out_dtype = relu, out_dtype
        self.x_low = None

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, W = inputs[:2]
        b = inputs[2] if len(inputs) == 3 else None
        training = chainer.config.enable_backprop
        y, src = conv_forward(x, W, b, self.stride, self.pad, self.precision, training,
                              self.relu, self.out_dtype)
        if training and src is not x and not blocked_weight_gradient():
            self.x_low = src  # the converted input, for the weight gradient
        if self.relu:
            self.retain_outputs((0,))
        return y,

    def backward(self, indexes, grad_outputs):
        x, W = self.get_retained_inputs()
        gy, = grad_outputs
        if self.relu:  # through the ReLU first: gy where y > 0
            gy, = ReLUGrad(self.get_retained_outputs()[0].array).apply((gy,))
        ret = []
        gy_low = None
        if self.precision == 'bf16' and 0 in indexes and (1 in indexes or 2 in indexes):
            key, prim = grad_x_primitive(gy.shape, W.shape, x.shape[2:], self.stride, self.pad,
                                         self.precision, dnnl.DTYPES[x.dtype])
            gy_low = _to(gy.array, prim, dnnl.ARG_DIFF_DST, key)  # shared by gx and gW
        if 0 in indexes:
            ret.append(Convolution2DGradX(self.stride, self.pad, x.shape[2:], self.precision,
                                          gy_low, x.dtype).apply((gy, W))[0])
        if 1 in indexes or 2 in indexes:
            bias = 2 in indexes
            if blocked_weight_gradient():
                gy_low = None  # (it reads gy in another layout than the input gradient)
            node = Convolution2DGradW(self.stride, self.pad, W.shape, self.precision, bias,
                                      self.x_low, gy_low, w_layout=W.array)
            outs = node.apply((x, gy))
            if 1 in indexes:
                ret.append(outs[0])
            if bias:
                ret.append(outs[1])
        return ret


class Convolution2DGradX(function_node.FunctionNode):
    """gx = the transposed convolution of gy with W (input gradient), of ``out_dtype`` (x's).
    Inputs (gy, W)."""

    def __init__(self, stride, pad, in_size, precision, gy_low=None, out_dtype=np.float32):
        self.stride, self.pad, self.in_size = stride, pad, tuple(in_size)
        self.precision, self.gy_low, self.out_dtype = precision, gy_low, out_dtype

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        gy, W = inputs
        gx = conv_grad_x(gy, W, self.stride, self.pad, self.in_size, self.precision, self.gy_low,
                         self.out_dtype)
        self.gy_low = None
        return gx,

    def backward(self, indexes, grad_outputs):
        gy, W = self.get_retained_inputs()
        ggx, = grad_outputs
        ret = []
        if 0 in indexes:
            ret.append(Convolution2DFunction(self.stride, self.pad, self.precision,
                                             out_dtype=gy.dtype).apply((ggx, W))[0])
        if 1 in indexes:
            ret.append(Convolution2DGradW(self.stride, self.pad, W.shape, self.precision)
                       .apply((ggx, gy))[0])
        return ret


class Convolution2DGradW(function_node.FunctionNode):
    """gW = correlation of x with gy, and gb = sum of gy when ``bias``. Inputs (x, gy)."""

    def __init__(self, stride, pad, w_shape, precision, bias=False, x_low=None, gy_low=None,
                 w_layout=None):
        self.stride, self.pad, self.w_shape = stride, pad, tuple(w_shape)
        self.precision, self.bias = precision, bias
        self.x_low, self.gy_low, self.w_layout = x_low, gy_low, w_layout

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, gy = inputs
        gw, gb = conv_grad_w(x, gy, self.w_shape, self.stride, self.pad, self.bias,
                             self.precision, self.x_low, self.gy_low, self.w_layout)
        self.x_low = self.gy_low = self.w_layout = None
        return (gw, gb) if self.bias else (gw,)

    def backward(self, indexes, grad_outputs):
        x, gy = self.get_retained_inputs()
        ggw = grad_outputs[0]
        ggb = grad_outputs[1] if self.bias else None
        if ggw is None:  # only the bias gradient was used: d(sum gy)/dgy
            ggw = chainer.Variable(np.zeros(self.w_shape, np.float32))
        ret = []
        if 0 in indexes:
            ret.append(Convolution2DGradX(self.stride, self.pad, x.shape[2:], self.precision,
                                          out_dtype=x.dtype).apply((gy, ggw))[0])
        if 1 in indexes:
            args = (x, ggw) if ggb is None else (x, ggw, ggb)
            ret.append(Convolution2DFunction(self.stride, self.pad, self.precision,
                                             out_dtype=gy.dtype).apply(args)[0])
        return ret


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
def _onednn_ok(arrays, stride, pad, w_shape):
    # (array types first: CuPy arrays never touch oneDNN, not even to load it)
    if not all(type(a) is np.ndarray for a in arrays):
        return False
    if arrays[0].dtype not in (np.float32, dnnl.BFLOAT16) or any(a.dtype != np.float32
                                                                  for a in arrays[1:]):
        return False
    if not config.use_onednn():
        return False
    x = arrays[0]
    if x.ndim != 4 or arrays[1].ndim != 4 or min(x.shape) <= 0:
        return False
    (ho, wo), pad_r = _geometry(x.shape[2:], w_shape[2:], stride, pad)
    return ho > 0 and wo > 0 and min(pad_r) >= 0 and min(pad) >= 0


def _stock_in_bands(x, W, b, pad):
    """Stride-1 ``F.convolution_2d`` (inference) on bands of output rows: the same values, an
    im2col of at most about FALLBACK_COL_BYTES. None when one band would do."""
    n, c, h, w = x.shape
    co, _, kh, kw = W.shape
    (ho, wo), _ = _geometry((h, w), (kh, kw), (1, 1), pad)
    rows = max(1, FALLBACK_COL_BYTES // max(1, n * c * kh * kw * wo * x.itemsize))
    if rows >= ho or ho <= 0 or wo <= 0:
        return None
    y = np.empty((n, co, ho, wo), x.dtype)
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        lo, hi = r0 - pad[0], r1 - 1 - pad[0] + kh  # input rows r0..r1 need (may pass the edge)
        band = x[:, :, max(lo, 0):min(hi, h)]
        band = np.pad(band, ((0, 0), (0, 0), (max(0, -lo), max(0, hi - h)), (0, 0)))
        y[:, :, r0:r1] = F.convolution_2d(band, W, b, pad=(0, pad[1])).array
    return chainer.Variable(y, requires_grad=False)


def convolution_2d(x, W, b=None, stride=1, pad=0, relu=False, keep_bf16=False):
    """Same contract as ``chainer.functions.convolution_2d`` (NCHW) for these arguments;
    with ``relu``, ``F.relu`` of it (fused into the convolution on oneDNN). x may be bfloat16
    (``keep_bf16``'s output). ``keep_bf16``: where this convolution runs on oneDNN in precision
    'bf16', the output is bfloat16 (``nnet.cpu.dnnl.BFLOAT16``), not float32: for outputs that
    only this package's layers read (convolutions, pooling, unpooling), as autocast does."""
    inputs = (x, W) if b is None else (x, W, b)
    arrays = [chainer.as_array(v) if isinstance(v, chainer.Variable) else v for v in inputs]
    stride, pad = _pair(stride), _pair(pad)
    if _onednn_ok(arrays, stride, pad, arrays[1].shape):
        precision = effective_precision()
        if precision == 'fp32' and arrays[0].dtype == dnnl.BFLOAT16:  # (a bf16 graph's input)
            inputs = (as_float32(x),) + inputs[1:]
        out_dtype = dnnl.BFLOAT16 if keep_bf16 and precision == 'bf16' else np.float32
        return Convolution2DFunction(stride, pad, precision, relu, out_dtype).apply(inputs)[0]
    x = as_float32(x)
    inputs, arrays[0] = (x,) + inputs[1:], chainer.as_array(x)
    y = None
    if (not chainer.config.enable_backprop and stride == (1, 1) and min(pad) >= 0
            and all(type(a) is np.ndarray for a in arrays) and arrays[0].ndim == 4):
        y = _stock_in_bands(*arrays[:2], arrays[2] if b is not None else None, pad)
    if y is None:
        y = F.convolution_2d(x, W, b, stride=stride, pad=pad)
    return relu_function(y, inplace=True) if relu else y


class Convolution2D(L.Convolution2D):
    """``L.Convolution2D`` whose forward goes through ``convolution_2d`` above.

    Its NumPy weights W (Cout, Cin, kh, kw) lie in memory as (kh, kw, Cin, Cout)
    (``memory.hwio``), and so does their gradient: oneDNN's per-call weight reorders read that
    layout about twice as fast. Nothing else sees a difference (shape, values, serialization)."""

    fused_relu = False  # Conv2DActiv: ReLU fused, activations between layers kept bfloat16

    def _initialize_params(self, in_channels):
        super()._initialize_params(in_channels)
        if type(self.W.array) is np.ndarray:
            self.W.array = memory.hwio(self.W.array)
            if self.W.grad is not None:  # (Chainer's initial one; backward writes into it)
                self.W.grad = memory.hwio(self.W.grad)

    def forward(self, x):
        if self.W.array is None:
            self._initialize_params(x.shape[1])
        if self.dilate != (1, 1) or self.groups != 1:
            y = F.convolution_2d(as_float32(x), self.W, self.b, stride=self.stride,
                                 pad=self.pad, dilate=self.dilate, groups=self.groups)
            return F.relu(y) if self.fused_relu else y
        return convolution_2d(x, self.W, self.b, stride=self.stride, pad=self.pad,
                              relu=self.fused_relu, keep_bf16=self.fused_relu)


class Conv2DActiv(Convolution2D):
    """A convolution followed by a ReLU, as chainercv's ``Conv2DActiv`` (ReLU only): the ReLU
    is fused into the convolution on oneDNN, and in precision 'bf16' the output stays bfloat16
    (only this package's layers read it: convolutions, pooling, unpooling).

    Args: those of ``L.Convolution2D`` and ``activ``, which must be ``F.relu``.
    """

    fused_relu = True

    def __init__(self, *args, activ=F.relu, **kwargs):
        if activ is not F.relu:
            raise ValueError('Conv2DActiv here fuses F.relu only')
        super().__init__(*args, **kwargs)
