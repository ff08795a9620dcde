from nnet import compat  # noqa: F401  (before any chainer import; see nnet/compat.py)
