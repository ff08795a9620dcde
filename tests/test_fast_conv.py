"""The fast CPU convolution (nnet.fast_conv) and pooling (nnet.fast_pool) against Chainer's own."""
import chainer
import chainer.functions as F
import chainer.gradient_check
import numpy as np
import pytest

from nnet import fast_conv, fast_pool
from nnet.fast_conv import Convolution2D, convolution_2d, stock_path
from nnet.model import DIM
from tests.helpers import rel_err

MODES = (None, 'taps', 'col', 'out', 'wino')  # automatic choice, then each organisation forced

# (batch, in_ch, H, W, out_ch, ksize, stride, pad, bias)
CASES = [
    (1, 6, 8, 8, 5, 1, 1, 0, True),  # 1x1 (deconv6)
    (1, 4, 9, 9, 7, 3, 1, 1, True),  # 3x3 pad 1 (encoder, refinement)
    (2, 5, 10, 12, 3, 5, 1, 2, True),  # 5x5 pad 2 (decoder), batch > 1
    (1, 7, 8, 8, 1, 5, 1, 2, True),  # one output channel (alpha prediction)
    (1, 1, 7, 6, 9, 5, 1, 2, True),  # one input channel
    (3, 3, 13, 9, 4, 3, 1, 1, False),  # odd, non-square, no bias
    (1, 3, 11, 7, 2, 3, 2, 1, True),  # stride 2
    (2, 2, 9, 10, 3, 3, (2, 1), (0, 2), True),  # anisotropic stride and pad
    (1, 3, 7, 9, 4, 3, 1, 0, True),  # no padding
    (1, 2, 5, 6, 3, 3, 1, 3, True),  # padding beyond the kernel
    (1, 3, 8, 7, 2, (3, 5), 1, (1, 2), False),  # rectangular kernel
]


def make(case, dtype=np.float32, seed=0):
    n, c, h, w, co, k, stride, pad, bias = case
    kh, kw = (k, k) if np.isscalar(k) else k
    rng = np.random.RandomState(seed)
    x = rng.randn(n, c, h, w).astype(dtype)
    W = rng.randn(co, c, kh, kw).astype(dtype)
    b = rng.randn(co).astype(dtype) if bias else None
    return x, W, b, stride, pad


@pytest.fixture(params=MODES, ids=lambda m: m or 'auto')
def mode(request, monkeypatch):
    monkeypatch.setattr(fast_conv, 'FORCE_MODE', request.param)
    return request.param


def both_paths(x, W, b, stride, pad, gy=None):
    """(fast, stock) outputs and, with gy, the gradients of (x, W, b) from both."""
    results = []
    for fast in (True, False):
        vs = [chainer.Variable(a.copy()) if a is not None else None for a in (x, W, b)]
        with chainer.using_config('fast_cpu', fast):
            y = convolution_2d(vs[0], vs[1], vs[2], stride=stride, pad=pad)
        assert y.creator.__class__ is (fast_conv.Convolution2DFunction if fast else
                                       chainer.functions.connection.convolution_2d
                                       .Convolution2DFunction)
        out = [y.array]
        if gy is not None:
            y.grad = gy
            y.backward()
            out += [v.grad if v is not None else None for v in vs]
        results.append(out)
    return results


@pytest.mark.parametrize('case', CASES)
def test_forward_backward_match_chainer(case, mode):
    x, W, b, stride, pad = make(case)
    y_ref = F.convolution_2d(x, W, b, stride=stride, pad=pad).array
    gy = np.random.RandomState(1).randn(*y_ref.shape).astype(np.float32)
    fast, stock = both_paths(x, W, b, stride, pad, gy)
    assert fast[0].shape == y_ref.shape and fast[0].dtype == np.float32
    for got, want in zip(fast, stock):
        if want is not None:
            assert got.shape == want.shape
            assert rel_err(got, want) <= 1e-5


@pytest.mark.parametrize('case', CASES[:4] + CASES[6:8] + CASES[9:])
def test_gradient_check_float64(case, mode):
    x, W, b, stride, pad = make(case, np.float64, seed=2)
    inputs = (x, W) if b is None else (x, W, b)
    y = convolution_2d(*inputs, stride=stride, pad=pad)
    gy = np.random.RandomState(3).randn(*y.shape)
    chainer.gradient_check.check_backward(
        lambda *a: convolution_2d(*a, stride=stride, pad=pad), inputs, gy, dtype=np.float64,
        atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize('case', [CASES[1], CASES[3], CASES[6]])
def test_double_backward(case):
    x, W, b, stride, pad = make(case, np.float64, seed=4)
    rng = np.random.RandomState(5)
    y = convolution_2d(x, W, b, stride=stride, pad=pad)
    gy = rng.randn(*y.shape)
    ggs = (rng.randn(*x.shape), rng.randn(*W.shape), rng.randn(*b.shape))
    chainer.gradient_check.check_double_backward(
        lambda *a: convolution_2d(*a, stride=stride, pad=pad), (x, W, b), gy, ggs,
        dtype=np.float64, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize('case', [(1, 5, 37, 29, 6, 3, 1, 1, True),
                                  (2, 4, 23, 31, 3, 5, 1, 2, True),
                                  (1, 6, 21, 17, 1, 5, 1, 2, False),
                                  (1, 3, 25, 19, 4, 3, 2, 1, True)])
def test_banded_equals_unbanded(case, mode, monkeypatch):
    x, W, b, stride, pad = make(case)
    gy = np.random.RandomState(1).randn(*convolution_2d(x, W, b, stride, pad).shape)
    gy = gy.astype(np.float32)
    got = {}
    monkeypatch.setattr(fast_conv, 'HALO_FACTOR', 0)
    # one band / a few rows per band, the last one shorter / one output row per band
    for band_bytes in (1 << 30, 8 << 10, 1):
        monkeypatch.setattr(fast_conv, 'BAND_BYTES', band_bytes)
        got[band_bytes] = both_paths(x, W, b, stride, pad, gy)[0]
    for band_bytes in (8 << 10, 1):
        for one, banded in zip(got[1 << 30], got[band_bytes]):
            if one is not None:
                assert rel_err(banded, one) <= 1e-6


def test_band_size_is_bounded():
    # 64-channel 1080p-wide layers are cut into bands of a few MB (the temporaries' size)
    for k in (3, 5):
        rows = fast_conv._band_rows(1088, (64 + 64) * 1924, 4, extra_rows=k - 1)
        assert 1 <= rows <= 2 * (k - 1) + 2
        assert (rows + k - 1) * (64 + 64) * 1924 * 4 <= 16 << 20


def test_numpy_gemm_fallback_matches_blas(monkeypatch):
    x, W, b, stride, pad = make((2, 5, 10, 12, 3, 5, 1, 2, True))
    gy = np.random.RandomState(1).randn(2, 3, 10, 12).astype(np.float32)
    blas = both_paths(x, W, b, stride, pad, gy)[0]
    monkeypatch.setattr(fast_conv, '_CBLAS', {})
    assert fast_conv.blas_backend() == 'numpy'
    plain = both_paths(x, W, b, stride, pad, gy)[0]
    for one, other in zip(blas, plain):
        assert rel_err(other, one) <= 1e-6


def test_gemm_accumulates_on_views():
    rng = np.random.RandomState(0)
    for dtype in (np.float32, np.float64):
        a = rng.rand(9, 14).astype(dtype)[:, 2:11]  # strided, transposed and offset views
        b = rng.rand(6, 9).astype(dtype).T
        c = rng.rand(9, 8).astype(dtype)
        view = c[:, 1:7]
        want = view + a @ b
        fast_conv.gemm(a, b, view, accumulate=True)
        np.testing.assert_allclose(view, want, rtol=1e-5)
        fast_conv.gemm(a, b, view)
        np.testing.assert_allclose(view, a @ b, rtol=1e-5)


def test_other_arrays_use_the_stock_function():
    x, W, b, stride, pad = make(CASES[1], np.float16)
    y = convolution_2d(x, W, b, stride=stride, pad=pad)
    assert not isinstance(y.creator, fast_conv.Convolution2DFunction)
    with stock_path():
        x, W, b, stride, pad = make(CASES[1])
        assert not isinstance(convolution_2d(x, W, b).creator,
                              fast_conv.Convolution2DFunction)


def test_link_with_lazy_input_channels():
    link = Convolution2D(None, 4, 3, pad=1)
    x = np.random.RandomState(0).randn(2, 3, 6, 5).astype(np.float32)
    y = link(x)
    assert link.W.shape == (4, 3, 3, 3)
    want = F.convolution_2d(x, link.W.array, link.b.array, pad=1).array
    assert rel_err(y.array, want) <= 1e-5


@pytest.mark.parametrize('threads', [1, 3])
def test_threads_and_memory_layouts(threads, monkeypatch):
    """Bands shared by several threads, and inputs in either memory layout, give one result."""
    monkeypatch.setattr(fast_conv, 'THREADS', threads)
    monkeypatch.setattr(fast_conv, 'BAND_BYTES', 1)
    monkeypatch.setattr(fast_conv, 'HALO_FACTOR', 0)
    monkeypatch.setattr(fast_conv, 'MIN_BAND_PIXELS', 1)
    x, W, b, stride, pad = make((2, 6, 17, 13, 5, 3, 1, 1, True))
    y_ref = F.convolution_2d(x, W, b, pad=pad).array
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    for xx in (x, channels_last, x[:, :, ::-1][:, :, ::-1]):
        y = convolution_2d(xx, W, b, pad=pad).array
        assert rel_err(y, y_ref) <= 1e-5
    gy = np.random.RandomState(1).randn(*y_ref.shape).astype(np.float32)
    fast, stock = both_paths(x, W, b, stride, pad, gy)
    for got, want in zip(fast, stock):
        assert rel_err(got, want) <= 1e-5


@pytest.mark.parametrize('threads', [2, 3])
def test_small_image_channels_shared_by_threads(threads, monkeypatch):
    monkeypatch.setattr(fast_conv, 'THREADS', threads)
    x, W, b, stride, pad = make((1, 8, 5, 6, 130, 3, 1, 1, True))
    assert len(fast_conv._channel_chunks(130, 1)) == 2
    gy = np.random.RandomState(1).randn(1, 130, 5, 6).astype(np.float32)
    fast, stock = both_paths(x, W, b, stride, pad, gy)
    for got, want in zip(fast, stock):
        assert rel_err(got, want) <= 1e-5


def test_pooling_matches_chainer(monkeypatch):
    monkeypatch.setattr(fast_conv, 'THREAD_CHUNK', 16)  # several row chunks, threads
    rng = np.random.RandomState(0)
    x = rng.randint(-2, 3, (2, 3, 8, 10)).astype(np.float32)  # many ties: first maximum wins
    xv, xr = chainer.Variable(x), chainer.Variable(x.copy())
    y, idx = fast_pool.max_pooling_2x2(xv)
    yr, idxr = F.max_pooling_2d(xr, 2, stride=2, return_indices=True)
    np.testing.assert_array_equal(y.array, yr.array)
    np.testing.assert_array_equal(idx, idxr)
    u = fast_pool.unpooling_2x2(y * 3.0, idx, (8, 10))
    ur = F.upsampling_2d(yr * 3.0, idxr, ksize=2, stride=2, outsize=(8, 10))
    np.testing.assert_array_equal(u.array, ur.array)
    g = rng.randn(*u.shape).astype(np.float32)
    u.grad, ur.grad = g, g
    u.backward()
    ur.backward()
    np.testing.assert_array_equal(xv.grad, xr.grad)
    idx64 = np.tile(np.array([[0, 1], [2, 3]], np.int8), (1, 2, 1, 1))
    chainer.gradient_check.check_backward(lambda a: fast_pool.max_pooling_2x2(a)[0],
                                          rng.randn(1, 2, 4, 6), rng.randn(1, 2, 2, 3),
                                          dtype=np.float64)
    chainer.gradient_check.check_double_backward(
        lambda a: fast_pool.unpooling_2x2(a, idx64, (4, 4)) ** 2, rng.randn(1, 2, 2, 2),
        rng.randn(1, 2, 4, 4), rng.randn(1, 2, 2, 2), dtype=np.float64)


@pytest.mark.parametrize('inplace', [False, True])
def test_relu_matches_chainer(inplace, monkeypatch):
    monkeypatch.setattr(fast_conv, 'THREAD_CHUNK', 16)  # several row chunks
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 9, 8).astype(np.float32)
    want = F.relu(x).array
    xv = chainer.Variable(x.copy())
    y = fast_pool.relu(xv, inplace=inplace)
    np.testing.assert_array_equal(y.array, want)
    assert (y.array is xv.array) == inplace
    g = rng.randn(*x.shape).astype(np.float32)
    y.grad = g
    y.backward()
    np.testing.assert_array_equal(xv.grad, g * (x > 0))
    chainer.gradient_check.check_double_backward(
        lambda a: fast_pool.relu(a * 1.0, inplace=inplace) ** 2, rng.randn(1, 2, 3, 4),
        rng.randn(1, 2, 3, 4), rng.randn(1, 2, 3, 4), dtype=np.float64)


@pytest.mark.parametrize('force', [None, 'wino'], ids=['auto', 'all-winograd'])
def test_narrow_dim_matches_stock_path(force, monkeypatch):
    """The whole model (encoder-decoder and refinement), forward and parameter gradients; with
    'wino' every 3x3 and 5x5 layer goes through nnet.winograd."""
    monkeypatch.setattr(fast_conv, 'FORCE_MODE', force)
    rng = np.random.RandomState(0)
    image = rng.rand(1, 3, 45, 70).astype(np.float32)  # padded to 64x96 inside
    trimap = rng.choice(np.array([0, 128 / 255, 1], np.float32), (1, 1, 45, 70))
    np.random.seed(0)
    model = DIM(width=0.125)
    results = []
    for fast in (True, False):
        model.cleargrads()
        with chainer.using_config('fast_cpu', fast):
            alpha1, alpha2 = model(image, trimap)
            F.sum(alpha1 * 2.0 + alpha2).backward()
        grads = {name: p.grad.copy() for name, p in model.namedparams()}
        results.append((alpha1.array, alpha2.array, grads))
    (a1, a2, g), (r1, r2, gr) = results
    assert rel_err(a1, r1) <= 1e-5 and rel_err(a2, r2) <= 1e-5
    for name in gr:
        assert rel_err(g[name], gr[name]) <= 1e-4, name
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        tri = (trimap[0, 0] * 255).round().astype(np.uint8)
        pred = model.predict(image[0].transpose(1, 2, 0), tri)
        with stock_path():
            pred_ref = model.predict(image[0].transpose(1, 2, 0), tri)
    assert np.abs(pred - pred_ref).max() <= 1e-5
