"""The network: architecture at width 1.0, shapes, ranges, unpooling and device-agnostic code."""

import chainer
import chainer.functions as F
import numpy as np
import pytest

from nnet.model import DIM, EncoderDecoder, network_input, pad_to_multiple

# Paper architecture at width 1.0: (layer, out channels, in channels, kernel size)
PAPER_LAYERS = [
    ('conv1_1', 64, 4, 3), ('conv1_2', 64, 64, 3),
    ('conv2_1', 128, 64, 3), ('conv2_2', 128, 128, 3),
    ('conv3_1', 256, 128, 3), ('conv3_2', 256, 256, 3), ('conv3_3', 256, 256, 3),
    ('conv4_1', 512, 256, 3), ('conv4_2', 512, 512, 3), ('conv4_3', 512, 512, 3),
    ('conv5_1', 512, 512, 3), ('conv5_2', 512, 512, 3), ('conv5_3', 512, 512, 3),
    ('conv6', 512, 512, 3),
    ('deconv6', 512, 512, 1), ('deconv5', 512, 512, 5), ('deconv4', 256, 512, 5),
    ('deconv3', 128, 256, 5), ('deconv2', 64, 128, 5), ('deconv1', 64, 64, 5),
    ('pred', 1, 64, 5),
]
REFINEMENT_LAYERS = [('refine1', 64, 4, 3), ('refine2', 64, 64, 3), ('refine3', 64, 64, 3),
                     ('refine_pred', 1, 64, 3)]
# 28,297,153 in the encoder-decoder + 76,801 in the refinement stage.
PAPER_PARAMETER_COUNT = 28_373_954


def test_full_width_layers_match_paper():
    model = DIM(1.0)
    for chain, layers in ((model.encoder_decoder, PAPER_LAYERS),
                          (model.refinement, REFINEMENT_LAYERS)):
        names = [name for name, _ in sorted(chain.namedlinks(skipself=True))]
        assert sorted(names) == sorted('/' + n for n, *_ in layers)
        for name, out_ch, in_ch, k in layers:
            assert chain[name].W.shape == (out_ch, in_ch, k, k), name
            assert chain[name].pad == (k // 2, k // 2), name
    assert sum(p.size for p in model.params()) == PAPER_PARAMETER_COUNT


@pytest.mark.parametrize('height,width', [(37, 53), (64, 96), (33, 31), (5, 7)])
def test_output_shape_and_range_any_size(rng, height, width):
    model = DIM(0.125)
    image = rng.random((1, 3, height, width), dtype=np.float32)
    trimap = np.full((1, 1, height, width), 128 / 255, np.float32)
    with chainer.using_config('train', False):
        alpha1, alpha2 = model(image, trimap)
    for alpha in (alpha1, alpha2):
        assert alpha.shape == (1, 1, height, width)
        assert alpha.dtype == np.float32
        assert float(alpha.array.min()) >= 0.0 and float(alpha.array.max()) <= 1.0


def test_predict_keeps_known_pixels(rng):
    model = DIM(0.125)
    trimap = np.full((40, 50), 128, np.uint8)
    trimap[:10] = 0
    trimap[-10:] = 255
    alpha = model.predict(rng.random((40, 50, 3), dtype=np.float32), trimap)
    assert alpha.shape == (40, 50)
    assert np.all(alpha[:10] == 0) and np.all(alpha[-10:] == 1)
    assert 0 < alpha[20].mean() < 1


def test_padding_reflects_and_restores_size(rng):
    x = rng.random((2, 4, 33, 70), dtype=np.float32)
    padded, size = pad_to_multiple(x)
    assert padded.shape == (2, 4, 64, 96) and size == (33, 70)
    np.testing.assert_array_equal(padded[:, :, :33, :70], x)
    np.testing.assert_array_equal(padded[:, :, 33, :70], x[:, :, 31, :])  # reflection


def test_unpooling_restores_argmax_positions(rng):
    """F.upsampling_2d with max-pooling indices puts each value where its maximum came from."""
    x = rng.standard_normal((1, 2, 8, 6)).astype(np.float32)
    pooled, indices = F.max_pooling_2d(x, 2, stride=2, return_indices=True)
    up = F.upsampling_2d(pooled, indices, ksize=2, stride=2, outsize=(8, 6)).array
    for c in range(2):
        for i in range(4):
            for j in range(3):
                window = x[0, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                out = up[0, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                expected = np.where(window == window.max(), window, 0)
                np.testing.assert_array_equal(out, expected)
    # F.unpooling_2d (the mistake) copies the value into the whole window instead.
    assert not np.array_equal(F.unpooling_2d(pooled, 2, outsize=(8, 6)).array, up)


def test_decoder_uses_index_unpooling(rng, monkeypatch):
    """The decoder's five unpoolings put each value back where its pooling found the maximum
    (F.upsampling_2d with the indices), never F.unpooling_2d's copies into the whole window."""
    import nnet.model
    calls = []

    def recording(h, indices, *args, **kwargs):
        out = upsampling(h, indices, *args, **kwargs)
        calls.append((chainer.as_array(h).astype(np.float32), out.array.astype(np.float32)))
        return out

    upsampling = nnet.model.upsampling_2d
    monkeypatch.setattr(nnet.model, 'upsampling_2d', recording)
    model = EncoderDecoder(0.125)
    model(rng.standard_normal((1, 4, 64, 64)).astype(np.float32))
    assert len(calls) == 5
    for h, out in calls:
        n, c, height, width = h.shape
        windows = out.reshape(n, c, height, 2, width, 2)
        assert np.count_nonzero(windows, axis=(3, 5)).max() <= 1  # one value per window ...
        np.testing.assert_array_equal(windows.sum(axis=(3, 5)), h)  # ... the pooled one


def test_network_input_convention(rng):
    image = np.full((1, 3, 2, 2), 0.5, np.float32)
    trimap = np.full((1, 1, 2, 2), 1.0, np.float32)
    x = network_input(image, trimap)
    assert x.shape == (1, 4, 2, 2)
    np.testing.assert_allclose(x[0, :, 0, 0], [0.5 - 123.68 / 255, 0.5 - 116.779 / 255,
                                               0.5 - 103.939 / 255, 0.5], rtol=1e-6)
