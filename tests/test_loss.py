"""The alpha-prediction and compositional losses against NumPy, their gradients, and the wrapper."""
import chainer
import numpy as np
from chainer import gradient_check

from nnet.loss import MattingLoss, alpha_prediction_loss, compositional_loss, unknown_mask
from nnet.model import DIM

EPS = 1e-6


def make_batch(rng, n=2, h=8, w=10, dtype=np.float32):
    trimap = rng.choice([0.0, 128 / 255, 1.0], size=(n, 1, h, w)).astype(dtype)
    trimap[:, :, 0, 0] = 128 / 255
    alpha = rng.random((n, 1, h, w)).astype(dtype)
    fg = rng.random((n, 3, h, w)).astype(dtype)
    bg = rng.random((n, 3, h, w)).astype(dtype)
    image = (alpha * fg + (1 - alpha) * bg).astype(dtype)
    return image, trimap, alpha, fg, bg


def test_unknown_mask_selects_128_only(rng):
    trimap = np.array([0, 127, 128, 129, 255], np.float32).reshape(1, 1, 1, 5) / 255
    np.testing.assert_array_equal(unknown_mask(trimap).ravel(), [0, 0, 1, 0, 0])


def test_alpha_loss_matches_numpy(rng):
    _, trimap, alpha, _, _ = make_batch(rng)
    pred = rng.random(alpha.shape).astype(np.float32)
    mask = unknown_mask(trimap)
    expected = np.sqrt((pred - alpha) ** 2 + EPS ** 2)[mask > 0].mean()
    got = alpha_prediction_loss(pred, alpha, mask, EPS).array
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_compositional_loss_matches_numpy(rng):
    image, trimap, alpha, fg, bg = make_batch(rng)
    pred = rng.random(alpha.shape).astype(np.float32)
    mask = unknown_mask(trimap)
    comp = pred * fg + (1 - pred) * bg
    per_pixel = np.sqrt((comp - image) ** 2 + EPS ** 2)
    expected = per_pixel[np.broadcast_to(mask > 0, per_pixel.shape)].mean()
    got = compositional_loss(pred, fg, bg, image, mask, EPS).array
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # the true alpha gives (almost) zero compositional loss
    assert compositional_loss(alpha, fg, bg, image, mask, EPS).array < 1e-5


def test_losses_backward_float64(rng):
    image, trimap, alpha, fg, bg = make_batch(rng, n=1, h=4, w=5, dtype=np.float64)
    mask = unknown_mask(trimap)
    pred = rng.uniform(0.1, 0.9, alpha.shape)
    gradient_check.check_backward(
        lambda p: alpha_prediction_loss(p, alpha, mask, 1e-3), pred, None,
        dtype=np.float64, atol=1e-5, rtol=1e-4)
    gradient_check.check_backward(
        lambda p: compositional_loss(p, fg, bg, image, mask, 1e-3), pred, None,
        dtype=np.float64, atol=1e-5, rtol=1e-4)


def _grads(model, stage, batch):
    model.cleargrads()
    loss = MattingLoss(model, stage=stage, alpha_weight=0.0)(*batch)  # compositional term only
    loss.backward()
    return loss


def test_compositional_gradient_reaches_network_weights(rng):
    model = DIM(0.125)
    batch = make_batch(rng, n=1, h=32, w=32)
    _grads(model, 1, batch)
    for name in ('conv1_1', 'conv5_3', 'deconv1', 'pred'):
        grad = model.encoder_decoder[name].W.grad
        assert grad is not None and np.abs(grad).sum() > 0, name


def test_stage_two_trains_refinement_only(rng):
    model = DIM(0.125)
    batch = make_batch(rng, n=1, h=32, w=32)
    wrapper = MattingLoss(model, stage=2)
    optimizer = wrapper.setup_optimizer(chainer.optimizers.Adam(alpha=1e-3))
    before = model.encoder_decoder.conv1_1.W.array.copy()
    model.cleargrads()
    with chainer.using_config('train', True):
        wrapper(*batch).backward()
    assert model.refinement.refine1.W.grad is not None
    assert np.abs(model.refinement.refine1.W.grad).sum() > 0
    assert model.encoder_decoder.conv1_1.W.grad is None
    assert not model.encoder_decoder.conv1_1.W.update_rule.enabled
    refine_before = model.refinement.refine1.W.array.copy()
    optimizer.update()
    np.testing.assert_array_equal(model.encoder_decoder.conv1_1.W.array, before)
    assert not np.array_equal(model.refinement.refine1.W.array, refine_before)


def test_wrapper_reports_terms(rng):
    model = DIM(0.125)
    batch = make_batch(rng, n=1, h=32, w=32)
    wrapper = MattingLoss(model, stage=3, alpha_weight=0.5)
    reporter = chainer.Reporter()
    reporter.add_observer('main', wrapper)
    observation = {}
    with reporter.scope(observation):
        loss = wrapper(*batch)
    la, lc = float(observation['main/loss_alpha'].array), float(observation['main/loss_comp'].array)
    np.testing.assert_allclose(float(loss.array), 0.5 * la + 0.5 * lc, rtol=1e-6)
    assert 'main/loss_alpha_stage1' in observation
