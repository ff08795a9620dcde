"""The training iterator: the same batches with or without worker processes, and after a resume."""
import json
import os

import numpy as np
from chainer import serializers

import train
from utils.iterators import EpochShards, NextEpochOrder, training_iterator
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
