"""What each process reads in which order, loaded in the training thread or in worker processes.

The order is a function of (seed, epoch) alone, the same for one process and for N ranks:

* Epoch e's order is a permutation P_e of the N examples (NumPy generator seeded with
  (seed, e)), extended with its own first examples to L = ceil(N / B) * B entries, B the global
  batch (examples per iteration over all ranks); an epoch is L / B iterations and every batch
  holds examples of one epoch.
* Global batch t is P_e[t B : (t + 1) B]; rank r of R reads its part
  P_e[t B + r b : t B + (r + 1) b], b = B / R. So the ranks read different examples, a
  different share of them every epoch, and the union of their batches is the batch one process
  with batch B reads (``EpochShards``).
* Augmentations are keyed by (epoch, example) (``utils.loader.AugmentedDataset``), so worker
  processes or threads, in whatever order they run, produce the same examples.

The iterator's own order is then simply e * M + arange(M) (``NextEpochOrder``, M = L / R the
slots of one rank per epoch): it carries the epoch, it is the same on every rank, and it is what
a trainer snapshot stores, so a resumed run (any rank) continues with the same examples.
"""
import multiprocessing
import time

import chainer
import numpy as np


class EpochShards(chainer.dataset.DatasetMixin):
    """One rank's view of an ``AugmentedDataset``: slot ``e * M + s`` is its s-th example of epoch e.

    Args:
        dataset: ``utils.loader.AugmentedDataset`` (index epoch * N + i: example i in that epoch).
        global_batch: B, examples per iteration over all ranks (a multiple of ``size``).
        seed: seeds every epoch's permutation.
        rank, size: this process's rank and the number of ranks.
    ``len`` is M = L / size, the slots of one rank in one epoch (see the module docstring).
    """

    def __init__(self, dataset, global_batch, seed=0, rank=0, size=1):
        if global_batch % size:
            raise ValueError(f'global batch {global_batch} is not a multiple of {size} ranks')
        self.dataset, self.global_batch, self.seed = dataset, int(global_batch), int(seed)
        self.rank, self.size = int(rank), int(size)
        self.local_batch = self.global_batch // self.size
        n = len(dataset)
        self.epoch_length = -(-n // self.global_batch) * self.global_batch  # L
        self._cached = (None, None)

    def __len__(self):
        return self.epoch_length // self.size

    def epoch_order(self, epoch):
        """P_e extended to L entries: the global order of epoch ``epoch`` (int64 indices < N)."""
        if self._cached[0] != epoch:
            n = len(self.dataset)
            perm = np.random.default_rng([self.seed, epoch]).permutation(n)
            self._cached = (epoch, np.resize(perm, self.epoch_length))
        return self._cached[1]

    def example_index(self, slot):
        """(epoch, index into the dataset) that rank ``self.rank`` reads at ``slot``."""
        epoch, s = divmod(int(slot), len(self))
        batch, j = divmod(s, self.local_batch)
        return epoch, int(self.epoch_order(epoch)[batch * self.global_batch
                                                  + self.rank * self.local_batch + j])

    def get_example(self, slot):
        epoch, i = self.example_index(slot)
        return self.dataset[epoch * len(self.dataset) + i]


class NextEpochOrder:
    """Order sampler: each epoch's order is the previous one plus M (see the module docstring).

    The first order (an iterator's reset passes arange(M)) is M + arange(M): epoch 1.
    """

    def __call__(self, current_order, current_position):
        return np.asarray(current_order) + len(current_order)


class DataWaitTimer(chainer.dataset.Iterator):
    """Wraps an iterator; reports ``data_wait``, the seconds each ``next()`` blocked the trainer."""

    def __init__(self, iterator):
        self.iterator = iterator

    def __next__(self):
        start = time.perf_counter()
        batch = next(self.iterator)
        chainer.report({'data_wait': time.perf_counter() - start})
        return batch

    next = __next__

    def __getattr__(self, name):  # epoch, epoch_detail, is_new_epoch, batch_size, ...
        if name == 'iterator':
            raise AttributeError(name)
        return getattr(self.iterator, name)

    def serialize(self, serializer):
        self.iterator.serialize(serializer)

    def finalize(self):
        self.iterator.finalize()


def training_iterator(dataset, global_batch, seed=0, rank=0, size=1, workers=0):
    """The training iterator of rank ``rank``: ``EpochShards`` read in ``NextEpochOrder``.

    Args:
        dataset: ``utils.loader.AugmentedDataset``.
        global_batch: examples per iteration over all ranks (a multiple of ``size``).
        workers: 0: load in the training thread (``SerialIterator``); n > 0: n worker processes
            (started by a fork server) composite, crop and augment the next batches while the
            network trains (``MultiprocessIterator``, one batch prefetched).
    Returns:
        ``DataWaitTimer`` around the iterator; batches are lists of global_batch / size examples.
    """
    shards = EpochShards(dataset, global_batch, seed, rank, size)
    if workers:
        # Workers start from a fresh server process, not a fork of this one: a fork of a process
        # that has run GNU OpenMP (oneDNN's threads, numba's under pymatting) dies at its first
        # parallel region ("fork() called from a process already using GNU OpenMP"), and the
        # iterator would wait for it for ever. (nnet.compat first: the workers unpickle Chainer.)
        multiprocessing.set_start_method('forkserver', force=True)
        multiprocessing.set_forkserver_preload(['nnet.compat'])
        iterator = chainer.iterators.MultiprocessIterator(
            shards, shards.local_batch, n_processes=workers, n_prefetch=1,
            order_sampler=NextEpochOrder())
    else:
        iterator = chainer.iterators.SerialIterator(shards, shards.local_batch,
                                                    order_sampler=NextEpochOrder())
    return DataWaitTimer(iterator)
