"""Data-parallel training over MPI with ChainerMN: ``mpiexec -n N python train.py --distributed``.

Every rank (process) holds the whole model and trains on its part of each global batch
(``utils.data.iterators``: --batch_size examples per iteration over all ranks, a different share of
them every epoch); ChainerMN's multi-node optimizer averages the gradients (allreduce) before each
identical update, so the ranks' parameters stay bitwise equal and the run trains what one process
with the whole batch would (the loss is normalised by the global batch's unknown pixels, see
``nnet.loss.MattingLoss``). ``Job`` is one rank's part of that:

* the communicator (``naive`` on CPUs, ``pure_nccl`` on GPUs by default; one GPU per rank,
  --gpu_id + the rank's index on its node);
* the model's initial weights broadcast from rank 0;
* rank 0 alone writes (logs, plots, image grids, checkpoints, snapshots, options.json) and
  prints. Every rank runs the extensions that change the training (the divergence guard, a
  learning-rate shift) and scores its share of the validation crops (ChainerMN's multi-node
  evaluator); rank 0 alone adds the rest (``if job.is_writer:`` in train.py) and the other
  ranks print nothing on stdout;
* the logged losses and data_wait are means over the ranks (``MeanOverRanks``), so rank 0's log
  is the global batch's, and the divergence guard stops every rank at the same iteration;
* resuming: rank 0 chooses its newest readable snapshot and sends its bytes to every rank (the
  log folder need not be shared between nodes);
* errors: before training starts, the ranks agree (one line from rank 0, every rank exits 1);
  during training a rank's error prints its one line and MPI_Abort ends every rank (no hang in a
  collective; snapshots are written atomically, so the last good one is intact). Unexpected
  exceptions print their traceback and abort too (ChainerMN's ``global_except_hook``).

Without --distributed, ``Job()`` is the single-process case and changes nothing.
"""
import contextlib
import hashlib
import io
import os
import sys

import chainer
import numpy as np
from chainer import serializers
from chainer.training import extension

from utils.errors import INTERRUPTED, InputError, launcher_rank, launcher_size, release_quietly
from utils.training.checkpoint import (
    SNAPSHOT_PREFIX,
    device_from_gpu_id,
    resume_from_latest_snapshot,
)
from utils.training.extensions import TrainingDiverged


def default_communicator(gpu_id):
    """``pure_nccl`` (NCCL) for GPUs, ``naive`` (plain MPI allreduce) for CPUs."""
    return 'pure_nccl' if gpu_id >= 0 else 'naive'


class _Stopped(Exception):
    """Another rank failed while setting up; rank 0 has said why."""


class Job:
    """This process's part of a training run: rank, size, device, communicator.

    ``Job()`` is one process alone (rank 0 of 1, no MPI); ``Job.start(args)`` joins the MPI job
    when ``args.distributed`` is set.
    """

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.rank if comm else 0
        self.size = comm.size if comm else 1
        self.training = False  # past ready(): errors abort instead of being agreed on

    @classmethod
    def start(cls, args):
        """The Job of ``args``: ChainerMN communicator --communicator when --distributed."""
        if not getattr(args, 'distributed', False):
            if launcher_size() > 1:  # N copies of one run would write the same files
                raise InputError(f'started as one of {launcher_size()} MPI processes: add '
                                 '--distributed to train on them together')
            return cls()
        try:
            import chainermn
            from chainermn import global_except_hook
        except ImportError as e:  # mpi4py or its MPI library missing
            raise InputError(f'--distributed needs mpi4py and an MPI library ({e}): '
                             'pip install -r requirements.txt')
        name = args.communicator or default_communicator(args.gpu_id)
        if args.gpu_id < 0 and name != 'naive':
            raise InputError(f'--communicator {name} needs GPUs; on CPUs use naive')
        try:
            comm = chainermn.create_communicator(name)
        except Exception as e:  # no CuPy / NCCL for pure_nccl, ...
            reason = (str(e).splitlines() or [''])[0]
            raise InputError(f'--communicator {name}: cannot be created '
                             f'({type(e).__name__}: {reason})')
        global_except_hook.add_hook()
        job = cls(comm)
        if job.rank:  # rank 0 alone prints the progress and the log lines
            sys.stdout = open(os.devnull, 'w')
        return job

    @property
    def is_writer(self):
        """Whether this rank writes files and prints (rank 0)."""
        return self.rank == 0

    def device(self, gpu_id):
        """The chainer device of this rank: the CPU, or GPU ``gpu_id`` + its index on its node."""
        gpu = gpu_id + self.comm.intra_rank if self.comm and gpu_id >= 0 else gpu_id
        return device_from_gpu_id(gpu)

    def check_batch(self, batch_size):
        """Raise InputError unless ``batch_size`` (global batch) splits evenly over the ranks."""
        if batch_size % self.size:
            raise InputError(f'--batch_size {batch_size} (examples per iteration over all ranks) '
                             f'is not a multiple of the {self.size} ranks')

    def ready(self):
        """End of the set-up: raise (on every rank) if any rank failed to set up."""
        if self.comm:
            self._agree(None)
        self.training = True

    def _agree(self, message):
        messages = self.comm.mpi_comm.allgather(message)
        failed = [(r, m) for r, m in enumerate(messages) if m is not None]
        if failed:
            if self.is_writer:
                r, m = failed[0]
                if len(failed) < self.size or any(x != m for _, x in failed):
                    m = m.replace('error: ', f'error: rank {r}: ', 1)  # not every rank's
                print(m, file=sys.stderr, flush=True)
            raise _Stopped()

    # ----------------------------------------------------------------- training
    def unknown_pixels(self):
        """For ``MattingLoss(unknown_pixels=...)``: the mean unknown-pixel count over the ranks."""
        if not self.comm:
            return None
        comm = self.comm

        def mean_count(count):
            return comm.allreduce_obj(float(count)) / comm.size
        return mean_count

    def optimizer(self, optimizer):
        """``optimizer`` wrapped by ChainerMN's multi-node optimizer (gradients averaged)."""
        if not self.comm:
            return optimizer
        import chainermn
        return chainermn.create_multi_node_optimizer(optimizer, self.comm)

    def share_weights(self, model, optimizer):
        """Broadcast rank 0's parameters to every rank (call after ``optimizer.setup``).

        ChainerMN's optimizer would broadcast them at its first update instead of updating (and
        again after every restart); broadcasting here and letting it record the parameters makes
        every update a real one, as in one process.
        """
        if self.comm:
            for param in model.params():
                # ChainerMN's CPU collectives hand NumPy arrays to MPI through
                # np.ascontiguousarray: one in another layout (the oneDNN convolutions keep
                # weights as (kh, kw, Cin, Cout) in memory) would be reduced or broadcast into a
                # copy, silently. C order here; the weight gradients follow the weights' layout.
                if type(param.array) is np.ndarray and not param.array.flags.c_contiguous:
                    param.array = np.ascontiguousarray(param.array)
            self.comm.bcast_data(model)
            optimizer.is_changed(optimizer.target)

    def trainer(self, updater, stop_trigger, out):
        """A ``Trainer``; under MPI its observations are means over the ranks (``MeanOverRanks``).

        Add the extensions that change the training (and the evaluator) on every rank, the
        ones that write or print on rank 0 alone (``is_writer``).
        """
        trainer = chainer.training.Trainer(updater, stop_trigger, out=out)
        if self.comm:
            trainer.extend(MeanOverRanks(self.comm))
        return trainer

    def shard(self, dataset):
        """This rank's share of a validation dataset (all of it alone): ceil(N / ranks)
        consecutive examples, wrapping around to the first ones to even out the last share (as
        ``chainermn.scatter_dataset`` pads). Every rank builds the same dataset, so the split
        needs no communication (a collective here, before ``ready``, would hang a job whose
        other rank failed to set up)."""
        if not self.comm:
            return dataset
        n = len(dataset)
        share = -(-n // self.size)
        mine = (np.arange(share) + self.rank * share) % n
        order = np.concatenate([mine, np.zeros(n - share, int)])  # (SubDataset wants length N)
        return chainer.datasets.SubDataset(dataset, 0, share, order=order)

    def evaluator(self, evaluator):
        """``evaluator`` whose results are means over the ranks (ChainerMN's multi-node one)."""
        if not self.comm:
            return evaluator
        import chainermn
        return chainermn.create_multi_node_evaluator(evaluator, self.comm)

    def resume(self, trainer, folder):
        """Load rank 0's newest readable snapshot in ``folder`` into every rank's trainer.

        Returns the iteration resumed from, or None.
        """
        if not self.comm:
            return resume_from_latest_snapshot(trainer, folder)
        data = None
        if self.is_writer:
            iteration = resume_from_latest_snapshot(trainer, folder)
            if iteration is not None:
                with open(os.path.join(folder, f'{SNAPSHOT_PREFIX}{iteration}'), 'rb') as f:
                    data = f.read()
            choice = (iteration, data)
        else:
            choice = None
        iteration, data = self.comm.bcast_obj(choice)
        if data is not None and not self.is_writer:
            with np.load(io.BytesIO(data), allow_pickle=False) as f:
                serializers.NpzDeserializer(f).load(trainer)
        loaded = self.comm.mpi_comm.allgather(trainer.updater.iteration)
        if len(set(loaded)) != 1:
            raise InputError(f'the ranks resumed at different iterations {loaded}')
        return iteration

    def check_in_sync(self, model):
        """Check that every rank holds bitwise the same parameters; rank 0 prints their digest.

        Raises InputError naming the ranks that differ from rank 0.
        """
        if not self.comm:
            return
        digests = self.comm.mpi_comm.allgather(parameter_digest(model))
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise InputError(f'parameters of rank(s) {differ} differ from rank 0\'s')
        print(f'parameters identical on all {self.size} ranks: sha256 {digests[0]}')

    # ----------------------------------------------------------------- errors
    @contextlib.contextmanager
    def reporting_errors(self, errors=(), interrupted='interrupted'):
        """Around a rank's work under MPI: its errors end the job as ``fail`` says, by
        SystemExit with the exit code. Alone, errors go on to ``utils.errors.run_reporting_errors``.

        ``TrainingDiverged`` is raised by every rank at the same iteration (the guard reads the
        mean loss): rank 0 reports it and every rank exits 1.
        """
        if not self.comm:
            yield
            return
        try:
            yield
        except _Stopped:
            raise SystemExit(1)
        except TrainingDiverged as e:
            if self.is_writer:
                print(f'error: {e}'.splitlines()[0], file=sys.stderr, flush=True)
            raise SystemExit(1)
        except (InputError, OSError) + tuple(errors) as e:
            raise SystemExit(self.fail(f'error: {e}'.splitlines()[0], 1))
        except KeyboardInterrupt as e:
            release_quietly(e)
            raise SystemExit(self.fail(f'error: {interrupted}', INTERRUPTED))

    def fail(self, message, code):
        """Report ``message`` (one line) and return the exit code -- or abort every rank.

        Setting up: agree with the other ranks (rank 0 prints). Training: print it with this
        rank's number, then MPI_Abort (the others may be waiting for this rank).
        """
        if not self.training:
            try:
                self._agree(message)
            except _Stopped:
                return code
        print(message.replace('error: ', f'error: rank {self.rank}: ', 1), file=sys.stderr,
              flush=True)
        sys.stdout.flush()
        self.comm.mpi_comm.Abort(code)
        return code


def parameter_digest(model):
    """SHA-256 (hex) of a model's parameters: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name, param in sorted(model.namedparams()):
        if param.array is None:
            continue
        array = np.ascontiguousarray(chainer.backend.CpuDevice().send(param.array))
        h.update(f'{name} {array.dtype} {array.shape}'.encode())
        h.update(array.tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def stderr_on_rank0_only():
    """Silence stderr on ranks other than 0 (argparse errors: the same on every rank)."""
    if launcher_rank() == 0:
        yield
        return
    saved = sys.stderr
    sys.stderr = open(os.devnull, 'w')
    try:
        yield
    finally:
        sys.stderr.close()
        sys.stderr = saved


class MeanOverRanks(extension.Extension):
    """Replaces this iteration's observations (losses, data_wait) by their means over the ranks.

    Runs right after the update, before every other extension (the divergence guard, the log).
    """
    trigger = 1, 'iteration'
    priority = extension.PRIORITY_WRITER + 200

    def __init__(self, comm):
        self.comm = comm

    def __call__(self, trainer):
        keys = sorted(trainer.observation)
        values = np.array([float(chainer.backend.CpuDevice().send(
            getattr(trainer.observation[k], 'array', trainer.observation[k]))) for k in keys])
        means = self.comm.allreduce_obj(values) / self.comm.size
        for k, v in zip(keys, means):
            trainer.observation[k] = float(v)
