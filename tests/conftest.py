"""Shared fixtures: where ../shared is, and small deterministic inputs; GPU tests' skipping."""
import functools
import os
from pathlib import Path

import numpy as np
import pytest

import nnet.compat  # noqa: F401,E402  (NumPy 2: before any chainer import; see nnet/compat.py)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared'


@functools.lru_cache(maxsize=None)
def gpu_unavailable_reason():
    """Why CuPy cannot run on a GPU here (one line), or None when it can."""
    from chainer.backends import cuda
    if not cuda.available:
        error = getattr(cuda, '_resolution_error', None)
        return 'CuPy is not usable: ' + ((str(error).splitlines() or [''])[0] if error
                                         else 'not installed')
    try:
        count = cuda.cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CuPy without a CUDA driver
        return f'no GPU ({type(e).__name__}: {(str(e).splitlines() or [""])[0]})'
    return None if count > 0 else 'no GPU'


def pytest_runtest_setup(item):
    """Tests marked ``gpu`` skip where no GPU is usable; with DIM_REQUIRE_GPU=1 they fail."""
    if item.get_closest_marker('gpu') is None:
        return
    reason = gpu_unavailable_reason()
    if reason is None:
        return
    if os.environ.get('DIM_REQUIRE_GPU') == '1':
        pytest.fail(f'needs a GPU (DIM_REQUIRE_GPU=1): {reason}', pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def shared_data():
    """../shared/data, or skip when this checkout has none beside it."""
    path = SHARED / 'data'
    if not path.is_dir():
        pytest.skip('../shared/data is not present')
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope='session')
def composition_root(tmp_path_factory):
    """A tiny composition-layout dataset (6 synthetic 96x96 foregrounds), written once."""
    from utils.data import synthetic
    root = tmp_path_factory.mktemp('composition_tiny')
    synthetic.write_composition_dataset(str(root), 6, np.random.default_rng(0), size=(96, 96))
    return str(root)


@pytest.fixture(scope='session')
def ckpt(tmp_path_factory):
    """A checkpoint of an untrained DIM(0.125): real file, narrow network, the same weights in
    every run (Chainer's initializers draw from NumPy's global generator, seeded here)."""
    from nnet.model import DIM
    from utils.training.checkpoint import save_checkpoint
    path = tmp_path_factory.mktemp('ckpt') / 'dim.npz'
    state = np.random.get_state()
    np.random.seed(6)  # a seed whose mattes have no pooling near-tie (see test_onnx.py)
    try:
        save_checkpoint(str(path), DIM(0.125))
    finally:
        np.random.set_state(state)
    return str(path)
