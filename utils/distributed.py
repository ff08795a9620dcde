"""Data-parallel training over MPI with ChainerMN: ``mpiexec -n N python train.py --distributed``.

Every rank (process) holds the whole model and trains on its part of each global batch
(``utils.iterators``: --batch_size examples per iteration over all ranks, a different share of
them every epoch); ChainerMN's multi-node optimizer averages the gradients (allreduce) before each
identical update, so the ranks' parameters stay bitwise equal and the run trains what one process
with the whole batch would (the loss is normalised by the global batch's unknown pixels, see
``nnet.loss.MattingLoss``). ``Job`` is one rank's part of that:

* the communicator (``naive`` on CPUs, ``pure_nccl`` on GPUs by default; one GPU per rank,
  --gpu_id + the rank's index on its node);
* the model's initial weights broadcast from rank 0;
* rank 0 alone writes (logs, plots, image grids, checkpoints, snapshots, options.json) and
  prints; it also validates alone, while the others wait at the next allreduce. The other ranks
  run only the extensions that change the training (``EVERY_RANK``) and print nothing on stdout;
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
from chainer.training import extension, extensions

from utils.checkpoint import SNAPSHOT_PREFIX, device_from_gpu_id, resume_from_latest_snapshot
from utils.extensions import DivergenceGuard, TrainingDiverged
from utils.utils import InputError

# Extensions every rank runs: they change the training, so all ranks must change it alike.
EVERY_RANK = (DivergenceGuard, extensions.LinearShift, extensions.ExponentialShift,
              extensions.MultistepShift, extensions.PolynomialShift, extensions.StepShift,
              extensions.WarmupShift, extensions.InverseShift)


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
        """A ``Trainer``; on ranks other than 0 it keeps only the ``EVERY_RANK`` extensions."""
        trainer = chainer.training.Trainer(updater, stop_trigger, out=out)
        if self.comm:
            trainer.extend(MeanOverRanks(self.comm))
            if not self.is_writer:
                extend = trainer.extend

                def extend_every_rank_only(ext, *args, **kwargs):
                    if isinstance(ext, EVERY_RANK):
                        extend(ext, *args, **kwargs)
                trainer.extend = extend_every_rank_only
        return trainer

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
    def fail(self, message, code):
        """Report ``message`` (one line) and return the exit code -- or abort every rank.

        Alone: print it. Setting up: agree with the other ranks (rank 0 prints). Training: print
        it with this rank's number, then MPI_Abort (the others may be waiting for this rank).
        """
        if not self.comm:
            if launcher_rank() == 0:  # (failed before joining the MPI job: the same everywhere)
                print(message, file=sys.stderr)
            return code
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


def _launcher_value(names, default):
    for name in names:
        if os.environ.get(name, '').isdigit():
            return int(os.environ[name])
    return default


def launcher_rank():
    """This process's rank as the MPI launcher set it in the environment (0 outside MPI)."""
    return _launcher_value(('OMPI_COMM_WORLD_RANK', 'PMIX_RANK', 'PMI_RANK'), 0)


def launcher_size():
    """The number of processes the MPI launcher started (1 outside MPI)."""
    return _launcher_value(('OMPI_COMM_WORLD_SIZE', 'PMI_SIZE'), 1)


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


def run_reporting_errors(run, args, errors=(), interrupted='interrupted'):
    """``utils.cli.run_reporting_errors`` for one rank of an MPI job: calls ``run(args, job)``.

    InputError, OSError and ``errors`` print 'error: ...' (one line) and give 1; Ctrl-C prints
    ``interrupted`` and gives 130 (see ``Job.fail``). ``TrainingDiverged`` is raised by every
    rank at the same iteration (the guard reads the mean loss): rank 0 reports it and every rank
    exits normally.
    """
    from nnet.cpu import keep_freed_memory
    from utils.cli import use_precision
    from utils.interrupts import INTERRUPTED, raise_from_now_on, release_quietly
    raise_from_now_on()
    keep_freed_memory()
    job = None
    try:
        job = Job.start(args)
        with use_precision(args):
            run(args, job)
        return 0
    except _Stopped:
        return 1
    except TrainingDiverged as e:
        if job.is_writer:
            print(f'error: {e}'.splitlines()[0], file=sys.stderr, flush=True)
        return 1
    except (InputError, OSError) + tuple(errors) as e:
        return (job or Job()).fail(f'error: {e}'.splitlines()[0], 1)
    except KeyboardInterrupt as e:
        release_quietly(e)
        return (job or Job()).fail(f'error: {interrupted}', INTERRUPTED)


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
