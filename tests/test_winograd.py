"""Winograd convolutions (nnet.winograd) against Chainer's own convolution."""
import platform

import chainer
import numpy as np
import pytest

from nnet import fast_conv, winograd
from nnet.fast_conv import convolution_2d
from tests.helpers import rel_err


def forward_and_grads(x, W, b, pad, gy, fast):
    vs = [chainer.Variable(a.copy()) for a in (x, W, b)]
    with chainer.using_config('fast_cpu', fast):
        y = convolution_2d(*vs, pad=pad)
        y.grad = gy
        y.backward()
    return [y.array] + [v.grad for v in vs]


@pytest.mark.parametrize('r', sorted(winograd.TRANSFORMS))
def test_transform_computes_a_correlation(r):
    """AT ((G g) * (BT d)) is the 1-D correlation of d with g (m outputs)."""
    f = winograd.TRANSFORMS[r]
    rng = np.random.RandomState(r)
    for _ in range(5):
        d, g = rng.randn(f.t), rng.randn(r)
        want = [d[i:i + r] @ g for i in range(f.m)]
        np.testing.assert_allclose(f.AT @ ((f.G @ g) * (f.BT @ d)), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize('r, c, co, size', [(3, 256, 24, (18, 23)), (5, 256, 16, (17, 20))])
def test_long_channel_sums_within_1e5(r, c, co, size, monkeypatch):
    """Forward and both gradients within 1e-5 (relative to the largest value) of Chainer's
    float32 convolution, with as many input channels as the model's Winograd layers sum."""
    monkeypatch.setattr(fast_conv, 'FORCE_MODE', 'wino')
    rng = np.random.RandomState(0)
    x = rng.randn(1, c, *size).astype(np.float32)
    W = (rng.randn(co, c, r, r) / np.sqrt(c * r * r)).astype(np.float32)
    b = rng.randn(co).astype(np.float32)
    gy = rng.randn(1, co, *size).astype(np.float32)
    fast = forward_and_grads(x, W, b, r // 2, gy, True)
    stock = forward_and_grads(x, W, b, r // 2, gy, False)
    for got, want in zip(fast, stock):
        assert got.shape == want.shape
        assert rel_err(got, want) <= 1e-5


@pytest.mark.parametrize('whole', [True, False], ids=['all-tiles', 'fused-bands'])
@pytest.mark.parametrize('threads', [1, 3])
@pytest.mark.parametrize('r, pad', [(3, 1), (3, 0), (5, 2), (5, 4)])
def test_bands_threads_and_odd_sizes(whole, threads, r, pad, monkeypatch):
    """Many small bands over several threads, odd output sizes (partial tiles), batch 2 and a
    channels-last input give the stock results, with all tiles transformed at once (small
    images) or band by band (large ones)."""
    monkeypatch.setattr(fast_conv, 'FORCE_MODE', 'wino')
    monkeypatch.setattr(fast_conv, 'THREADS', threads)
    monkeypatch.setattr(winograd, 'WHOLE_BYTES', 1 << 40 if whole else 0)
    monkeypatch.setattr(winograd, 'BAND_BYTES', 1)
    monkeypatch.setattr(winograd, 'MIN_TILES', 1)
    rng = np.random.RandomState(1)
    x = rng.randn(2, 11, 9, 13).astype(np.float32).transpose(0, 3, 1, 2)  # channels last
    W = rng.randn(6, 13, r, r).astype(np.float32)
    b = rng.randn(6).astype(np.float32)
    ho, wo = 11 + 2 * pad - r + 1, 9 + 2 * pad - r + 1
    gy = rng.randn(2, 6, ho, wo).astype(np.float32)
    assert len(winograd._bands(2, -(-ho // 2), -(-wo // 2), 1)[0]) > 2
    fast = forward_and_grads(x, W, b, pad, gy, True)
    stock = forward_and_grads(x, W, b, pad, gy, False)
    for got, want in zip(fast, stock):
        assert rel_err(got, want) <= 1e-5


def test_model_layers_that_use_winograd():
    """At 320x320, full width: the wide 3x3 layers and the two widest 5x5 decoder layers."""
    from scripts.benchmark import conv_layers
    chosen = {name for name, c, co, k, h, w in conv_layers(1.0, 320, 320)
              if fast_conv._use_winograd(c, co, (k, k), (k // 2, k // 2), (h, w))}
    assert chosen == {'conv2_2', 'conv3_1', 'conv3_2', 'conv3_3', 'conv4_1', 'conv4_2',
                      'conv4_3', 'conv5_1', 'conv5_2', 'conv5_3', 'deconv5', 'deconv4'}


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='glibc only')
def test_keep_freed_memory_is_accepted_by_glibc():
    assert fast_conv.keep_freed_memory() is True
