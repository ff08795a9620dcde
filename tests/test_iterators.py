"""The training iterator: the same batches with or without worker processes, and after a resume."""
import json
import os

import numpy as np
from chainer import serializers

import train
from utils.data.iterators import EpochShards, NextEpochOrder, training_iterator
from utils.loader import AugmentedDataset, MattingTransform, make_dataset

TINY = ['--width', '0.125', '--H', '64', '--crop_sizes', '64', '96',
        '--batch_size', '2', '--log_frq', '1', '--seed', '0', '--val_frq', '1000']


def dataset(root):
    return AugmentedDataset(make_dataset(root), MattingTransform(size=32, crop_sizes=(32, 64),
                                                                 seed=5))


def take(iterator, n):
    return [[tuple(x.copy() for x in example) for example in next(iterator)] for _ in range(n)]


def assert_same(a, b):
    assert len(a) == len(b)
    for batch_a, batch_b in zip(a, b):
        for example_a, example_b in zip(batch_a, batch_b):
            for x, y in zip(example_a, example_b):
                np.testing.assert_array_equal(x, y)


def test_workers_give_the_batches_of_the_training_thread(composition_root):
    data = dataset(composition_root)  # 6 examples, batch 4: 2 iterations an epoch
    serial = training_iterator(data, 4, seed=3)
    workers = training_iterator(data, 4, seed=3, workers=2)
    try:
        assert_same(take(serial, 5), take(workers, 5))  # across two epoch boundaries
        assert serial.epoch == workers.epoch == 2
    finally:
        workers.finalize()


def test_resumed_iterator_continues_with_the_same_examples(composition_root):
    data = dataset(composition_root)
    straight = training_iterator(data, 4, seed=3)
    expected = take(straight, 5)
    first = training_iterator(data, 4, seed=3)
    take(first, 3)  # into the second epoch
    saved = {}
    serializers.DictionarySerializer(saved).save(first)
    resumed = training_iterator(data, 4, seed=3, workers=1)
    try:
        serializers.NpzDeserializer(saved).load(resumed)
        assert_same(take(resumed, 2), expected[3:])
    finally:
        resumed.finalize()


def test_every_example_once_per_epoch_in_a_new_order(composition_root):
    data = dataset(composition_root)
    shards = EpochShards(data, 4, seed=0)
    assert len(shards) == 8  # 6 examples padded to a multiple of the batch
    orders = [[shards.example_index(e * 8 + s)[1] for s in range(8)] for e in (1, 2)]
    for order in orders:
        assert sorted(order[:6]) == list(range(6)) and order[6:] == order[:2]
    assert orders[0] != orders[1]
    assert list(NextEpochOrder()(np.arange(8) + 8, 0)) == list(range(16, 24))


def test_loader_workers_train_the_same_model(composition_root, tmp_path):
    runs = {}
    for workers in (0, 2):
        log_root = str(tmp_path / f'w{workers}')
        assert train.main(['--dataset_root', composition_root, '--log_root', log_root,
                           '--max_iter', '3', '--ckpt_frq', '3', '--loader_workers',
                           str(workers)] + TINY) == 0
        runs[workers] = json.load(open(os.path.join(log_root, 'log')))
        assert all(e['data_wait'] >= 0 for e in runs[workers])
    serial, parallel = ([e['main/loss'] for e in runs[w]] for w in (0, 2))
    assert serial[0] == parallel[0]  # the same first batch, bitwise (no update yet)
    np.testing.assert_allclose(serial, parallel, rtol=1e-5)  # (threads may round differently)


CONVOLVING_DATASET = """
import chainer
import numpy as np
from nnet.cpu import convolution_2d

x = np.random.default_rng(0).random((1, 16, 64, 64), dtype=np.float32)
w = np.random.default_rng(1).random((16, 16, 3, 3), dtype=np.float32)


class Convolving(chainer.dataset.DatasetMixin):  # each example runs a oneDNN convolution
    def __len__(self):
        return 4

    def get_example(self, i):
        return np.float32(convolution_2d(x, w, pad=1).array.sum())
"""
FORK_AFTER_OPENMP = """
import nnet  # (NumPy 2: before chainer)
from convolving import Convolving, convolution_2d, w, x
from utils.data.iterators import training_iterator
convolution_2d(x, w, pad=1)  # GNU OpenMP's threads start in this process
batch = next(training_iterator(Convolving(), 2, workers=1))
print('batch of', len(batch))
"""


def test_loader_workers_start_after_openmp_has_run(tmp_path):
    """A worker forked from a process that has run GNU OpenMP (oneDNN's threads, numba's under
    pymatting) dies at its own first parallel region ("fork() called from a process already
    using GNU OpenMP"), and the iterator waits for it for ever: workers start from a fork server."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    (tmp_path / 'convolving.py').write_text(CONVOLVING_DATASET)
    proc = subprocess.run([sys.executable, '-c', FORK_AFTER_OPENMP], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=f'{ROOT}:{tmp_path}', OMP_NUM_THREADS='2'))
    assert proc.returncode == 0 and 'batch of 2' in proc.stdout, proc.stderr[-2000:]
    assert 'OpenMP' not in proc.stderr
