"""The fitting check, small: a narrow network memorises a fixed batch (loss down at least 10x)."""
import numpy as np
import pytest

from nnet import cpu
from nnet.model import DIM
from tests.test_loader import make_seed_dataset
from utils.loader import make_dataset
from utils.training import fitting


@pytest.fixture(scope='module')
def crops(tmp_path_factory):
    root = make_seed_dataset(tmp_path_factory.mktemp('fit'), count=2)
    return fitting.fixed_crops(make_dataset(str(root)), 4, 32)


def test_fixed_crops_are_fixed_and_centred_on_the_given_trimaps(crops, tmp_path):
    again = fitting.fixed_crops(make_dataset(str(make_seed_dataset(tmp_path, count=2))), 4, 32)
    for a, b in zip(crops, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    for image, trimap, alpha, fg, bg in crops:
        assert image.shape == (3, 32, 32) and trimap.shape == (1, 32, 32)
        assert np.any(trimap == np.float32(128 / 255))


@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_narrow_network_memorises_a_fixed_batch(crops, precision):
    if precision == "bf16" and not cpu.bf16_available():
        pytest.skip('this CPU has no oneDNN bfloat16 convolutions')
    np.random.seed(0)
    model = DIM(0.25)
    with cpu.precision(precision):
        losses = fitting.train(model, crops, 150, batch_size=4, lr=2e-3)
    first, last = losses[0], float(np.mean(losses[-10:]))
    assert last < first / 10, f'loss {first:.4f} -> {last:.4f}: fell {first / last:.1f}x, not 10x'
    mattes = fitting.predict_crops(model, crops)
    scores = fitting.score(mattes, crops)
    untrained = fitting.score(fitting.predict_crops(DIM(0.25), crops), crops)
    assert scores['SAD'] < untrained['SAD'] / 5
