"""Convolution used by the model: Chainer's convolution, with a fast and lean CPU path.

``convolution_2d`` and ``Convolution2D`` are drop-ins for ``chainer.functions.convolution_2d`` and
``chainer.links.Convolution2D`` (NCHW). On GPU (CuPy arrays) and for anything but float32/float64
NumPy arrays they are exactly the stock function (cuDNN on GPU). On CPU they go through the
``FunctionNode``s below, closed under differentiation like Chainer's own: forward, gx, gW and
every higher-order gradient go through the same three nodes.

How the CPU path computes (stride 1, the case the model uses) -- shifted-view GEMMs:
  * Channels last. The padded input rows of a band of output rows are copied into a buffer
    ``buf`` (rows * Wp + kw - 1, Cin): position p = y * Wp + x, channels contiguous. Output pixel
    q = y * Wp + x gets, from kernel tap (ky, kx), ``buf[q + ky * Wp + kx] @ W[:, :, ky, kx].T``,
    so the whole tap is ONE matrix product ``buf[off:off + n] @ (Cin, Cout)`` whose left operand
    is a contiguous *view* of the buffer: no im2col copy (BLAS packs the view itself), and the
    kh * kw products accumulate in place (BLAS beta = 1). Output rows come out Wp wide; the
    result is a view that skips the last kw - 1 (garbage) columns, channels-last in memory,
    which the next layer (and ReLU, pooling, the backward pass) reads without a transpose. This
    (pixels x channels) @ (channels x channels) orientation is the one OpenBLAS runs fastest for
    these shapes: about the speed of its large square products.
    Few input channels (the first layer): the tap views are copied side by side (im2col, small)
    and multiplied once. Few output channels (the alpha prediction): one product against all
    taps at once, then a sum of shifted rows.
  * Bands of about ``BAND_BYTES`` (input band + output band) keep the operands in cache and bound
    the temporaries whatever the image size: at 1920x1080 the only big arrays are the layers'
    inputs and outputs.
  * Threads: the bands are shared out to Python threads (one per OpenBLAS thread, ``THREADS``)
    that each run single-threaded products on their own bands -- the copies, sums and products
    of both cores overlap, without the synchronisation of a multi-threaded product per call.
    A small image (fewer bands than threads) shares its output channels out instead.
  * Weights are re-laid out per call into one contiguous (Cout, Cin) matrix per tap (in
    cache-sized blocks, over the threads): a few ms for the largest layers.
  * Backward: gx is the same stride-1 convolution of gy with the flipped, transposed kernel; gW
    sums ``gy_band.T @ buf[off:off + n]`` per tap over the same bands (per thread, then added);
    gb sums gy.
  * Other strides go through a general banded im2col path (copies of the strided tap views).
  * Wide 3x3 and 5x5 layers (``WINOGRAD_MIN``) go through ``nnet.winograd`` instead: Winograd
    F(2x2, 3x3) / F(2x2, 5x5), 2.25x / 2.8x fewer multiply-adds, same results to rounding.

Accumulating products (C += A @ B) on strided views are not available through NumPy, so ``gemm``
calls ``cblas_?gemm`` of the OpenBLAS that NumPy itself is linked with, through ctypes (no compiled
code, no new dependency). Where that library can't be found (another BLAS, another platform), or
with the environment variable ``FAST_CONV_BLAS=numpy``, a pure-NumPy fallback (matmul into a
scratch, then add; no Python threads) gives the same results, slower.
"""
import concurrent.futures
import contextlib
import ctypes
import glob
import itertools
import os
import threading

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
from chainer import function_node
from chainer.utils import type_check

# Target working set of one band (padded input rows + output rows), bytes. Tests lower it to
# force the banded path on small inputs.
BAND_BYTES = 4 << 20
HALO_FACTOR = 2  # ... but at least this many times the kh - 1 extra input rows
# Cap for the im2col buffer of the general (strided) path, bytes.
COL_BYTES = 64 << 20
# Stride-1 organisation: None (automatic), or force 'taps', 'col', 'out' or 'wino' (tests;
# 'wino' where nnet.winograd applies, else 'taps').
FORCE_MODE = None
SMALL_K = 256  # im2col when kh * kw * Cin is at most this
# Winograd (nnet.winograd) for k x k layers with at least WINOGRAD_MIN[k] = (input and output
# channels, output pixels): below, its transforms cost more than the products they save.
WINOGRAD_MIN = {3: (128, 256), 5: (256, 400)}
# Python threads that share the bands of a convolution (None: as many as OpenBLAS threads).
THREADS = None
MIN_BAND_PIXELS = 512  # (rows * Wp) below which a band is not split further for the threads
THREAD_CHUNK = 1 << 16  # elements below which element-wise work (nnet.fast_pool) is not split

# ``chainer.using_config('fast_cpu', False)`` (or ``stock_path()``) switches the fast CPU paths of
# this module and of nnet.fast_pool off: the stock Chainer functions run instead.
chainer.global_config.fast_cpu = True


@contextlib.contextmanager
def stock_path():
    """Within this context convolutions and poolings run Chainer's stock functions."""
    with chainer.using_config('fast_cpu', False):
        yield


def keep_freed_memory(limit=1 << 30):
    """Ask glibc's malloc to keep freed blocks of up to ``limit`` bytes for reuse instead of
    returning them to the system (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD).

    Each layer's output and scratch is a fresh array; memory new to the process costs a page
    fault per 4 KiB on first touch (about 2.7 ms per MB on this project's VM: 70 ms for one
    320x320x64 float32 activation), while reused memory costs nothing. The peak memory stays the
    same; the process just keeps it until it exits. Called by train.py, demo.py, evaluate.py
    and the benchmark (not on import). Returns whether glibc took both settings.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.restype, mallopt.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int]
    m_trim_threshold, m_mmap_threshold = -1, -3
    limit = int(min(limit, 2 ** 31 - 1))
    return bool(mallopt(m_mmap_threshold, limit)) & bool(mallopt(m_trim_threshold, limit))


# ---------------------------------------------------------------------------------------------
# GEMM with accumulation: C (+)= A @ B on 2-D views
# ---------------------------------------------------------------------------------------------
_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS = 101, 111, 112


def _blas_candidates():
    """Paths of shared libraries that may hold NumPy's BLAS (its bundled copy first)."""
    here = os.path.dirname(np.__file__)
    paths = sorted(glob.glob(os.path.join(here, '..', 'numpy.libs', '*openblas*')))
    paths += sorted(glob.glob(os.path.join(here, '.libs', '*openblas*')))
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                path = line.split()[-1]
                if 'blas' in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    return paths


def _load_cblas():
    """({dtype: cblas_?gemm}, (get, set) of its thread count or None) from NumPy's OpenBLAS,
    checked on a small product; ({}, None) if unusable."""
    if os.environ.get('FAST_CONV_BLAS', '').lower() == 'numpy':
        return {}, None
    for path in _blas_candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        # OpenBLAS' ILP64 build suffixes its symbols with 64_ and takes 64-bit integers (NumPy 2's
        # wheels also prefix them with scipy_); the plain names of an OpenBLAS build take C ints.
        for prefix, suffix, int_t in (('scipy_', '64_', ctypes.c_int64), ('', '64_', ctypes.c_int64),
                                      ('', '', ctypes.c_int)):
            if not suffix and '64' in os.path.basename(path):
                continue  # an ILP64 library under the plain names: integer width unknown
            funcs = {}
            for dtype, letter, real_t in ((np.float32, 's', ctypes.c_float),
                                          (np.float64, 'd', ctypes.c_double)):
                fn = getattr(lib, f'{prefix}cblas_{letter}gemm{suffix}', None)
                if fn is None:
                    break
                fn.restype = None
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t,
                               real_t, ctypes.c_void_p, int_t, ctypes.c_void_p, int_t, real_t,
                               ctypes.c_void_p, int_t]
                funcs[np.dtype(dtype)] = fn
            if len(funcs) == 2 and _check_cblas(funcs):
                get = getattr(lib, f'{prefix}openblas_get_num_threads{suffix}', None)
                put = getattr(lib, f'{prefix}openblas_set_num_threads{suffix}', None)
                if get is None or put is None:
                    return funcs, None
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                return funcs, (get, put)
    return {}, None


def _check_cblas(funcs):
    rng = np.random.RandomState(0)
    for dtype in funcs:
        a = rng.rand(7, 12).astype(dtype)[:, 1:10]  # strided views, one of them transposed
        b = rng.rand(5, 9).astype(dtype).T
        c = rng.rand(7, 5).astype(dtype)
        want = c + a @ b
        _gemm_blas(funcs[dtype], a, b, c, True)
        if not np.allclose(c, want, rtol=1e-4, atol=1e-5):
            return False
    return True


def _operand(m):
    """(transpose flag, leading dimension) of a 2-D view with one unit stride, or None."""
    item = m.itemsize
    s0, s1 = m.strides
    rows, cols = m.shape
    if (s1 == item or cols == 1) and s0 % item == 0 and s0 // item >= max(cols, 1):
        return _CBLAS_NO_TRANS, max(s0 // item, cols, 1)
    if (s0 == item or rows == 1) and s1 % item == 0 and s1 // item >= max(rows, 1):
        return _CBLAS_TRANS, max(s1 // item, rows, 1)
    return None


def _gemm_blas(fn, a, b, c, accumulate):
    (m, k), n = a.shape, b.shape[1]
    ta, tb, tc = _operand(a), _operand(b), _operand(c)
    if tc is None or tc[0] != _CBLAS_NO_TRANS:
        return False
    if ta is None:
        a = np.ascontiguousarray(a)
        ta = _operand(a)
    if tb is None:
        b = np.ascontiguousarray(b)
        tb = _operand(b)
    fn(_CBLAS_ROW_MAJOR, ta[0], tb[0], m, n, k, 1.0, a.ctypes.data, ta[1], b.ctypes.data,
       tb[1], 1.0 if accumulate else 0.0, c.ctypes.data, tc[1])
    return True


_CBLAS = None  # {dtype: cblas_?gemm}, loaded on first use
_BLAS_THREADS = None  # (get, set) of OpenBLAS' thread count


def blas_backend():
    """'cblas' when accumulating GEMMs go to NumPy's OpenBLAS directly, else 'numpy'."""
    global _CBLAS, _BLAS_THREADS
    if _CBLAS is None:
        _CBLAS, _BLAS_THREADS = _load_cblas()
    return 'cblas' if _CBLAS else 'numpy'


def blas_threads():
    """Threads OpenBLAS uses for one product (1 with the NumPy fallback)."""
    if blas_backend() == 'cblas' and _BLAS_THREADS:
        return max(1, int(_BLAS_THREADS[0]()))
    return 1


_POOL = None
_PARALLEL_LOCK = threading.Lock()


def run_parallel(n_tasks, task):
    """``task(worker, j)`` for j in range(n_tasks), spread over THREADS Python threads (default:
    as many as OpenBLAS uses), each taking the next task as it finishes one; meanwhile OpenBLAS
    runs single-threaded, so each thread's products, copies and sums run on a core of its own
    (NumPy and ctypes release the GIL). ``worker`` is the thread's index (for its buffers)."""
    global _POOL
    nt = min(THREADS or blas_threads(), n_tasks)
    if nt <= 1 or not _BLAS_THREADS or not _PARALLEL_LOCK.acquire(blocking=False):
        for j in range(n_tasks):  # (also when called from inside a parallel region)
            task(0, j)
        return
    try:
        if _POOL is None or _POOL[0] < nt - 1 or _POOL[2] != os.getpid():  # (new after fork)
            _POOL = (nt - 1, concurrent.futures.ThreadPoolExecutor(nt - 1, 'fast_conv'),
                     os.getpid())
        get, put = _BLAS_THREADS
        before = get()
        put(1)
        tasks = itertools.count()

        def work(worker):
            for j in tasks:
                if j >= n_tasks:
                    return
                task(worker, j)

        try:
            futures = [_POOL[1].submit(work, k) for k in range(1, nt)]
            try:
                work(0)
            finally:
                concurrent.futures.wait(futures)
            for f in futures:
                f.result()
        finally:
            put(before)
    finally:
        _PARALLEL_LOCK.release()


def gemm(a, b, c, accumulate=False):
    """``c = a @ b`` or, with ``accumulate``, ``c += a @ b``, in place, on 2-D NumPy views.

    a (m, k), b (k, n), c (m, n), one dtype (float32 or float64); each with a unit stride in one
    dimension (c: in its last one) -- views of bigger arrays are fine and are not copied.
    """
    if blas_backend() == 'cblas' and c.dtype in _CBLAS and a.dtype == b.dtype == c.dtype:
        if a.shape[0] == 0 or b.shape[1] == 0:
            return
        if a.shape[1] == 0:
            if not accumulate:
                c[...] = 0
            return
        if _gemm_blas(_CBLAS[c.dtype], a, b, c, accumulate):
            return
    if _operand(a) is None:
        a = np.ascontiguousarray(a)
    if _operand(b) is None:
        b = np.ascontiguousarray(b)
    if accumulate:
        c += a @ b
    else:
        np.matmul(a, b, out=c)


# ---------------------------------------------------------------------------------------------
# NumPy kernels
# ---------------------------------------------------------------------------------------------
def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _band_rows(total_rows, row_elems, itemsize, extra_rows=0, budget=None):
    """Rows per band so that (rows + extra_rows) * row_elems * itemsize ~ the band budget."""
    budget = BAND_BYTES if budget is None else budget
    rows = budget // max(1, row_elems * itemsize) - extra_rows
    rows = max(rows, HALO_FACTOR * extra_rows)  # wide images: not mostly halo rows
    return int(max(1, min(total_rows, rows)))


def _fill_band(buf, x, r_lo, rows, wp, pw):
    """Padded rows ``r_lo .. r_lo + rows`` (input coordinates, may run past the edges) of one
    image x (C, H, W), channels-last, into ``buf[:rows * wp]`` seen as (rows, Wp, C), the image
    at column offset pw. Rows outside the image become zeros; the pad columns are never written
    here and must already be zero."""
    c, h, w = x.shape
    b3 = buf[:rows * wp].reshape(rows, wp, c)
    a, z = max(r_lo, 0), min(r_lo + rows, h)
    if a >= z:
        b3[...] = 0
        return
    if a > r_lo:
        b3[:a - r_lo] = 0
    if z < r_lo + rows:
        b3[z - r_lo:] = 0
    b3[a - r_lo:z - r_lo, pw:pw + w] = x[:, a:z].transpose(1, 2, 0)


def _crop_negative_pad(x, pad):
    """Negative padding is a crop: returns (x cropped, pad clipped at 0)."""
    ph, pw = pad
    if ph < 0:
        x = x[:, :, -ph:x.shape[2] + ph]
    if pw < 0:
        x = x[:, :, :, -pw:x.shape[3] + pw]
    return x, (max(ph, 0), max(pw, 0))


def _s1_mode(c, co, kh, kw):
    """How a stride-1 product is organised (see conv_s1)."""
    if FORCE_MODE:
        return 'taps' if FORCE_MODE == 'wino' else FORCE_MODE
    if kh * kw * c <= SMALL_K:
        return 'col'  # few input channels: the im2col copy is cheap, one product
    if kh * kw * co <= c:
        return 'out'  # a handful of output channels (the alpha prediction)
    return 'taps'


def _im2col(buf, cbuf, nb, kh, kw, wp):
    """cbuf[q] = the kh*kw taps of padded-band position q side by side, (ky, kx, C) order.

    With channels last, the kw taps of one kernel row are ``kw * C`` consecutive numbers of
    ``buf``, so each kernel row is one copy from an overlapping-rows view."""
    c = buf.shape[1]
    if c * kw < 16:  # a few channels: one strided copy per tap is faster
        c3 = cbuf[:nb].reshape(nb, kh * kw, c)
        for t in range(kh * kw):
            off = (t // kw) * wp + t % kw
            for ch in range(c):
                c3[:, t, ch] = buf[off:off + nb, ch]
        return
    c3 = cbuf[:nb].reshape(nb, kh, kw * c)
    for ky in range(kh):
        src = buf[ky * wp:]
        c3[:, ky] = np.lib.stride_tricks.as_strided(src, (nb, kw * c), (src.strides[0],
                                                                          src.strides[1]))


def _nchw_view(a, n, h, wp, wo, co):
    """(N, H * Wp, Co) channels-last rows Wp wide -> (N, Co, H, Wo) view without the extra
    columns."""
    return a.reshape(n, h, wp, co)[:, :, :wo].transpose(0, 3, 1, 2)


def _relayout(dst, src, perm, axis_dst, axis_src):
    """dst[...] = src.transpose(perm), in blocks along one axis (cache-friendly, parallel)."""
    size = src.shape[axis_src]
    step = max(1, (256 << 10) // max(1, src.nbytes // max(1, size)))
    starts = range(0, size, step)

    def task(worker, j):
        sl_src = [slice(None)] * src.ndim
        sl_dst = [slice(None)] * dst.ndim
        sl_src[axis_src] = sl_dst[axis_dst] = slice(starts[j], starts[j] + step)
        dst[tuple(sl_dst)] = src[tuple(sl_src)].transpose(perm)

    if src.nbytes > (4 << 20):
        run_parallel(len(starts), task)
    else:
        for j in range(len(starts)):
            task(0, j)
    return dst


def tap_matrices(W):
    """W (Cout, Cin, kh, kw) -> (kh, kw, Cout, Cin) contiguous: one (Cout, Cin) matrix per tap."""
    co, c, kh, kw = W.shape
    return _relayout(np.empty((kh, kw, co, c), W.dtype), W, (2, 3, 0, 1), 2, 0)


def _from_tap_matrices(taps):
    """(kh, kw, Cout, Cin) -> (Cout, Cin, kh, kw) contiguous (the inverse of tap_matrices)."""
    kh, kw, co, c = taps.shape
    return _relayout(np.empty((co, c, kh, kw), taps.dtype), taps, (2, 3, 0, 1), 0, 2)


def _bands(n, ho, wp, row_elems, itemsize, extra_rows):
    """[(image, first row, rows)]: bands of about BAND_BYTES, at least two per thread when the
    image is big enough to keep the products efficient."""
    rows = _band_rows(ho, row_elems, itemsize, extra_rows=extra_rows)
    threads = THREADS or blas_threads()
    if threads > 1:  # a multiple of the threads, so that they finish together
        rows = min(rows, max(-(-ho // (2 * threads)), -(-MIN_BAND_PIXELS // wp)))
        per_image = -(-ho // rows)
        if per_image > 1 and (n * per_image) % threads:
            per_image += threads - (n * per_image) % threads
        rows = -(-ho // per_image)
    rows = max(1, min(rows, ho))
    return [(i, r0, min(rows, ho - r0)) for i in range(n) for r0 in range(0, ho, rows)], rows


def _channel_chunks(co, n_bands):
    """[(first, last)] output channels per task: all of them, or, when there are fewer bands
    than threads, one share per thread (at least 64 channels each)."""
    threads = THREADS or blas_threads()
    parts = min(threads, co // 64) if n_bands < threads else 1
    if parts <= 1:
        return [(0, co)]
    step = -(-co // parts)
    return [(c0, min(c0 + step, co)) for c0 in range(0, co, step)]


def conv_s1(x, taps, b, pad):
    """Stride-1 convolution over bands of output rows; x (N, C, H, W) in any memory layout,
    ``taps`` (kh, kw, C, Cout): the (C, Cout) matrix of each kernel tap (views with a unit
    stride are fine). Padding may exceed ``k - 1`` or be negative (a crop). Returns
    (N, Cout, Ho, Wo): a view of a channels-last buffer (N, Ho, Wp, Cout), which the next layer
    reads without any transpose.

    Per band, the padded input rows go to ``buf`` (rows * Wp + kw - 1, C), then, by mode:
      taps: for each tap, out += buf[off:off + n] @ taps[ky, kx] (views, BLAS beta=1);
      col:  the tap views are copied side by side into one (n, kh*kw*C) matrix (im2col);
      out:  Z = buf @ (C, kh*kw*Cout), then out = sum over taps of Z's shifted rows.
    The bands are shared out to the threads of ``run_parallel``.
    """
    x, (ph, pw) = _crop_negative_pad(x, pad)
    n, c, h, w = x.shape
    kh, kw, _, co = taps.shape
    ho, wo = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    dtype = x.dtype
    if ho <= 0 or wo <= 0:
        return np.zeros((n, co, max(ho, 0), max(wo, 0)), dtype)
    if kh == kw == 1 and ph == pw == 0:  # plain matrix product, no padding needed
        y = np.empty((n, h * w, co), dtype)
        for i in range(n):
            gemm(x[i].transpose(1, 2, 0).reshape(h * w, c), taps[0, 0], y[i])
            if b is not None:
                y[i] += b
        return _nchw_view(y, n, h, w, w, co)
    wp = w + 2 * pw  # = wo + kw - 1
    mode = _s1_mode(c, co, kh, kw)
    out = np.empty((n, ho * wp, co), dtype)
    bands, rows = _bands(n, ho, wp, (c + co) * wp, x.itemsize, kh - 1)
    blen = (rows + kh - 1) * wp + kw - 1
    if mode == 'col':
        wcol = np.ascontiguousarray(taps).reshape(kh * kw * c, co)
    elif mode == 'out':
        wz = np.ascontiguousarray(taps.transpose(2, 0, 1, 3)).reshape(c, kh * kw * co)
    scratch = {}
    # a small image (fewer bands than threads): the threads share the output channels instead
    chunks = _channel_chunks(co, len(bands)) if mode == 'taps' else [(0, co)]

    def band(worker, j):
        (i, r0, nr), (c0, c1) = bands[j // len(chunks)], chunks[j % len(chunks)]
        if worker not in scratch:  # zeros: the pad columns are never written
            scratch[worker] = (np.zeros((blen, c), dtype),
                               np.empty((rows * wp, kh * kw * c), dtype) if mode == 'col' else
                               np.empty((blen, kh * kw * co), dtype) if mode == 'out' else None)
        buf, extra = scratch[worker]
        _fill_band(buf, x[i], r0 - ph, nr + kh - 1, wp, pw)
        nb = nr * wp
        o = out[i, r0 * wp:r0 * wp + nb, c0:c1]
        if mode == 'taps':
            if b is not None:
                o[...] = b[c0:c1]  # then every tap accumulates
            for ky in range(kh):
                for kx in range(kw):
                    off = ky * wp + kx
                    gemm(buf[off:off + nb], taps[ky, kx, :, c0:c1], o,
                         accumulate=b is not None or ky or kx)
            return
        if mode == 'col':
            _im2col(buf, extra, nb, kh, kw, wp)
            gemm(extra[:nb], wcol, o)
        else:
            gemm(buf, wz, extra)
            z3 = extra.reshape(blen, kh * kw, co)
            o[...] = z3[:nb, 0]
            for t in range(1, kh * kw):
                off = (t // kw) * wp + t % kw
                o += z3[off:off + nb, t]
        if b is not None:
            o += b

    run_parallel(len(bands) * len(chunks), band)
    return _nchw_view(out, n, ho, wp, wo, co)


def _use_winograd(c, co, ksize, pad, out_size):
    """Whether a stride-1 convolution goes through nnet.winograd (the kernel it has transforms
    for, padding 0 .. k - 1, and, unless forced, enough channels and pixels)."""
    kh, kw = ksize
    if (kh != kw or kh not in winograd.TRANSFORMS or FORCE_MODE not in (None, 'wino')
            or not all(0 <= p <= kh - 1 for p in pad) or min(out_size) <= 0):
        return False
    min_channels, min_pixels = WINOGRAD_MIN[kh]
    return FORCE_MODE == 'wino' or (min(c, co) >= min_channels
                                    and out_size[0] * out_size[1] >= min_pixels)


def conv_forward_s1(x, W, b, pad):
    """Stride-1 convolution, NCHW (see conv_s1 and nnet.winograd)."""
    co, c, kh, kw = W.shape
    out_size = (x.shape[2] + 2 * pad[0] - kh + 1, x.shape[3] + 2 * pad[1] - kw + 1)
    if _use_winograd(c, co, (kh, kw), pad, out_size):
        return winograd.conv_forward(x, W, b, pad)
    return conv_s1(x, tap_matrices(W).transpose(0, 1, 3, 2), b, pad)


def conv_grad_x_s1(gy, W, pad, in_size):
    """dL/dx of the stride-1 convolution: gy convolved with the flipped, transposed kernel."""
    co, c, kh, kw = W.shape
    if _use_winograd(co, c, (kh, kw), pad, in_size):
        return winograd.conv_grad_x(gy, W, pad)
    gx = conv_s1(gy, tap_matrices(W)[::-1, ::-1], None, (kh - 1 - pad[0], kw - 1 - pad[1]))
    assert gx.shape[2:] == tuple(in_size), (gx.shape, in_size)
    return gx


def conv_grad_w_s1(x, gy, ksize, pad):
    """dL/dW (Cout, Cin, kh, kw) of the stride-1 convolution, from x and gy, over bands.

    Per band, with the padded input rows in ``buf`` (rows * Wp + kw - 1, C) and gy's rows, Wp
    wide with zeros in the extra columns, in ``g`` (n, Cout): taps: gW[tap] += g.T @
    buf[off:off + n], g.T stored contiguous (channels first: OpenBLAS runs this shape ~10%
    faster than with a transposed view); col: gW += g.T @ im2col(buf); out (few output
    channels): gW += G.T @ buf, G holding the kh*kw shifted copies of g side by side. Each
    thread sums its own bands.
    """
    kh, kw = ksize
    if _use_winograd(x.shape[1], gy.shape[1], ksize, pad, gy.shape[2:]) and gy.size:
        return winograd.conv_grad_w(x, gy, pad)
    x, (ph, pw) = _crop_negative_pad(x, pad)
    n, c, h, w = x.shape
    co, ho, wo = gy.shape[1:]
    dtype = x.dtype
    if ho <= 0 or wo <= 0:
        return np.zeros((co, c, kh, kw), dtype)
    wp = w + 2 * pw
    assert wo == wp - kw + 1 and ho == h + 2 * ph - kh + 1, (x.shape, gy.shape, ksize, pad)
    mode = _s1_mode(c, co, kh, kw)
    bands, rows = _bands(n, ho, wp, (c + co) * wp, x.itemsize, kh - 1)
    blen = (rows + kh - 1) * wp + kw - 1
    gw_shape = (co, kh, kw, c) if mode == 'col' else (kh, kw, co, c)
    scratch = {}
    chunks = _channel_chunks(co, len(bands)) if mode == 'taps' else [(0, co)]

    # one band cut into channel chunks: the tasks write disjoint parts of one shared gW
    shared = np.zeros(gw_shape, dtype) if len(chunks) > 1 and len(bands) == 1 else None

    def band(worker, j):
        (i, r0, nr), (c0, c1) = bands[j // len(chunks)], chunks[j % len(chunks)]
        if worker not in scratch:
            scratch[worker] = (
                shared if shared is not None else np.zeros(gw_shape, dtype),
                np.zeros((blen, c), dtype),
                # gy rows, Wp wide, zeros in the extra columns (taps: channels first)
                np.zeros((co, rows * wp) if mode == 'taps' else (rows * wp, co), dtype),
                np.empty((rows * wp, kh * kw * c), dtype) if mode == 'col' else
                np.zeros((blen, kh * kw * co), dtype) if mode == 'out' else None)
        gw, buf, gbuf, extra = scratch[worker]
        _fill_band(buf, x[i], r0 - ph, nr + kh - 1, wp, pw)
        nb = nr * wp
        if mode == 'taps':
            gbuf[c0:c1].reshape(c1 - c0, rows, wp)[:, :nr, :wo] = gy[i, c0:c1, r0:r0 + nr]
            g_t = gbuf[c0:c1, :nb]
            for ky in range(kh):
                for kx in range(kw):
                    off = ky * wp + kx
                    gemm(g_t, buf[off:off + nb], gw[ky, kx, c0:c1], accumulate=True)
            return
        gbuf[:nb].reshape(nr, wp, co)[:, :wo] = gy[i, :, r0:r0 + nr].transpose(1, 2, 0)
        g = gbuf[:nb]
        if mode == 'col':
            _im2col(buf, extra, nb, kh, kw, wp)
            gemm(g.T, extra[:nb], gw.reshape(co, kh * kw * c), accumulate=True)
        else:
            lb = (nr + kh - 1) * wp + kw - 1
            z3 = extra.reshape(blen, kh * kw, co)
            for t in range(kh * kw):
                off = (t // kw) * wp + t % kw
                z3[:off, t] = 0
                z3[off:off + nb, t] = g
                z3[off + nb:, t] = 0
            gemm(extra[:lb].T, buf[:lb], gw.reshape(kh * kw * co, c), accumulate=True)

    run_parallel(len(bands) * len(chunks), band)
    parts = [s[0] for s in scratch.values()]
    gw = parts[0]
    for part in parts[1:] if shared is None else ():
        gw += part
    if mode == 'col':
        return np.ascontiguousarray(gw.transpose(0, 3, 1, 2))
    return _from_tap_matrices(gw)


def _out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _col_rows(ho, per_row_elems, itemsize):
    return _band_rows(ho, per_row_elems, itemsize, budget=min(COL_BYTES, BAND_BYTES * 4))


def _tap_view(xp, ky, kx, r0, nr, wo, s):
    """Tap (ky, kx) of output rows r0..r0+nr of a padded image xp (C, Hp, Wp), stride s."""
    sy, sx = s
    return xp[:, ky + sy * r0:ky + sy * (r0 + nr - 1) + 1:sy, kx:kx + sx * (wo - 1) + 1:sx]


def conv_forward_general(x, W, b, stride, pad):
    """Any stride, pad >= 0: banded im2col (copies of the strided tap views) and one GEMM."""
    n, c, h, w = x.shape
    co, _, kh, kw = W.shape
    (sy, sx), (ph, pw) = stride, pad
    ho, wo = _out_size(h, kh, sy, ph), _out_size(w, kw, sx, pw)
    y = np.empty((n, co, max(ho, 0), max(wo, 0)), x.dtype)
    if ho <= 0 or wo <= 0:
        return y
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    wm = np.ascontiguousarray(W.transpose(0, 2, 3, 1)).reshape(co, kh * kw * c)
    rows = _col_rows(ho, kh * kw * c * wo, x.itemsize)
    col = np.empty((kh * kw * c, rows * wo), x.dtype)
    for i in range(n):
        for r0 in range(0, ho, rows):
            nr = min(rows, ho - r0)
            m = nr * wo
            col5 = col[:, :m].reshape(kh, kw, c, nr, wo)
            for ky in range(kh):
                for kx in range(kw):
                    col5[ky, kx] = _tap_view(xp[i], ky, kx, r0, nr, wo, stride)
            gemm(wm, col[:, :m], y[i, :, r0:r0 + nr].reshape(co, m))
    if b is not None:
        y += b[:, None, None]
    return y


def conv_grad_x_general(gy, W, stride, pad, in_size):
    n, co, ho, wo = gy.shape
    _, c, kh, kw = W.shape
    (ph, pw), (h, w) = pad, in_size
    gxp = np.zeros((n, c, h + 2 * ph + stride[0], w + 2 * pw + stride[1]), gy.dtype)
    wmt = np.ascontiguousarray(W.transpose(2, 3, 1, 0)).reshape(kh * kw * c, co)
    if ho > 0 and wo > 0:
        rows = _col_rows(ho, kh * kw * c * wo, gy.itemsize)
        col = np.empty((kh * kw * c, rows * wo), gy.dtype)
        g = np.empty((co, rows * wo), gy.dtype)
        for i in range(n):
            for r0 in range(0, ho, rows):
                nr = min(rows, ho - r0)
                m = nr * wo
                g[:, :m].reshape(co, nr, wo)[...] = gy[i, :, r0:r0 + nr]
                gemm(wmt, g[:, :m], col[:, :m])
                col5 = col[:, :m].reshape(kh, kw, c, nr, wo)
                for ky in range(kh):
                    for kx in range(kw):
                        _tap_view(gxp[i], ky, kx, r0, nr, wo, stride)[...] += col5[ky, kx]
    return gxp[:, :, ph:ph + h, pw:pw + w]


def conv_grad_w_general(x, gy, ksize, stride, pad):
    n, c, h, w = x.shape
    co, ho, wo = gy.shape[1:]
    kh, kw = ksize
    ph, pw = pad
    gw = np.zeros((co, kh * kw * c), x.dtype)
    if ho > 0 and wo > 0:
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        rows = _col_rows(ho, kh * kw * c * wo, x.itemsize)
        col = np.empty((kh * kw * c, rows * wo), x.dtype)
        g = np.empty((co, rows * wo), x.dtype)
        for i in range(n):
            for r0 in range(0, ho, rows):
                nr = min(rows, ho - r0)
                m = nr * wo
                col5 = col[:, :m].reshape(kh, kw, c, nr, wo)
                for ky in range(kh):
                    for kx in range(kw):
                        col5[ky, kx] = _tap_view(xp[i], ky, kx, r0, nr, wo, stride)
                g[:, :m].reshape(co, nr, wo)[...] = gy[i, :, r0:r0 + nr]
                gemm(g[:, :m], col[:, :m].T, gw, accumulate=True)
    return np.ascontiguousarray(gw.reshape(co, kh, kw, c).transpose(0, 3, 1, 2))


def conv_forward(x, W, b, stride, pad):
    if stride == (1, 1):
        return conv_forward_s1(x, W, b, pad)
    return conv_forward_general(x, W, b, stride, pad)


def conv_grad_x(gy, W, stride, pad, in_size):
    if stride == (1, 1):
        return conv_grad_x_s1(gy, W, pad, in_size)
    return conv_grad_x_general(gy, W, stride, pad, in_size)


def conv_grad_w(x, gy, ksize, stride, pad):
    if stride == (1, 1):
        return conv_grad_w_s1(x, gy, ksize, pad)
    return conv_grad_w_general(x, gy, ksize, stride, pad)


# ---------------------------------------------------------------------------------------------
# FunctionNodes: y = conv(x, W) + b, gx = conv_grad_x(gy, W), gW = conv_grad_w(x, gy)
# ---------------------------------------------------------------------------------------------
def _check_cpu(inputs):
    for a in inputs:
        if type(a) is not np.ndarray:
            raise TypeError('nnet.fast_conv nodes take NumPy arrays; use convolution_2d()')


class Convolution2DFunction(function_node.FunctionNode):
    """y = conv(x, W) (+ b), CPU. Inputs (x, W) or (x, W, b)."""

    def __init__(self, stride=1, pad=0):
        self.stride, self.pad = _pair(stride), _pair(pad)

    def check_type_forward(self, in_types):
        n_in = in_types.size()
        type_check.expect(2 <= n_in, n_in <= 3)
        x_type, w_type = in_types[:2]
        type_check.expect(x_type.dtype.kind == 'f', w_type.dtype == x_type.dtype,
                          x_type.ndim == 4, w_type.ndim == 4, x_type.shape[1] == w_type.shape[1])
        if type_check.eval(n_in) == 3:
            b_type = in_types[2]
            type_check.expect(b_type.dtype == x_type.dtype, b_type.ndim == 1,
                              b_type.shape[0] == w_type.shape[0])

    def forward(self, inputs):
        _check_cpu(inputs)
        self.retain_inputs((0, 1))
        x, W = inputs[:2]
        b = inputs[2] if len(inputs) == 3 else None
        return conv_forward(x, W, b, self.stride, self.pad),

    def backward(self, indexes, grad_outputs):
        x, W = self.get_retained_inputs()
        gy, = grad_outputs
        ret = []
        if 0 in indexes:
            ret.append(Convolution2DGradX(self.stride, self.pad, x.shape[2:]).apply((gy, W))[0])
        if 1 in indexes:
            ret.append(Convolution2DGradW(self.stride, self.pad, W.shape[2:]).apply((x, gy))[0])
        if 2 in indexes:
            ret.append(F.sum(gy, axis=(0, 2, 3)))
        return ret


class Convolution2DGradX(function_node.FunctionNode):
    """gx = transposed convolution of gy with W (the input gradient). Inputs (gy, W)."""

    def __init__(self, stride, pad, in_size):
        self.stride, self.pad, self.in_size = _pair(stride), _pair(pad), tuple(in_size)

    def forward(self, inputs):
        _check_cpu(inputs)
        self.retain_inputs((0, 1))
        gy, W = inputs
        return conv_grad_x(gy, W, self.stride, self.pad, self.in_size),

    def backward(self, indexes, grad_outputs):
        gy, W = self.get_retained_inputs()
        ggx, = grad_outputs
        ret = []
        if 0 in indexes:
            ret.append(Convolution2DFunction(self.stride, self.pad).apply((ggx, W))[0])
        if 1 in indexes:
            ret.append(Convolution2DGradW(self.stride, self.pad, W.shape[2:]).apply((ggx, gy))[0])
        return ret


class Convolution2DGradW(function_node.FunctionNode):
    """gW = correlation of x with gy (the filter gradient). Inputs (x, gy)."""

    def __init__(self, stride, pad, ksize):
        self.stride, self.pad, self.ksize = _pair(stride), _pair(pad), _pair(ksize)

    def forward(self, inputs):
        _check_cpu(inputs)
        self.retain_inputs((0, 1))
        x, gy = inputs
        return conv_grad_w(x, gy, self.ksize, self.stride, self.pad),

    def backward(self, indexes, grad_outputs):
        x, gy = self.get_retained_inputs()
        ggw, = grad_outputs
        ret = []
        if 0 in indexes:
            ret.append(Convolution2DGradX(self.stride, self.pad, x.shape[2:]).apply((gy, ggw))[0])
        if 1 in indexes:
            ret.append(Convolution2DFunction(self.stride, self.pad).apply((x, ggw))[0])
        return ret


def _fast_path_ok(arrays):
    if not getattr(chainer.config, 'fast_cpu', True):
        return False
    dtype = arrays[0].dtype
    return (all(type(a) is np.ndarray and a.dtype == dtype for a in arrays)
            and dtype in (np.float32, np.float64) and arrays[0].ndim == 4)


def convolution_2d(x, W, b=None, stride=1, pad=0):
    """Same contract as ``chainer.functions.convolution_2d`` (NCHW) for these arguments.

    NumPy float32/float64 inputs go through ``Convolution2DFunction``; anything else (CuPy,
    ChainerX, float16) and the ``stock_path()`` context go to ``F.convolution_2d``.
    """
    inputs = (x, W) if b is None else (x, W, b)
    arrays = [chainer.as_array(v) if isinstance(v, chainer.Variable) else v for v in inputs]
    if _fast_path_ok(arrays):
        return Convolution2DFunction(stride, pad).apply(inputs)[0]
    return F.convolution_2d(x, W, b, stride=stride, pad=pad)


class Convolution2D(L.Convolution2D):
    """``L.Convolution2D`` whose forward goes through ``convolution_2d`` above."""

    def forward(self, x):
        if self.W.array is None:
            self._initialize_params(x.shape[1])
        if self.dilate != (1, 1) or self.groups != 1:
            return F.convolution_2d(x, self.W, self.b, stride=self.stride, pad=self.pad,
                                    dilate=self.dilate, groups=self.groups)
        return convolution_2d(x, self.W, self.b, stride=self.stride, pad=self.pad)


from nnet import winograd  # noqa: E402  (it uses gemm and run_parallel above)
